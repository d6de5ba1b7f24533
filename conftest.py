"""Fixtures shared by tests/ and integration/: real servers on 127.0.0.1 and fixture paths.

Each server fixture is session-scoped, binds a free loopback port, and is stopped at the end;
the launchers themselves live in ``streamhouse_beam.testing`` so users can reuse them.
"""

from __future__ import annotations

import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent
FIXTURE_SEGMENTS = (REPO_ROOT.parent / "shared" / "fixtures" / "segments").resolve()


@pytest.fixture(scope="session")
def fixture_segments_dir() -> pathlib.Path:
    """../shared/fixtures/segments: segments written by StreamHouse's own writer."""
    if not FIXTURE_SEGMENTS.is_dir():
        pytest.fail(f"golden segment fixtures not found at {FIXTURE_SEGMENTS}")
    return FIXTURE_SEGMENTS
