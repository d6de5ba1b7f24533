"""An ObjectStore wrapper that adds a fixed delay to every read, like a distant object store.

:class:`LatencyStore` makes local stores (memory, file) behave like S3/GCS for benchmarks: each
``get``/``get_range``/``get_suffix``/``size`` sleeps ``latency`` seconds (the round trip) plus
``len(data) / bandwidth`` seconds when a bandwidth is given, then returns the inner store's
answer. Sleeping releases the GIL, so concurrent downloads overlap as they would on a network.
It counts calls per operation so benchmarks can report request counts.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.testing._shared import WrappedStore

__all__ = ["LatencyStore"]


class LatencyStore(WrappedStore):
    """Delay every read of ``inner`` by a round trip (and optionally a transfer time).

    Args:
        inner: the real store; writes and deletes pass through without delay.
        latency: seconds added to every read request (e.g. 0.02 for 20 ms).
        bandwidth: bytes per second of the simulated link; ``None`` for unlimited.
    """

    def __init__(
        self, inner: ObjectStore, latency: float, *, bandwidth: float | None = None
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0 bytes/s, got {bandwidth!r}")
        super().__init__(inner)
        self.latency = float(latency)
        self.bandwidth = bandwidth
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.bytes_read = 0

    def __repr__(self) -> str:
        return f"LatencyStore({self.inner!r}, latency={self.latency})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _delay(self, op: str, size: int) -> None:
        with self._lock:
            self.calls[op] = self.calls.get(op, 0) + 1
            self.bytes_read += size
        pause = self.latency + (size / self.bandwidth if self.bandwidth else 0.0)
        if pause > 0:
            time.sleep(pause)

    def get(self, key: str, *, bucket: str | None = None) -> bytes:
        data = self.inner.get(key, bucket=bucket)
        self._delay("get", len(data))
        return data

    def get_range(self, key: str, start: int, end: int, *, bucket: str | None = None) -> bytes:
        data = self.inner.get_range(key, start, end, bucket=bucket)
        self._delay("get_range", len(data))
        return data

    def get_suffix(self, key: str, length: int, *, bucket: str | None = None) -> bytes:
        data = self.inner.get_suffix(key, length, bucket=bucket)
        self._delay("get_suffix", len(data))
        return data

    def size(self, key: str, *, bucket: str | None = None) -> int:
        value = self.inner.size(key, bucket=bucket)
        self._delay("size", 0)
        return value
