"""``memory://name``: an in-process object store with S3's bucket semantics, for tests.

All ``MemoryStore`` instances of one process share one set of buckets, so a store that
Beam pickles and unpickles inside the same process (FnApiRunner, DirectRunner) sees the
same objects. ``memory://name`` reads and writes the bucket ``name`` whatever a per-call
``bucket`` (a segment row's ``s3_bucket``) says; ``memory://`` uses the per-call bucket, else
``"default"``: the same rule as ``s3://``. Objects are
stored under their percent-encoded names (:func:`~streamhouse_beam.storage.keys.encode_key`). Nothing is shared across processes.
"""

from __future__ import annotations

import threading
from typing import Any

from streamhouse_beam.errors import ObjectNotFoundError, StorageRootNotFoundError, UnsafeKeyError
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.storage.keys import encode_key

__all__ = ["MemoryStore"]

_LOCK = threading.Lock()
# bucket -> encoded object name -> bytes
_BUCKETS: dict[str, dict[str, bytes]] = {}

DEFAULT_BUCKET = "default"


def _check_range(start: int, end: int) -> None:
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if end < start:
        raise ValueError(f"end must be >= start, got start={start} end={end}")


def _check_length(length: int) -> None:
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")


class MemoryStore(ObjectStore):
    """Objects in a process-wide dict of buckets.

    Args:
        name: the bucket (``memory://name``); ``""`` uses each call's bucket, else
            ``"default"``.
    """

    scheme = "memory"

    def __init__(self, name: str = "") -> None:
        if "/" in name:
            raise ValueError(f"memory store name must not contain '/', got {name!r}")
        self.name = name

    def __repr__(self) -> str:
        return f"MemoryStore({self.url!r})"

    @property
    def url(self) -> str:
        return f"memory://{self.name}"

    @property
    def retry_count(self) -> int:
        """Always 0: memory operations never fail transiently."""
        return 0

    def stats(self) -> dict[str, int]:
        """Counters for metrics (``retries``)."""
        return {"retries": 0}

    def _bucket(self, bucket: str | None) -> str:
        return self.name or bucket or DEFAULT_BUCKET

    def check_root(self, *, bucket: str | None = None) -> None:
        target = self._bucket(bucket)
        with _LOCK:
            exists = target in _BUCKETS
        if not exists:
            raise StorageRootNotFoundError(
                f"the bucket does not exist in the memory store ({self.url})", bucket=target
            )

    def _locate(self, key: str, bucket: str | None) -> tuple[str, str]:
        name = encode_key(key)
        target = self._bucket(bucket)
        if not name:
            raise UnsafeKeyError(
                "key names no object (it is empty after normalisation)", key=key, bucket=target
            )
        return target, name

    def _read(self, key: str, bucket: str | None) -> bytes:
        target, name = self._locate(key, bucket)
        with _LOCK:
            data = _BUCKETS.get(target, {}).get(name)
        if data is None:
            raise ObjectNotFoundError(
                f"object {name!r} not found in memory store", key=key, bucket=target
            )
        return data

    def get(self, key: str, *, bucket: str | None = None) -> bytes:
        return self._read(key, bucket)

    def get_range(self, key: str, start: int, end: int, *, bucket: str | None = None) -> bytes:
        _check_range(start, end)
        return self._read(key, bucket)[start:end]

    def get_suffix(self, key: str, length: int, *, bucket: str | None = None) -> bytes:
        _check_length(length)
        data = self._read(key, bucket)
        return data[max(0, len(data) - length) :]

    def size(self, key: str, *, bucket: str | None = None) -> int:
        return len(self._read(key, bucket))

    def put(self, key: str, data: bytes, *, bucket: str | None = None) -> None:
        target, name = self._locate(key, bucket)
        blob = bytes(data)
        with _LOCK:
            _BUCKETS.setdefault(target, {})[name] = blob

    def delete(self, key: str, *, bucket: str | None = None) -> None:
        target, name = self._locate(key, bucket)
        with _LOCK:
            _BUCKETS.get(target, {}).pop(name, None)

    def object_names(self, *, bucket: str | None = None) -> list[str]:
        """Return the (encoded) object names in a bucket, sorted; for tests and debugging."""
        with _LOCK:
            return sorted(_BUCKETS.get(self._bucket(bucket), {}))

    def clear(self, *, bucket: str | None = None) -> None:
        """Remove every object of a bucket (default: this store's own bucket)."""
        with _LOCK:
            _BUCKETS.pop(self._bucket(bucket), None)

    def __reduce__(self) -> tuple[Any, ...]:
        return (MemoryStore, (self.name,))
