"""The segment cache's mechanisms: counters, pinning, budget, single flight, prefetch, spill.

No test measures time: downloads that must overlap are gated by ``threading.Event``s.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from streamhouse_beam.cache import CacheStats, SegmentCache, get_worker_cache
from streamhouse_beam.errors import ObjectNotFoundError

WAIT = 10.0  # generous upper bound for an event; tests never rely on it elapsing


class Source:
    """A fake object store: counts fetches per key, can be gated and can fail."""

    def __init__(self, sizes: dict[str, int] | None = None) -> None:
        self.sizes = sizes or {}
        self.calls: dict[str, int] = {}
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.errors: dict[str, BaseException] = {}
        self.lock = threading.Lock()

    def data(self, key: str) -> bytes:
        size = self.sizes.get(key, 10)
        return (key.encode() * size)[:size]

    def gate(self, key: str) -> threading.Event:
        self.gates[key] = threading.Event()
        self.started[key] = threading.Event()
        return self.gates[key]

    def fetch(self, key: str) -> Callable[[], bytes]:
        def run() -> bytes:
            with self.lock:
                self.calls[key] = self.calls.get(key, 0) + 1
            if key in self.started:
                self.started[key].set()
            if key in self.gates:
                assert self.gates[key].wait(WAIT)
            if key in self.errors:
                raise self.errors[key]
            return self.data(key)

        return run


def wait_idle(cache: SegmentCache, *keys: str) -> None:
    """Block until no download of ``keys`` is running."""
    for key in keys:
        for _ in range(2000):
            if not cache.in_flight(key):
                break
            threading.Event().wait(0.005)
        assert not cache.in_flight(key)


def test_second_get_is_a_hit_and_counts_bytes() -> None:
    src = Source({"a": 100})
    cache = SegmentCache(1000)
    with cache.get("a", src.fetch("a")) as lease:
        assert lease.data == src.data("a")
        assert not lease.hit
    with cache.get("a", src.fetch("a")) as lease:
        assert lease.hit
        assert not lease.prefetched
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.bytes_downloaded) == (1, 1, 100)
    assert (stats.bytes_cached, stats.entries) == (100, 1)
    assert src.calls == {"a": 1}
    assert stats.hit_rate == 0.5


def test_lru_evicts_least_recently_used_first() -> None:
    src = Source({"a": 40, "b": 40, "c": 40})
    cache = SegmentCache(100)
    for key in ("a", "b"):
        cache.get(key, src.fetch(key)).release()
    cache.get("a", src.fetch("a")).release()  # a is now more recent than b
    cache.get("c", src.fetch("c")).release()
    assert cache.contains("a")
    assert not cache.contains("b")
    assert cache.contains("c")
    stats = cache.stats()
    assert stats.evictions == 1
    assert stats.bytes_cached == 80


def test_pinned_entries_are_never_evicted_and_budget_returns_on_release() -> None:
    src = Source({"a": 60, "b": 60})
    cache = SegmentCache(100)
    lease_a = cache.get("a", src.fetch("a"))
    lease_b = cache.get("b", src.fetch("b"))
    # Both pinned: the cache is over budget rather than drop bytes in use.
    assert cache.contains("a")
    assert cache.contains("b")
    assert cache.stats().bytes_cached == 120
    lease_a.release()
    # a is unpinned and least recently used: it goes as soon as it may.
    assert not cache.contains("a")
    assert cache.stats().bytes_cached == 60
    assert lease_b.data == src.data("b")
    lease_b.release()
    lease_b.release()  # a second release is a no-op
    assert cache.stats().bytes_cached == 60


def test_a_finalizer_release_inside_a_cache_operation_does_not_deadlock() -> None:
    """The garbage collector can run a reader's finalizer while its thread holds the lock."""
    src = Source({"a": 60, "b": 60})
    cache = SegmentCache(100)
    lease_a = cache.get("a", src.fetch("a"))
    lease_b = cache.get("b", src.fetch("b"))
    done = threading.Event()

    def finalizer_inside_an_operation() -> None:
        with cache._lock:  # where a collection could strike: any allocation in an operation
            lease_a.release_later()
        done.set()

    thread = threading.Thread(target=finalizer_inside_an_operation, daemon=True)
    thread.start()
    assert done.wait(WAIT), "release_later() waited for the cache's lock"
    lease_a.release()  # already released: a no-op
    # The pin goes at the next operation: a is then unpinned, least recently used, evicted.
    assert cache.stats().bytes_cached == 60
    assert not cache.contains("a")
    lease_b.release()


def test_a_reader_dropped_without_close_hands_its_segment_back(tmp_path: Path) -> None:
    import gc

    from streamhouse_beam.partition_reader import PartitionReader
    from streamhouse_beam.storage.memory import MemoryStore
    from streamhouse_beam.testing.local import LocalStreamHouse

    store = MemoryStore(f"cache-gc-{tmp_path.name}")
    house = LocalStreamHouse(f"sqlite:///{tmp_path}/metadata.db", store, segment_max_records=3)
    house.create_schema()
    house.create_topic("t", 1)
    house.append("t", 0, [b"v0", b"v1", b"v2", b"v3"], flush=True)
    cache = SegmentCache(1 << 20)
    reader = PartitionReader(house.metadata(), store, cache, "t", 0)
    assert len(reader.read(0, None, 2).records) == 2  # the first segment stays pinned
    key = next(iter(cache._entries))
    assert cache._entries[key].pins == 1
    del reader
    gc.collect()
    cache.stats()  # any operation unpins what finalizers released
    assert cache._entries[key].pins == 0


def test_entry_larger_than_budget_is_served_then_dropped_on_release() -> None:
    src = Source({"big": 500, "small": 50})
    cache = SegmentCache(100)
    cache.get("small", src.fetch("small")).release()
    with cache.get("big", src.fetch("big")) as lease:
        assert lease.data == src.data("big")
        # Serving the oversize entry did not evict the small one.
        assert cache.contains("small")
    assert not cache.contains("big")
    assert cache.contains("small")
    assert cache.stats().bytes_cached == 50


def test_concurrent_gets_share_one_fetch() -> None:
    src = Source({"a": 30})
    gate = src.gate("a")
    cache = SegmentCache(1000)
    results: list[bytes] = []
    hits: list[bool] = []

    def reader() -> None:
        with cache.get("a", src.fetch("a")) as lease:
            results.append(lease.data)
            hits.append(lease.hit)

    threads = [threading.Thread(target=reader) for _ in range(5)]
    for t in threads:
        t.start()
    assert src.started["a"].wait(WAIT)
    # Let every other thread reach the flight before releasing the download.
    for _ in range(2000):
        if cache._flights.get("a") is not None and cache._flights["a"].waiters == 4:
            break
        threading.Event().wait(0.005)
    gate.set()
    for t in threads:
        t.join(WAIT)
    assert src.calls == {"a": 1}
    assert results == [src.data("a")] * 5
    stats = cache.stats()
    assert (stats.misses, stats.hits) == (1, 4)
    assert sorted(hits) == [False, True, True, True, True]
    # Every lease was released: the entry is unpinned.
    assert cache._pinned_bytes == 0


def test_fetch_error_reaches_every_waiter_and_is_not_cached() -> None:
    src = Source()
    gate = src.gate("a")
    src.errors["a"] = ObjectNotFoundError("gone", key="a")
    cache = SegmentCache(1000)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            cache.get("a", src.fetch("a"))
        except ObjectNotFoundError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    assert src.started["a"].wait(WAIT)
    for _ in range(2000):
        if cache._flights["a"].waiters == 2:
            break
        threading.Event().wait(0.005)
    gate.set()
    for t in threads:
        t.join(WAIT)
    assert len(errors) == 3
    assert src.calls == {"a": 1}
    assert not cache.contains("a")
    del src.errors["a"]
    with cache.get("a", src.fetch("a")) as lease:
        assert lease.data == src.data("a")
    assert src.calls == {"a": 2}


def test_prefetched_entry_counts_a_prefetch_hit_on_first_get() -> None:
    src = Source({"a": 10, "b": 10})
    cache = SegmentCache(1000)
    assert cache.prefetch([("a", src.fetch("a"), 10), ("b", src.fetch("b"), 10)]) == 2
    wait_idle(cache, "a", "b")
    with cache.get("a", src.fetch("a")) as lease:
        assert lease.hit
        assert lease.prefetched
    with cache.get("a", src.fetch("a")) as lease:
        assert lease.hit
        assert not lease.prefetched
    stats = cache.stats()
    assert (stats.prefetches_issued, stats.prefetch_hits, stats.hits, stats.misses) == (2, 1, 2, 0)
    assert stats.bytes_downloaded == 20
    assert src.calls == {"a": 1, "b": 1}


def test_prefetch_skips_keys_cached_or_in_flight() -> None:
    src = Source({"a": 10, "b": 10})
    gate = src.gate("b")
    cache = SegmentCache(1000)
    cache.get("a", src.fetch("a")).release()
    assert cache.prefetch([("b", src.fetch("b"), 10)]) == 1
    assert cache.prefetch([("a", src.fetch("a"), 10), ("b", src.fetch("b"), 10)]) == 0
    gate.set()
    wait_idle(cache, "b")
    assert src.calls == {"a": 1, "b": 1}
    assert cache.stats().prefetches_issued == 1


def test_get_joins_a_prefetch_in_flight() -> None:
    src = Source({"a": 10})
    gate = src.gate("a")
    cache = SegmentCache(1000)
    assert cache.prefetch([("a", src.fetch("a"), 10)]) == 1
    assert src.started["a"].wait(WAIT)
    leases = []
    t = threading.Thread(target=lambda: leases.append(cache.get("a", src.fetch("a"))))
    t.start()
    for _ in range(2000):
        if cache._flights["a"].waiters == 1:
            break
        threading.Event().wait(0.005)
    gate.set()
    t.join(WAIT)
    (lease,) = leases
    assert lease.hit
    assert lease.prefetched
    lease.release()
    assert src.calls == {"a": 1}
    stats = cache.stats()
    assert (stats.prefetch_hits, stats.misses) == (1, 0)


def test_failed_prefetch_makes_the_get_fetch_again() -> None:
    src = Source({"a": 10})
    src.errors["a"] = OSError("connection reset")
    cache = SegmentCache(1000)
    cache.prefetch([("a", src.fetch("a"), 10)])
    wait_idle(cache, "a")
    assert cache.stats().prefetch_errors == 1
    del src.errors["a"]
    with cache.get("a", src.fetch("a")) as lease:
        assert lease.data == src.data("a")
        assert not lease.hit
    assert src.calls == {"a": 2}


def test_prefetch_stops_when_the_budget_is_full() -> None:
    sizes = {k: 40 for k in "abcde"}
    src = Source(sizes)
    cache = SegmentCache(100)
    issued = cache.prefetch([(k, src.fetch(k), 40) for k in "abcde"])
    assert issued == 2  # 80 bytes reserved; a third would exceed 100
    wait_idle(cache, "a", "b")
    # The unused prefetched entries still hold the budget.
    assert cache.prefetch([(k, src.fetch(k), 40) for k in "cde"]) == 0
    assert sorted(src.calls) == ["a", "b"]
    # Once used (and released), they are ordinary LRU entries and make room.
    cache.get("a", src.fetch("a")).release()
    cache.get("b", src.fetch("b")).release()
    assert cache.prefetch([(k, src.fetch(k), 40) for k in "cde"]) == 2


def test_prefetch_never_evicts_pinned_entries() -> None:
    src = Source({"a": 60, "b": 30, "c": 30})
    cache = SegmentCache(100)
    lease = cache.get("a", src.fetch("a"))
    assert cache.prefetch([("b", src.fetch("b"), 30), ("c", src.fetch("c"), 30)]) == 1
    wait_idle(cache, "b")
    assert cache.contains("a")
    assert lease.data == src.data("a")
    lease.release()
    assert cache.stats().evictions == 0


def test_prefetch_evicted_before_use_counts_as_wasted() -> None:
    src = Source({"a": 50, "b": 50, "c": 50})
    cache = SegmentCache(100)
    cache.prefetch([("a", src.fetch("a"), 50)])
    wait_idle(cache, "a")
    lease_b = cache.get("b", src.fetch("b"))
    lease_c = cache.get("c", src.fetch("c"))  # b and c pinned: only the unused a can go
    lease_b.release()
    lease_c.release()
    stats = cache.stats()
    assert stats.wasted_prefetches == 1
    assert stats.evictions == 1
    assert not cache.contains("a")


def test_prefetch_disabled_with_zero_workers() -> None:
    src = Source({"a": 10})
    cache = SegmentCache(100, prefetch_workers=0)
    assert cache.prefetch([("a", src.fetch("a"), 10)]) == 0
    assert src.calls == {}


def test_evicted_entries_spill_to_disk_and_are_read_back(tmp_path: os.PathLike[str]) -> None:
    src = Source({"a": 60, "b": 60})
    cache = SegmentCache(100, spill_dir=tmp_path, spill_max_bytes=1000)
    cache.get("a", src.fetch("a")).release()
    cache.get("b", src.fetch("b")).release()  # evicts a to the spill directory
    assert not cache.contains("a")
    with cache.get("a", src.fetch("a")) as lease:
        assert lease.data == src.data("a")
        assert lease.hit
    stats = cache.stats()
    assert stats.spill_hits == 1
    assert stats.bytes_spilled >= 60
    assert src.calls == {"a": 1, "b": 1}
    cache.close()
    assert os.listdir(tmp_path) == []


def test_prefetch_reads_a_spilled_entry_from_disk(tmp_path: os.PathLike[str]) -> None:
    src = Source({"a": 60, "b": 60})
    cache = SegmentCache(100, spill_dir=tmp_path)
    cache.get("a", src.fetch("a")).release()
    cache.get("b", src.fetch("b")).release()  # a goes to disk
    assert cache.prefetch([("a", src.fetch("a"), 60)]) == 1
    wait_idle(cache, "a")
    assert cache.contains("a")
    assert src.calls == {"a": 1, "b": 1}
    assert cache.stats().bytes_downloaded == 120


def test_spill_directory_is_bounded(tmp_path: os.PathLike[str]) -> None:
    src = Source({k: 60 for k in "abcd"})
    cache = SegmentCache(100, spill_dir=tmp_path, spill_max_bytes=130)
    for k in "abcd":
        cache.get(k, src.fetch(k)).release()
    # a, b, c were evicted in turn; only two fit in 130 spill bytes: a was dropped.
    assert cache._disk is not None and cache._disk.used_bytes <= 130
    (sub,) = os.listdir(tmp_path)
    assert len(os.listdir(os.path.join(tmp_path, sub))) == 2
    cache.get("a", src.fetch("a")).release()
    assert src.calls["a"] == 2


def test_invalidate_forgets_an_entry_even_while_leased() -> None:
    src = Source({"a": 10})
    cache = SegmentCache(100)
    lease = cache.get("a", src.fetch("a"))
    cache.invalidate("a")
    assert not cache.contains("a")
    assert lease.data == src.data("a")
    lease.release()
    assert cache.stats().bytes_cached == 0
    cache.get("a", src.fetch("a")).release()
    assert src.calls == {"a": 2}


def test_pickled_cache_keeps_config_and_starts_empty() -> None:
    src = Source({"a": 10})
    cache = SegmentCache(500, prefetch_workers=2)
    cache.prefetch([("a", src.fetch("a"), 10)])
    wait_idle(cache, "a")
    clone = pickle.loads(pickle.dumps(cache))
    assert (clone.max_bytes, clone.prefetch_workers) == (500, 2)
    assert clone.stats() == CacheStats()
    assert clone.prefetch([("a", src.fetch("a"), 10)]) == 1
    wait_idle(clone, "a")
    assert clone.contains("a")
    cache.close()
    clone.close()


def test_close_cancels_pending_prefetches_and_cache_stays_usable() -> None:
    src = Source({k: 10 for k in "abc"})
    gate = src.gate("a")
    cache = SegmentCache(1000, prefetch_workers=1)
    assert cache.prefetch([(k, src.fetch(k), 10) for k in "abc"]) == 3
    assert src.started["a"].wait(WAIT)
    cache.close()  # b and c are still queued behind a: cancelled
    gate.set()
    wait_idle(cache, "a", "b", "c")
    assert "b" not in src.calls
    with cache.get("b", src.fetch("b")) as lease:
        assert lease.data == src.data("b")


def test_stats_minus_gives_counters_since_a_snapshot() -> None:
    src = Source({"a": 10})
    cache = SegmentCache(100)
    cache.get("a", src.fetch("a")).release()
    before = cache.stats()
    cache.get("a", src.fetch("a")).release()
    delta = cache.stats().minus(before)
    assert (delta.hits, delta.misses, delta.entries) == (1, 0, 1)


def test_invalid_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        SegmentCache(0)
    with pytest.raises(ValueError, match="prefetch_workers"):
        SegmentCache(10, prefetch_workers=-1)
    with pytest.raises(ValueError, match="spill_max_bytes"):
        SegmentCache(10, spill_max_bytes=5)
    with pytest.raises(TypeError, match="expected bytes"):
        SegmentCache(10).get("a", lambda: "text")  # type: ignore[arg-type,return-value]


def test_worker_cache_is_shared_per_config() -> None:
    a = get_worker_cache(max_bytes=12345, prefetch_workers=1)
    b = get_worker_cache(max_bytes=12345, prefetch_workers=1)
    c = get_worker_cache(max_bytes=54321, prefetch_workers=1)
    assert a is b
    assert a is not c


def _child_cache_identity(queue: multiprocessing.Queue[tuple[int, int]]) -> None:
    cache = get_worker_cache(max_bytes=777, prefetch_workers=1)
    queue.put((id(cache), cache.stats().entries))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_fresh_worker_cache() -> None:
    parent = get_worker_cache(max_bytes=777, prefetch_workers=1)
    parent.get("a", lambda: b"x" * 10).release()
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[tuple[int, int]] = ctx.Queue()
    proc = ctx.Process(target=_child_cache_identity, args=(queue,))
    proc.start()
    _, entries = queue.get(timeout=WAIT)
    proc.join(WAIT)
    assert entries == 0
    assert parent.stats().entries == 1


def test_used_entries_are_evicted_before_unused_prefetches() -> None:
    src = Source({k: 30 for k in "abcd"})
    cache = SegmentCache(100)
    lease_a = cache.get("a", src.fetch("a"))
    assert cache.prefetch([("b", src.fetch("b"), 30), ("c", src.fetch("c"), 30)]) == 2
    wait_idle(cache, "b", "c")
    # a sequential reader: finish a, take b, and only then let the next prefetch land.
    lease_a.release()  # a is now the most recently used entry
    lease_b = cache.get("b", src.fetch("b"))
    assert cache.prefetch([("d", src.fetch("d"), 30)]) == 1
    wait_idle(cache, "d")
    assert not cache.contains("a")
    assert cache.contains("c") and cache.contains("d")
    assert cache.stats().wasted_prefetches == 0
    lease_b.release()
