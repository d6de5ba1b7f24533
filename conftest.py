"""Fixtures shared by tests/ and integration/: real servers on 127.0.0.1 and fixture paths.

Each server fixture is session-scoped, binds a free loopback port, and is stopped at the end;
the launchers themselves live in ``streamhouse_beam.testing`` so users can reuse them.
"""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import settings

REPO_ROOT = pathlib.Path(__file__).resolve().parent
# ------------------------------------------------------------------ hypothesis budgets
#
# ``make test`` runs every property test with the example count written at its @settings
# (profile "full", loaded here); ``make test-fast`` passes ``--hypothesis-profile=fast``, which
# the hypothesis plugin loads after this file, and each runs a tenth of that (at least
# FAST_MIN_EXAMPLES). The count is chosen through :func:`examples` because an explicit
# ``max_examples`` in @settings wins over any profile. Neither profile has a wall-clock
# deadline: on two shared cores a slow example says nothing about the code.

FULL_PROFILE = "full"
FAST_PROFILE = "fast"
FAST_DIVISOR = 10
FAST_MIN_EXAMPLES = 10

settings.register_profile(FULL_PROFILE, deadline=None)
settings.register_profile(FAST_PROFILE, deadline=None)
settings.load_profile(FULL_PROFILE)


def examples(full: int) -> int:
    """The ``max_examples`` of a property test whose full run (``make test``) tries ``full``."""
    # The pytest plugin derives profiles like "fast-with-verbose-verbosity" from the loaded one.
    if settings.get_current_profile_name().split("-with-")[0] == FAST_PROFILE:
        return min(full, max(FAST_MIN_EXAMPLES, full // FAST_DIVISOR))
    return full


#: Golden segments and the records each must decode to (tests/fixtures/README.md).
FIXTURE_SEGMENTS = REPO_ROOT / "tests" / "fixtures" / "segments"


@pytest.fixture(scope="session")
def fixture_segments_dir() -> pathlib.Path:
    """tests/fixtures/segments: segments written by StreamHouse's own writer."""
    if not FIXTURE_SEGMENTS.is_dir():
        pytest.fail(f"golden segment fixtures not found at {FIXTURE_SEGMENTS}")
    return FIXTURE_SEGMENTS


@pytest.fixture(scope="session")
def moto_server():  # type: ignore[no-untyped-def]
    """A moto_server (S3) on a free 127.0.0.1 port for the whole session; stopped at the end.

    Yields a :class:`streamhouse_beam.testing.servers.MotoServer` (``endpoint_url``,
    ``credentials()``, ``env()``, ``reset()``). Tests create their own uniquely named buckets.
    """
    from streamhouse_beam.testing.servers import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def gcs_emulator():  # type: ignore[no-untyped-def]
    """A gcp-storage-emulator (in memory) on a free 127.0.0.1 port; stopped at the end.

    Yields a :class:`streamhouse_beam.testing.servers.GcsEmulator` (``endpoint``, ``env()``
    for STORAGE_EMULATOR_HOST, ``wipe()``). Tests create their own uniquely named buckets.
    """
    from streamhouse_beam.testing.servers import GcsEmulator

    with GcsEmulator() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server():  # type: ignore[no-untyped-def]
    """A PostgreSQL cluster (initdb + pg_ctl, run as OS user postgres when root) on a free
    127.0.0.1 port; stopped and deleted at the end.

    Yields a :class:`streamhouse_beam.testing.postgres.PostgresServer` (``url(db)``,
    ``owner_url(db)``/``reader_url(db)`` for the password-protected roles, ``create_database()``,
    ``grant_reader(db)``, ``restart()``). Fails when the server binaries are missing
    (``make system-deps`` installs them).
    """
    from streamhouse_beam.testing.postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server):  # type: ignore[no-untyped-def]
    """URL of a fresh, empty database on the session server (superuser, no password)."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)
