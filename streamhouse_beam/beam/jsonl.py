"""A local JSON-lines sink for in-process runners (the ``read`` command's output).

Lines are appended to a local file as bundles finish, so a tailing read shows its records
while it runs. Only meaningful when the workers share the launcher's file system (FnApiRunner).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import apache_beam as beam

__all__ = ["AppendJsonLines", "Progress"]

_FILE_LOCK = threading.Lock()


class Progress:
    """Process-wide count of lines written; reported on stderr at most once a second."""

    lock = threading.Lock()
    count = 0
    last_report = 0.0
    quiet = False

    @classmethod
    def reset(cls, quiet: bool) -> None:
        with cls.lock:
            cls.count = 0
            cls.last_report = 0.0
            cls.quiet = quiet

    @classmethod
    def add(cls, n: int) -> None:
        with cls.lock:
            cls.count += n
            now = time.monotonic()
            if not cls.quiet and now - cls.last_report >= 1.0:
                cls.last_report = now
                print(f"streamhouse-beam read: {cls.count} records", file=sys.stderr, flush=True)


class AppendJsonLines(beam.DoFn):  # type: ignore[misc]
    """Appends each input line to ``path``, flushing every 1000 lines and at bundle end."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lines: list[str] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._lines = []

    def start_bundle(self) -> None:
        self._lines = []

    def process(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= 1000:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if not self._lines:
            return
        with _FILE_LOCK, open(self.path, "a", encoding="utf-8") as out:
            out.write("\n".join(self._lines) + "\n")
        Progress.add(len(self._lines))
        self._lines = []
