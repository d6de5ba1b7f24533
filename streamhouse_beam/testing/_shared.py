"""What the test wrappers share: pass-through writes around a store, and fault arguments.

:class:`WrappedStore` is the base of :class:`~streamhouse_beam.testing.faulty_store.FaultyStore`
and :class:`~streamhouse_beam.testing.latency.LatencyStore`, which change only the reads of the
store they wrap. :func:`check_faults` validates the ``failure_rate`` and ``faults`` arguments of
those fault injectors and of :class:`~streamhouse_beam.testing.fault_proxy.FaultProxy`.
"""

from __future__ import annotations

from collections.abc import Iterable

from streamhouse_beam.storage.base import ObjectStore

__all__ = ["WrappedStore", "check_faults"]


class WrappedStore(ObjectStore):
    """An :class:`ObjectStore` around ``inner`` that changes only its reads.

    The URL and scheme are ``inner``'s; writes, deletes and :meth:`close` go straight to it.
    """

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.scheme = inner.scheme

    @property
    def url(self) -> str:
        return self.inner.url

    def put(self, key: str, data: bytes, *, bucket: str | None = None) -> None:
        self.inner.put(key, data, bucket=bucket)

    def delete(self, key: str, *, bucket: str | None = None) -> None:
        self.inner.delete(key, bucket=bucket)

    def check_root(self, *, bucket: str | None = None) -> None:
        self.inner.check_root(bucket=bucket)

    def close(self) -> None:
        self.inner.close()


def check_faults(
    failure_rate: float, faults: Iterable[str], known: tuple[str, ...]
) -> tuple[str, ...]:
    """Check a fault injector's ``failure_rate`` and ``faults``; return the fault kinds.

    Raises:
        ValueError: ``failure_rate`` is outside ``[0, 1]``, or ``faults`` is empty or names a
            kind that is not in ``known``.
    """
    if not 0.0 <= failure_rate <= 1.0:
        raise ValueError(f"failure_rate must be in [0, 1], got {failure_rate!r}")
    fault_list = tuple(faults)
    unknown = sorted(set(fault_list) - set(known))
    if unknown or not fault_list:
        raise ValueError(f"faults must be a non-empty subset of {known}, got {fault_list!r}")
    return fault_list
