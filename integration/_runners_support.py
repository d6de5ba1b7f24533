"""Shared pieces of the real-runner tests: fetching the runners, a toy SDF, output collection.

The toy splittable DoFn separates runner infrastructure problems from connector problems: if
it fails on a runner, the runner set-up is broken, not ``ReadFromStreamHouse``.

Pipelines here run with ``--environment_type=LOOPBACK``, so every DoFn runs in the pytest
process itself; :class:`CollectToFile` relies on that to hand elements back to the test
through a local file that the test can also watch while a streaming pipeline runs.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider

from streamhouse_beam.testing import runners

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
FETCH_RUNNERS = REPO_ROOT / ".ci" / "fetch-runners"

_fetch_lock = threading.Lock()
_fetched = False


def ensure_runners() -> None:
    """Run ``.ci/fetch-runners`` once per session when a runner is missing from the cache.

    ``make test`` has already run it; this keeps ``pytest integration/...`` working on its own.
    A failure to fetch fails the test with the script's output, never skips it.
    """
    global _fetched
    with _fetch_lock:
        if _fetched:
            return
        try:
            runners.flink_job_server()
            runners.prism_binary()
        except runners.RunnerNotInstalledError:
            proc = subprocess.run(
                ["bash", str(FETCH_RUNNERS)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                pytest.fail(
                    f".ci/fetch-runners failed with exit code {proc.returncode}:\n"
                    f"{proc.stdout}\n{proc.stderr}"
                )
        _fetched = True


class _CountingProvider(RestrictionProvider):  # type: ignore[misc]
    def initial_restriction(self, element: int) -> OffsetRange:
        return OffsetRange(0, element)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: int, restriction: OffsetRange) -> int:
        return int(restriction.size())


class CountUpTo(beam.DoFn):  # type: ignore[misc]
    """For an element ``n``, emits ``(n, 0) ... (n, n - 1)``, one claimed offset each."""

    def process(
        self,
        element: int,
        tracker: Any = beam.DoFn.RestrictionParam(_CountingProvider()),
    ) -> Iterator[tuple[int, int]]:
        position = tracker.current_restriction().start
        while tracker.try_claim(position):
            yield (element, position)
            position += 1


def toy_sdf_expected(sizes: list[int]) -> list[tuple[int, int]]:
    """What :class:`CountUpTo` emits for ``sizes``."""
    return [(n, i) for n in sizes for i in range(n)]


_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


class CollectToFile(beam.DoFn):  # type: ignore[misc]
    """Appends each element as one JSON line to a local file (LOOPBACK workers only).

    Args:
        path: the file; the test reads it with :func:`read_collected`.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, element: Any) -> Iterator[Any]:
        with _file_locks_guard:
            lock = _file_locks.setdefault(self.path, threading.Lock())
        line = json.dumps(_jsonable(element), sort_keys=True)
        with lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
        yield element


def _jsonable(element: Any) -> Any:
    if hasattr(element, "_asdict"):
        return {k: _jsonable(v) for k, v in element._asdict().items()}
    if isinstance(element, bytes):
        return element.hex()
    if isinstance(element, (tuple, list)):
        return [_jsonable(v) for v in element]
    if isinstance(element, dict):
        return {str(k): _jsonable(v) for k, v in element.items()}
    return element


def read_collected(path: pathlib.Path) -> list[Any]:
    """The JSON lines :class:`CollectToFile` wrote (empty when nothing was written yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
