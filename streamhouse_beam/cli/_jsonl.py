"""A local JSON-lines sink for in-process runners (the ``read`` command's output).

Lines are appended to a local file (or written to standard output for the path ``-``) as
bundles finish, so a tailing read shows its records while it runs. Only meaningful when the
workers share the launcher's process and file system (FnApiRunner).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import apache_beam as beam

__all__ = ["AppendJsonLines", "Progress", "StdoutClosed"]

_FILE_LOCK = threading.Lock()


class StdoutClosed(BrokenPipeError):
    """Standard output was closed by its reader (``streamhouse-beam read | head``)."""

    # Beam re-raises a DoFn's exception as ``type(exc)(message + step)``, which an OSError's
    # (errno, text) arguments do not survive: it would arrive as a RuntimeError. Marked as
    # already tagged, it arrives as itself and the command can end quietly.
    _tagged_with_step = True


class Progress:
    """Process-wide count of lines written, shown on stderr when it is a terminal.

    At most once a second, one line rewritten in place: records written, of how many when the
    total is known (a bounded read planned from the metadata), and the rate. Nothing at all
    when stderr is not a terminal (a log file, a pipe) or with ``--quiet``.
    """

    lock = threading.Lock()
    #: Seconds between two updates of the line.
    interval = 1.0
    count = 0
    total: int | None = None
    started = 0.0
    last_report = 0.0
    shown = False
    enabled = False

    @classmethod
    def reset(cls, quiet: bool, total: int | None = None) -> None:
        with cls.lock:
            cls.count = 0
            cls.total = total
            cls.started = time.monotonic()
            cls.last_report = cls.started
            cls.shown = False
            cls.enabled = not quiet and sys.stderr.isatty()

    @classmethod
    def add(cls, n: int) -> None:
        with cls.lock:
            cls.count += n
            now = time.monotonic()
            if cls.enabled and now - cls.last_report >= cls.interval:
                cls.last_report = now
                cls._show(now)

    @classmethod
    def finish(cls) -> None:
        """End the progress line (the next output starts on a fresh line)."""
        with cls.lock:
            if cls.shown:
                sys.stderr.write("\n")
                sys.stderr.flush()
                cls.shown = False

    @classmethod
    def line(cls, now: float) -> str:
        """The progress text at ``now`` (``time.monotonic()``)."""
        done = f"{cls.count:,}"
        if cls.total is not None:
            share = min(100, cls.count * 100 // cls.total) if cls.total else 100
            done = f"{done}/{cls.total:,} records ({share}%)"
        else:
            done = f"{done} records"
        elapsed = max(now - cls.started, 1e-9)
        return f"streamhouse-beam read: {done}, {cls.count / elapsed:,.0f} records/s"

    @classmethod
    def _show(cls, now: float) -> None:
        sys.stderr.write("\r" + cls.line(now) + "\x1b[K")
        sys.stderr.flush()
        cls.shown = True


class AppendJsonLines(beam.DoFn):  # type: ignore[misc]
    """Appends each input line to ``path`` (``-``: standard output), flushing every 1000
    lines and at bundle end."""

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
        text = "\n".join(self._lines) + "\n"
        with _FILE_LOCK:
            if self.path == "-":
                try:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                except BrokenPipeError:
                    raise StdoutClosed("standard output was closed") from None
            else:
                with open(self.path, "a", encoding="utf-8") as out:
                    out.write(text)
        Progress.add(len(self._lines))
        self._lines = []
