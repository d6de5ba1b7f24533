"""The per-worker segment cache and prefetcher.

A :class:`SegmentCache` holds whole segment objects in memory, bounded by bytes, and knows
nothing about object stores: every entry is produced by a *fetch callable* the caller passes
(``lambda: store.get(key)``), so the cache is testable with plain functions and reusable for
any backend. It gives the read path four things StreamHouse's own reader lacks (that reader
keeps whole segment files in a disk directory, counts files a previous process left there as
hits, and prefetches under a key its reads never look up):

* **Single flight.** Concurrent :meth:`SegmentCache.get` calls for one key cause one fetch;
  every waiter receives the same bytes, or the same exception (errors are never cached).
* **Pinning.** :meth:`~SegmentCache.get` returns a :class:`CacheLease`; the entry cannot be
  evicted until the lease is released, so a segment being decoded is never dropped under the
  reader. Unpinned entries are evicted least recently used first once the byte budget is
  exceeded, those already used before prefetched ones still waiting for their reader. Pinned
  entries are never evicted, so the cache may exceed its budget by the bytes that are pinned at
  that moment.
* **Exact prefetch.** :meth:`~SegmentCache.prefetch` downloads the keys the caller names (the
  next segments of the metadata list, not StreamHouse's ``base + 10000`` guess) in a
  background thread pool. Prefetched bytes count against the budget; a prefetch never evicts a
  pinned entry or another unused prefetch and stops as soon as the budget is full.
* **Optional spill directory.** With ``spill_dir``, evicted entries are written to a private
  sub-directory (bounded by ``spill_max_bytes``, LRU; see
  :class:`~streamhouse_beam._cache_spill.SpillDirectory`) and a later ``get`` reads them from
  disk instead of downloading again.

An entry larger than the whole budget is still served: it stays pinned while leased, is never
counted as evictable room, and is dropped (or spilled) as soon as its last lease is released.

Counting: ``hits`` are gets served without starting a download (from memory, from the spill
directory, or by joining a download already in flight); ``misses`` are gets that started one;
``prefetch_hits`` are gets that were the first to use a prefetched entry (including joining a
prefetch still in flight); ``wasted_prefetches`` are prefetched entries evicted before any get
used them; ``stall_seconds`` is the time gets spent waiting for downloads.

One cache per worker process and configuration is shared by every DoFn instance and thread
through :func:`hold_worker_cache` (or borrowed with :func:`get_worker_cache`); once nobody holds
or uses it for a while it is closed (see :mod:`streamhouse_beam._worker_registry`). The cache
survives pickling as its configuration only (threads, locks and entries are dropped and rebuilt
lazily) and rebuilds its state after a ``fork``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from streamhouse_beam._cache_spill import SpillDirectory
from streamhouse_beam._worker_registry import Hold, WorkerRegistry

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_PREFETCH_WORKERS",
    "CacheLease",
    "CacheStats",
    "SegmentCache",
    "get_worker_cache",
    "hold_worker_cache",
]

_LOG = logging.getLogger(__name__)

#: Default in-memory budget of a cache: 256 MiB.
DEFAULT_CACHE_BYTES = 256 << 20
#: Default prefetch threads. Downloads are I/O bound and the pool starts threads only when
#: work is queued, so this is sized for a worker that starts many partitions at once: with
#: fewer threads than partitions, first segments arrive in ceil(partitions / threads) waves.
DEFAULT_PREFETCH_WORKERS = 16

Fetch = Callable[[], bytes]
PrefetchItem = tuple[Hashable, Fetch, "int | None"]


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """A snapshot of a cache's counters (see the module docstring for what each counts)."""

    hits: int = 0
    misses: int = 0
    prefetches_issued: int = 0
    prefetch_hits: int = 0
    wasted_prefetches: int = 0
    bytes_downloaded: int = 0
    evictions: int = 0
    bytes_cached: int = 0
    entries: int = 0
    stall_seconds: float = 0.0
    spill_hits: int = 0
    bytes_spilled: int = 0
    prefetch_errors: int = 0

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``, or 1.0 before any get."""
        total = self.hits + self.misses
        return self.hits / total if total else 1.0

    def minus(self, earlier: CacheStats) -> CacheStats:
        """Counters accumulated since ``earlier`` (gauges ``bytes_cached``/``entries`` kept)."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            now = getattr(self, field.name)
            if field.name in ("bytes_cached", "entries"):
                values[field.name] = now
            else:
                values[field.name] = now - getattr(earlier, field.name)
        return CacheStats(**values)


class _Entry:
    """One cached object. Mutated only under the cache lock."""

    __slots__ = ("data", "detached", "key", "oversize", "pins", "prefetched", "size")

    def __init__(self, key: Hashable, data: bytes, *, prefetched: bool, oversize: bool) -> None:
        self.key = key
        self.data = data
        self.size = len(data)
        self.pins = 0
        # True while the entry came from a prefetch and no get has used it yet.
        self.prefetched = prefetched
        self.oversize = oversize
        # Removed from the index (invalidated or oversize) while still leased.
        self.detached = False


class _Flight:
    """A download in progress; gets of the same key wait on it instead of fetching again."""

    __slots__ = ("done", "entry", "error", "prefetch", "reserved", "waiters")

    def __init__(self, *, prefetch: bool, reserved: int = 0) -> None:
        self.done = threading.Event()
        self.entry: _Entry | None = None
        self.error: BaseException | None = None
        self.prefetch = prefetch
        self.reserved = reserved
        # Gets blocked on this flight; the entry is installed with one pin per waiter so it
        # cannot be evicted between the download finishing and the waiters waking up.
        self.waiters = 0


class _CacheClosedError(RuntimeError):
    """A prefetch cancelled by :meth:`SegmentCache.close` (waiters retry with their own fetch)."""


class CacheLease:
    """Access to one cached object; the entry stays pinned until :meth:`release`.

    Use it as a context manager, or call :meth:`release` exactly once (further calls are
    no-ops).

    Attributes:
        key: the cache key.
        hit: the get was served without starting a download.
        prefetched: the get was the first to use an entry a prefetch downloaded.
        waited: seconds the get spent waiting for a download (its own, or one in flight that
            it joined); 0.0 when the bytes were already in memory.
    """

    __slots__ = ("_cache", "_entry", "_released", "hit", "key", "prefetched", "waited")

    def __init__(
        self,
        cache: SegmentCache,
        entry: _Entry,
        *,
        hit: bool,
        prefetched: bool,
        waited: float = 0.0,
    ) -> None:
        self._cache = cache
        self._entry = entry
        self._released = False
        self.key = entry.key
        self.hit = hit
        self.prefetched = prefetched
        self.waited = waited

    @property
    def data(self) -> bytes:
        """The object's bytes (valid after release too, but then no longer accounted for)."""
        return self._entry.data

    @property
    def size(self) -> int:
        """Length of :attr:`data`."""
        return self._entry.size

    def release(self) -> None:
        """Unpin the entry so it may be evicted."""
        if not self._released:
            self._released = True
            self._cache._release(self._entry)

    def release_later(self) -> None:
        """Unpin the entry at the cache's next operation, without taking any lock now.

        For finalizers: the garbage collector may run one inside a cache operation of the
        same thread, where taking the cache's lock would wait for ever.
        """
        if not self._released:
            self._released = True
            self._cache._unpins.append(self._entry)

    def __enter__(self) -> CacheLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "pinned"
        return f"CacheLease({self.key!r}, {self._entry.size} bytes, hit={self.hit}, {state})"


class SegmentCache:
    """A byte-bounded LRU of whole objects with single-flight gets and background prefetch.

    Args:
        max_bytes: in-memory budget in bytes (default 256 MiB).
        prefetch_workers: threads of the prefetch pool (default 16); 0 disables
            :meth:`prefetch`.
        spill_dir: directory for the optional on-disk spill; ``None`` disables it.
        spill_max_bytes: bound of the spill directory in bytes; defaults to ``4 * max_bytes``.

    Raises:
        ValueError: a negative or zero size, or ``spill_max_bytes`` without ``spill_dir``.
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_CACHE_BYTES,
        *,
        prefetch_workers: int = DEFAULT_PREFETCH_WORKERS,
        spill_dir: str | os.PathLike[str] | None = None,
        spill_max_bytes: int | None = None,
    ) -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        if not isinstance(prefetch_workers, int) or prefetch_workers < 0:
            raise ValueError(f"prefetch_workers must be an int >= 0, got {prefetch_workers!r}")
        if spill_max_bytes is not None:
            if spill_dir is None:
                raise ValueError("spill_max_bytes was given without spill_dir")
            if not isinstance(spill_max_bytes, int) or spill_max_bytes <= 0:
                raise ValueError(f"spill_max_bytes must be a positive int, got {spill_max_bytes!r}")
        self.max_bytes = max_bytes
        self.prefetch_workers = prefetch_workers
        self.spill_dir = os.fspath(spill_dir) if spill_dir is not None else None
        self.spill_max_bytes = (
            (spill_max_bytes if spill_max_bytes is not None else 4 * max_bytes)
            if spill_dir is not None
            else 0
        )
        self._init_state()

    # ----------------------------------------------------------------------------------
    # state, pickling, fork
    # ----------------------------------------------------------------------------------

    def _init_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # Entries whose leases finalizers released (CacheLease.release_later); deque.append
        # needs no lock, and every operation unpins them before its own work.
        self._unpins: collections.deque[_Entry] = collections.deque()
        self._entries: collections.OrderedDict[Hashable, _Entry] = collections.OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self._bytes = 0  # bytes of indexed, non-oversize entries
        self._pinned_bytes = 0  # of those, bytes with pins > 0
        self._unused_prefetch_bytes = 0  # of those, unpinned bytes no get has used yet
        self._reserved = 0  # size hints of prefetches in flight
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._disk = (
            SpillDirectory(self.spill_dir, self.spill_max_bytes)
            if self.spill_dir is not None
            else None
        )
        self._counts: dict[str, Any] = {
            "hits": 0,
            "misses": 0,
            "prefetches_issued": 0,
            "prefetch_hits": 0,
            "wasted_prefetches": 0,
            "bytes_downloaded": 0,
            "evictions": 0,
            "stall_seconds": 0.0,
            "spill_hits": 0,
            "bytes_spilled": 0,
            "prefetch_errors": 0,
        }

    def _check_fork(self) -> None:
        # Threads and the lock's state do not survive fork(); a child starts empty.
        if self._pid != os.getpid():
            self._init_state()
        while self._unpins:
            try:
                entry = self._unpins.popleft()
            except IndexError:  # another thread took the last one
                break
            self._unpin(entry)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "max_bytes": self.max_bytes,
            "prefetch_workers": self.prefetch_workers,
            "spill_dir": self.spill_dir,
            "spill_max_bytes": self.spill_max_bytes,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_bytes = state["max_bytes"]
        self.prefetch_workers = state["prefetch_workers"]
        self.spill_dir = state["spill_dir"]
        self.spill_max_bytes = state["spill_max_bytes"]
        self._init_state()

    def __repr__(self) -> str:
        return (
            f"SegmentCache(max_bytes={self.max_bytes}, prefetch_workers={self.prefetch_workers}, "
            f"spill_dir={self.spill_dir!r})"
        )

    # ----------------------------------------------------------------------------------
    # public API
    # ----------------------------------------------------------------------------------

    def get(self, key: Hashable, fetch: Fetch, *, size_hint: int | None = None) -> CacheLease:
        """Return a pinned lease on the object for ``key``, fetching it if needed.

        Blocks until the bytes are available. Concurrent calls for one key share one fetch.

        Args:
            key: the object's identity (hashable; the reader uses store, bucket, key and
                ``created_at``).
            fetch: called without arguments to download the object when it is not cached.
            size_hint: the expected size (unused by ``get``; accepted for symmetry with
                :meth:`prefetch`).

        Returns:
            A lease; release it (or leave its ``with`` block) when done with the bytes.

        Raises:
            Whatever ``fetch`` raises; every waiter of that fetch gets the same exception and
            nothing is cached.
        """
        del size_hint
        self._check_fork()
        retried_prefetch = False
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    first_use = self._pin(entry)
                    self._counts["hits"] += 1
                    if first_use:
                        self._counts["prefetch_hits"] += 1
                    return CacheLease(self, entry, hit=True, prefetched=first_use)
                flight = self._flights.get(key)
                if flight is not None:
                    flight.waiters += 1
                    leader = False
                else:
                    flight = _Flight(prefetch=False)
                    self._flights[key] = flight
                    leader = True
            if not leader:
                started = time.perf_counter()
                flight.done.wait()
                waited = time.perf_counter() - started
                with self._lock:
                    self._counts["stall_seconds"] += waited
                    if flight.error is None:
                        assert flight.entry is not None
                        entry = flight.entry
                        # The installer pinned the entry once for us.
                        first_use = entry.prefetched
                        if first_use:
                            entry.prefetched = False
                            self._counts["prefetch_hits"] += 1
                        self._counts["hits"] += 1
                        return CacheLease(
                            self, entry, hit=True, prefetched=first_use, waited=waited
                        )
                if flight.prefetch and not retried_prefetch:
                    # A failed background prefetch must not fail the read: fetch ourselves,
                    # so the caller sees its own error (or success) instead.
                    retried_prefetch = True
                    continue
                assert flight.error is not None
                raise flight.error
            return self._lead(key, flight, fetch)

    def prefetch(self, items: Iterable[PrefetchItem]) -> int:
        """Start background downloads of ``items`` that are neither cached nor in flight.

        Returns at once. Items are taken in order; the first one that does not fit in the
        budget stops the loop (later items are further ahead and would fit even less). Room is
        what is left after pinned entries, unused prefetched entries and prefetches in flight;
        unpinned entries that were already used are evicted (LRU) to make room when the
        download lands, pinned ones never.

        Args:
            items: ``(key, fetch, size)`` tuples; ``size`` (bytes, or ``None`` when unknown)
                is reserved against the budget while the download runs.

        Returns:
            The number of downloads started.
        """
        self._check_fork()
        if self.prefetch_workers == 0:
            return 0
        started = 0
        for key, fetch, size in items:
            reserve = max(0, int(size or 0))
            with self._lock:
                if key in self._entries or key in self._flights:
                    continue
                committed = self._pinned_bytes + self._unused_prefetch_bytes + self._reserved
                if committed + reserve > self.max_bytes or (
                    size is None and committed >= self.max_bytes
                ):
                    break
                flight = _Flight(prefetch=True, reserved=reserve)
                self._flights[key] = flight
                self._reserved += reserve
                self._counts["prefetches_issued"] += 1
                executor = self._executor_locked()
            try:
                future = executor.submit(self._run_prefetch, key, flight, fetch)
            except RuntimeError as exc:  # the executor was shut down concurrently
                self._finish_flight(key, flight, None, exc, prefetched=True)
                break
            future.add_done_callback(functools.partial(self._on_prefetch_done, key, flight))
            started += 1
        return started

    def contains(self, key: Hashable) -> bool:
        """Whether ``key`` is cached in memory (not counting the spill directory)."""
        self._check_fork()
        with self._lock:
            return key in self._entries

    def in_flight(self, key: Hashable) -> bool:
        """Whether a download of ``key`` is running."""
        self._check_fork()
        with self._lock:
            return key in self._flights

    def invalidate(self, key: Hashable) -> None:
        """Forget ``key`` in memory and in the spill directory (e.g. after a CRC failure).

        Leases already handed out keep their bytes; the next get fetches again.
        """
        self._check_fork()
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._unaccount(entry)
                entry.detached = True
        if self._disk is not None:
            self._disk.discard(key)

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters."""
        self._check_fork()
        with self._lock:
            return CacheStats(
                bytes_cached=self._bytes,
                entries=len(self._entries),
                **self._counts,
            )

    def close(self) -> None:
        """Stop the prefetch pool, drop every unpinned entry and remove the spill directory.

        Pending prefetches are cancelled (gets waiting on them fetch for themselves). The
        cache stays usable: the pool and the spill directory are re-created on demand.
        """
        self._check_fork()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.pins == 0]:
                self._unaccount(self._entries.pop(key))
        if self._disk is not None:
            self._disk.close()

    def __enter__(self) -> SegmentCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------
    # internals (the *_locked helpers expect self._lock to be held)
    # ----------------------------------------------------------------------------------

    def _executor_locked(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.prefetch_workers, thread_name_prefix="streamhouse-prefetch"
            )
        return self._executor

    def _pin(self, entry: _Entry) -> bool:
        """Pin ``entry``; return whether this is the first use of a prefetched entry."""
        if entry.pins == 0 and not entry.oversize and not entry.detached:
            self._pinned_bytes += entry.size
            if entry.prefetched:
                self._unused_prefetch_bytes -= entry.size
        entry.pins += 1
        first_use = entry.prefetched
        entry.prefetched = False
        return first_use

    def _unaccount(self, entry: _Entry) -> None:
        """Remove a just-unindexed entry from the byte totals."""
        if entry.oversize:
            return
        self._bytes -= entry.size
        if entry.pins:
            self._pinned_bytes -= entry.size
        elif entry.prefetched:
            self._unused_prefetch_bytes -= entry.size

    def _lead(self, key: Hashable, flight: _Flight, fetch: Fetch) -> CacheLease:
        """Download ``key`` for a get (the flight's leader) and install it."""
        data = self._read_spill(key)
        from_spill = data is not None
        started = time.perf_counter()
        if data is None:
            try:
                data = _as_bytes(fetch(), key)
            except BaseException as exc:
                with self._lock:
                    self._counts["misses"] += 1
                    self._counts["stall_seconds"] += time.perf_counter() - started
                self._finish_flight(key, flight, None, exc, prefetched=False)
                raise
        waited = 0.0 if from_spill else time.perf_counter() - started
        with self._lock:
            if from_spill:
                self._counts["hits"] += 1
                self._counts["spill_hits"] += 1
            else:
                self._counts["misses"] += 1
                self._counts["stall_seconds"] += waited
                self._counts["bytes_downloaded"] += len(data)
        entry = self._finish_flight(key, flight, data, None, prefetched=False)
        assert entry is not None
        return CacheLease(self, entry, hit=from_spill, prefetched=False, waited=waited)

    def _run_prefetch(self, key: Hashable, flight: _Flight, fetch: Fetch) -> None:
        # An evicted entry still in the spill directory comes back from disk, not the network.
        spilled = self._read_spill(key)
        if spilled is not None:
            self._finish_flight(key, flight, spilled, None, prefetched=True)
            return
        try:
            data = _as_bytes(fetch(), key)
        except BaseException as exc:
            with self._lock:
                self._counts["prefetch_errors"] += 1
            _LOG.debug("prefetch of %r failed: %s", key, exc)
            self._finish_flight(key, flight, None, exc, prefetched=True)
            return
        with self._lock:
            self._counts["bytes_downloaded"] += len(data)
        self._finish_flight(key, flight, data, None, prefetched=True)

    def _on_prefetch_done(
        self, key: Hashable, flight: _Flight, future: concurrent.futures.Future[None]
    ) -> None:
        if future.cancelled():
            self._finish_flight(
                key, flight, None, _CacheClosedError("cache closed"), prefetched=True
            )

    def _finish_flight(
        self,
        key: Hashable,
        flight: _Flight,
        data: bytes | None,
        error: BaseException | None,
        *,
        prefetched: bool,
    ) -> _Entry | None:
        """Resolve a flight: install the entry (pinned for the leader and every waiter) or
        hand the error to the waiters. Returns the installed entry."""
        to_spill: list[_Entry] = []
        entry: _Entry | None = None
        with self._lock:
            if flight.done.is_set():
                return flight.entry
            if self._flights.get(key) is flight:
                del self._flights[key]
            self._reserved -= flight.reserved
            if error is not None or data is None:
                flight.error = error
            else:
                oversize = len(data) > self.max_bytes
                entry = _Entry(key, data, prefetched=prefetched, oversize=oversize)
                # The leader (a get, not a prefetch) and each waiter hold one pin.
                pins = flight.waiters + (0 if prefetched else 1)
                if not oversize:
                    old = self._entries.pop(key, None)
                    if old is not None:
                        self._unaccount(old)
                        old.detached = True
                    self._entries[key] = entry
                    self._bytes += entry.size
                    if pins:
                        self._pinned_bytes += entry.size
                    elif prefetched:
                        self._unused_prefetch_bytes += entry.size
                # When gets joined a prefetch, entry.prefetched stays true although the entry
                # is pinned: the first waiter to wake counts the prefetch hit and clears it.
                entry.pins = pins
                if oversize and pins == 0:
                    # Nobody wants it right now and it can never fit: spill or drop at once.
                    to_spill.append(entry)
                    self._counts["evictions"] += 1
                    if prefetched:
                        self._counts["wasted_prefetches"] += 1
                flight.entry = entry
                to_spill.extend(self._evict_locked())
            flight.done.set()
        self._spill(to_spill)
        return entry

    def _release(self, entry: _Entry) -> None:
        self._check_fork()
        self._unpin(entry)

    def _unpin(self, entry: _Entry) -> None:
        to_spill: list[_Entry] = []
        with self._lock:
            entry.pins -= 1
            if entry.pins > 0:
                return
            if entry.oversize:
                to_spill.append(entry)
                self._counts["evictions"] += 1
            elif not entry.detached:
                self._pinned_bytes -= entry.size
                to_spill.extend(self._evict_locked())
        self._spill(to_spill)

    def _evict_locked(self) -> list[_Entry]:
        """Evict unpinned entries until the budget holds; return them.

        Entries a get has used go first, least recently used first; prefetched entries no get
        has used yet go only when that is not enough. A sequential reader touches the segment
        it just finished *after* the next ones were prefetched, so plain LRU would throw away
        the prefetched segments it is about to read.
        """
        evicted: list[_Entry] = []
        if self._bytes <= self.max_bytes:
            return evicted
        for unused_pass in (False, True):
            for key in list(self._entries):
                if self._bytes <= self.max_bytes:
                    return evicted
                entry = self._entries[key]
                if entry.pins or entry.prefetched != unused_pass:
                    continue
                del self._entries[key]
                self._unaccount(entry)
                entry.detached = True
                self._counts["evictions"] += 1
                if entry.prefetched:
                    self._counts["wasted_prefetches"] += 1
                evicted.append(entry)
        # Only pinned entries are left: the budget holds again when they are released.
        return evicted

    # ----------------------------------------------------------------------------------
    # spill directory (disk I/O, outside the lock)
    # ----------------------------------------------------------------------------------

    def _spill(self, entries: list[_Entry]) -> None:
        """Write evicted entries to the spill directory, unless they are back in memory."""
        spill = self._disk
        if spill is None or not entries:
            return
        for entry in entries:
            if entry.size > spill.max_bytes:
                continue
            with self._lock:
                if entry.key in self._entries:
                    continue
            if spill.put(entry.key, entry.data):
                with self._lock:
                    self._counts["bytes_spilled"] += entry.size

    def _read_spill(self, key: Hashable) -> bytes | None:
        return None if self._disk is None else self._disk.read(key)


def _as_bytes(data: object, key: Hashable) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"fetch for {key!r} returned {type(data).__name__}, expected bytes")


# --------------------------------------------------------------------------------------------
# one cache per worker process
# --------------------------------------------------------------------------------------------

#: How long a worker cache nobody holds is kept, and how many such caches at most.
WORKER_CACHE_IDLE_SECONDS = 120.0
MAX_IDLE_WORKER_CACHES = 2

_WORKER_CACHES: WorkerRegistry[tuple[Any, ...], SegmentCache] = WorkerRegistry(
    "segment caches",
    SegmentCache.close,
    idle_seconds=WORKER_CACHE_IDLE_SECONDS,
    max_idle=MAX_IDLE_WORKER_CACHES,
)


def _worker_cache_args(
    max_bytes: int,
    prefetch_workers: int,
    spill_dir: str | os.PathLike[str] | None,
    spill_max_bytes: int | None,
) -> tuple[tuple[Any, ...], Callable[[], SegmentCache]]:
    key = (
        max_bytes,
        prefetch_workers,
        os.fspath(spill_dir) if spill_dir is not None else None,
        spill_max_bytes,
    )

    def make() -> SegmentCache:
        return SegmentCache(
            max_bytes,
            prefetch_workers=prefetch_workers,
            spill_dir=spill_dir,
            spill_max_bytes=spill_max_bytes,
        )

    return key, make


def get_worker_cache(
    max_bytes: int = DEFAULT_CACHE_BYTES,
    prefetch_workers: int = DEFAULT_PREFETCH_WORKERS,
    spill_dir: str | os.PathLike[str] | None = None,
    spill_max_bytes: int | None = None,
) -> SegmentCache:
    """Return this process's cache for the given configuration, creating it once.

    Every DoFn instance and thread of a worker process that asks with the same configuration
    gets the same :class:`SegmentCache`, so segments are downloaded once per process. The
    cache is borrowed: while nobody holds it (:func:`hold_worker_cache`) it is kept for
    :data:`WORKER_CACHE_IDLE_SECONDS` after its last use, then closed (a closed cache stays
    usable). A forked child starts with no worker caches.

    Args:
        max_bytes: in-memory budget in bytes.
        prefetch_workers: prefetch threads.
        spill_dir: optional spill directory.
        spill_max_bytes: bound of the spill directory.

    Returns:
        The shared cache.
    """
    return _WORKER_CACHES.get(
        *_worker_cache_args(max_bytes, prefetch_workers, spill_dir, spill_max_bytes)
    )


def hold_worker_cache(
    max_bytes: int = DEFAULT_CACHE_BYTES,
    prefetch_workers: int = DEFAULT_PREFETCH_WORKERS,
    spill_dir: str | os.PathLike[str] | None = None,
    spill_max_bytes: int | None = None,
) -> Hold[SegmentCache]:
    """:func:`get_worker_cache`, held: the cache is not closed until the hold is released.

    Returns:
        The hold; its ``value`` is the shared cache.
    """
    return _WORKER_CACHES.hold(
        *_worker_cache_args(max_bytes, prefetch_workers, spill_dir, spill_max_bytes)
    )
