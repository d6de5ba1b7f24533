"""The segment cache's optional spill directory: evicted entries kept on local disk.

A :class:`SpillDirectory` writes whole objects to a private sub-directory of the directory it
is given, one file per key, bounded by bytes (least recently written or read dropped first),
and reads them back by key. The sub-directory is created on first use, per instance, so files
left by another process are never mistaken for hits (StreamHouse's own disk cache counts any
existing file as a hit, including files a previous process left behind, without counting them
in its size). :meth:`SpillDirectory.close` removes it; the directory is usable again afterwards
and creates a fresh sub-directory when needed.

It knows nothing about the in-memory cache; :class:`~streamhouse_beam.cache.SegmentCache` calls
it outside its own lock (writes and reads are disk I/O). It is thread-safe.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Hashable

__all__ = ["SpillDirectory", "spill_name"]

_LOG = logging.getLogger(__name__)


def spill_name(key: Hashable) -> str:
    """The file name of ``key``'s object in the spill directory."""
    # repr() of the tuples the reader uses (str/int) is stable; hashing keeps names safe.
    return hashlib.sha256(repr(key).encode("utf-8", "backslashreplace")).hexdigest() + ".seg"


class SpillDirectory:
    """Objects on local disk under ``parent``, at most ``max_bytes`` of them.

    Args:
        parent: the directory to create the private sub-directory in (created if missing).
        max_bytes: bound of the files kept, in bytes.
    """

    def __init__(self, parent: str, max_bytes: int) -> None:
        self.parent = parent
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._path: str | None = None
        # Spilled keys and their sizes, least recently written or read first.
        self._sizes: collections.OrderedDict[Hashable, int] = collections.OrderedDict()
        self._bytes = 0

    @property
    def used_bytes(self) -> int:
        """Bytes of the objects currently on disk."""
        with self._lock:
            return self._bytes

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._sizes

    def put(self, key: Hashable, data: bytes) -> bool:
        """Write ``key``'s object; return whether it was written.

        Nothing is written for a key already on disk or an object larger than the whole bound;
        a write that fails is logged and skipped (the spill directory is an optimization).
        Older objects are removed until the bound holds again.
        """
        if len(data) > self.max_bytes:
            return False
        with self._lock:
            if key in self._sizes:
                return False
            path = self._dir_locked()
        target = os.path.join(path, spill_name(key))
        tmp = target + ".tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except OSError as exc:
            _LOG.warning("cannot spill a segment to %s: %s", path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        dropped: list[Hashable] = []
        with self._lock:
            self._sizes[key] = len(data)
            self._bytes += len(data)
            while self._bytes > self.max_bytes and self._sizes:
                old_key, old_size = self._sizes.popitem(last=False)
                self._bytes -= old_size
                dropped.append(old_key)
        for old_key in dropped:
            self._remove_file(old_key)
        return True

    def read(self, key: Hashable) -> bytes | None:
        """``key``'s object, or ``None`` when it is not on disk (or its file cannot be read)."""
        with self._lock:
            path = self._path
            if path is None or key not in self._sizes:
                return None
            self._sizes.move_to_end(key)
        try:
            with open(os.path.join(path, spill_name(key)), "rb") as fh:
                return fh.read()
        except OSError:
            with self._lock:
                size = self._sizes.pop(key, None)
                if size is not None:
                    self._bytes -= size
            return None

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` and remove its file, if it is on disk."""
        with self._lock:
            size = self._sizes.pop(key, None)
            if size is None:
                return
            self._bytes -= size
        self._remove_file(key)

    def close(self) -> None:
        """Remove the sub-directory and forget every object; a later :meth:`put` makes a new one."""
        with self._lock:
            path, self._path = self._path, None
            self._sizes.clear()
            self._bytes = 0
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def _dir_locked(self) -> str:
        if self._path is None:
            os.makedirs(self.parent, exist_ok=True)
            self._path = tempfile.mkdtemp(prefix="segment-cache-", dir=self.parent)
        return self._path

    def _remove_file(self, key: Hashable) -> None:
        path = self._path
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(path, spill_name(key)))

    def __repr__(self) -> str:
        return f"SpillDirectory({self.parent!r}, max_bytes={self.max_bytes})"
