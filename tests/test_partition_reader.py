"""PartitionReader against real StreamHouse layouts written by LocalStreamHouse (SQLite +
file:// and memory:// stores): offsets, gaps, blocks, stops, tailing, loss, timestamps,
prefetch and range reads."""

from __future__ import annotations

import pathlib
import threading

import pytest

from streamhouse_beam.cache import SegmentCache
from streamhouse_beam.errors import (
    ChecksumMismatchError,
    DataLossError,
    InconsistentMetadataError,
)
from streamhouse_beam.partition_reader import (
    PartitionReader,
    ReadOptions,
    segment_cache_key,
)
from streamhouse_beam.records import SegmentInfo
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.testing.faulty_store import FaultyStore
from streamhouse_beam.testing.local import LocalStreamHouse
from tests import partition_layouts
from tests.partition_layouts import (
    GAPPED_STOP_RANGES,
    Rec,
    gapped_partition,
    make_lsh,
    one_partition,
    overlapping_partition,
    rec,
    record_values,
    three_segments,
)

store = partition_layouts.store  # the file:// and memory:// fixture, by its name


def make_reader(
    lsh: LocalStreamHouse,
    topic: str = "t",
    partition: int = 0,
    cache: SegmentCache | None = None,
    **options: object,
) -> PartitionReader:
    return PartitionReader(
        lsh.metadata(),
        lsh.store,
        cache or SegmentCache(64 << 20),
        topic,
        partition,
        ReadOptions(**options),  # type: ignore[arg-type]
    )


def read_all(reader: PartitionReader, start: int, stop: int | None, chunk: int) -> list[Rec]:
    out: list[Rec] = []
    cur = start
    end = reader.readable_end() if stop is None else min(stop, reader.readable_end())
    for _ in range(100_000):
        if cur >= end:
            break
        batch = reader.read(cur, stop, chunk)
        assert len(batch.records) <= chunk
        assert batch.next_offset > cur or batch.records, "no progress"
        out += batch.records
        assert batch.next_offset <= end
        cur = batch.next_offset
    return out


@pytest.mark.parametrize("block_size_target", [None, 300])
def test_every_start_offset_reads_the_rest_of_the_partition(
    tmp_path: pathlib.Path, store: ObjectStore, block_size_target: int | None
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=block_size_target)
    expected = gapped_partition(lsh)
    reader = make_reader(lsh)
    end = reader.readable_end()
    assert end == 401
    for start in range(0, end + 2):
        batch = reader.read(start, None, 10_000)
        assert batch.records == [r for r in expected if r[0] >= start], start
        assert batch.next_offset == max(end, start)
        assert batch.readable_end == end


def test_multi_block_segments_decode_across_blocks(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=200, compression="none")
    lsh.create_topic("t", partitions=1)
    expected = [rec(o, size=50) for o in range(300)]
    lsh.write_segment("t", 0, expected)
    reader = make_reader(lsh)
    opened = reader.read(0, None, 1)
    assert opened.records == expected[:1]
    assert reader._opener.current is not None
    assert reader._opener.current.reader.block_count > 10
    assert read_all(reader, 0, None, 37) == expected


@pytest.mark.parametrize("chunk", [1, 7, 500])
def test_chunks_concatenate_to_the_whole_partition(
    tmp_path: pathlib.Path, store: ObjectStore, chunk: int
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=500)
    expected = gapped_partition(lsh)
    reader = make_reader(lsh)
    assert read_all(reader, 0, None, chunk) == expected


def test_stop_offsets_bound_the_read(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=400)
    expected = gapped_partition(lsh)
    reader = make_reader(lsh)
    for start, stop in GAPPED_STOP_RANGES:
        got = read_all(reader, start, stop, 13) if stop > start else []
        assert got == [r for r in expected if start <= r[0] < stop], (start, stop)
        batch = reader.read(start, stop, 1_000_000)
        assert batch.next_offset == max(start, min(stop, 401)), (start, stop)


def test_next_offset_passes_gaps_and_never_exceeds_stop(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store)
    gapped_partition(lsh)
    reader = make_reader(lsh)
    # The compacted segment ends at 119; 120..149 is a gap between segments.
    batch = reader.read(100, None, 1000)
    assert batch.records[0][0] == 100
    batch = reader.read(119, 140, 1000)
    assert [r[0] for r in batch.records] == [119]
    assert batch.next_offset == 140
    batch = reader.read(121, None, 1)
    assert [r[0] for r in batch.records] == [150]
    assert batch.next_offset == 151


def test_tailing_read_picks_up_new_segments(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = one_partition(tmp_path, store, [b"a", b"b", b"c"])
    reader = make_reader(lsh)
    first = reader.read(0, None, 100)
    assert [r[3] for r in first.records] == [b"a", b"b", b"c"]
    assert first.next_offset == first.readable_end == 3
    idle = reader.read(3, None, 100)
    assert (idle.records, idle.next_offset) == ([], 3)
    lsh.append("t", 0, [b"d", b"e"], flush=True)
    lsh.append("t", 0, [b"f"], flush=True)
    more = reader.read(3, None, 100)
    assert [r[3] for r in more.records] == [b"d", b"e", b"f"]
    assert more.next_offset == more.readable_end == 6


def test_hole_at_the_tail_is_skipped_to_the_readable_end(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = one_partition(tmp_path, store, [b"a", b"b"])
    lsh.set_high_watermark("t", 0, 10)  # rows for 2..9 were removed
    reader = make_reader(lsh)
    batch = reader.read(0, None, 100)
    assert len(batch.records) == 2
    assert batch.next_offset == batch.readable_end == 10


def test_watermark_below_segments_uses_the_segment_end(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = one_partition(tmp_path, store, [b"a", b"b", b"c"])
    # As after a snapshot restore, which can leave the HWM behind the segments.
    lsh.set_high_watermark("t", 0, 0)
    reader = make_reader(lsh)
    assert reader.readable_end() == 3
    assert len(reader.read(0, None, 10).records) == 3


@pytest.mark.parametrize("mode", ["upfront", "mid_read"])
def test_missing_segment_fails_naming_the_lost_range(
    tmp_path: pathlib.Path, store: ObjectStore, mode: str
) -> None:
    lsh = three_segments(tmp_path, store, "orders")
    reader = make_reader(lsh, "orders")
    if mode == "mid_read":
        assert len(reader.read(0, None, 5).records) == 5
    lsh.delete_segment_object("orders", 0, 10)
    with pytest.raises(DataLossError) as info:
        read_all(reader, 5 if mode == "mid_read" else 0, None, 100)
    err = info.value
    assert (err.topic, err.partition, err.start_offset, err.end_offset) == ("orders", 0, 10, 19)
    assert "orders" in str(err) and "10..19" in str(err)


def test_missing_segment_skipped_with_policy_and_reported(
    tmp_path: pathlib.Path, store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    lsh = three_segments(tmp_path, store)
    lsh.delete_segment_object("t", 0, 10)
    reader = make_reader(lsh, on_missing_segment="skip")
    batch = reader.read(0, None, 100)
    assert [r[0] for r in batch.records] == list(range(10)) + list(range(20, 30))
    assert batch.lost_ranges == [(10, 19)]
    reader.read(12, None, 100)
    logged = [r for r in caplog.records if "skipping offsets" in r.getMessage()]
    assert len(logged) == 1


@pytest.mark.parametrize("method", ["read", "read_columns"])
def test_corrupt_download_is_fetched_once_more(
    tmp_path: pathlib.Path, store: ObjectStore, method: str
) -> None:
    lsh = one_partition(tmp_path, store, [b"a" * 100, b"b" * 100])
    (seg,) = lsh.segments("t", 0)
    faulty = FaultyStore(lsh.store)
    faulty.corrupt_next(seg.key, times=1)
    reader = PartitionReader(lsh.metadata(), faulty, SegmentCache(1 << 20), "t", 0)
    batch = getattr(reader, method)(0, None, 10)
    assert record_values(batch.records) == [b"a" * 100, b"b" * 100]
    assert faulty.reads_of(seg.key) == 2


@pytest.mark.parametrize("method", ["read", "read_columns"])
def test_persistent_corruption_raises_naming_the_key(
    tmp_path: pathlib.Path, store: ObjectStore, method: str
) -> None:
    lsh = one_partition(tmp_path, store, [b"a" * 100])
    (seg,) = lsh.segments("t", 0)
    faulty = FaultyStore(lsh.store)
    faulty.corrupt_next(seg.key, times=5)
    cache = SegmentCache(1 << 20)
    reader = PartitionReader(lsh.metadata(), faulty, cache, "t", 0)
    with pytest.raises(ChecksumMismatchError) as info:
        getattr(reader, method)(0, None, 10)
    assert info.value.key == seg.key
    assert faulty.reads_of(seg.key) == 2
    assert cache.stats().entries == 0  # corrupt bytes are not kept


def test_header_disagreeing_with_its_row_is_inconsistent_metadata(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = one_partition(tmp_path, store)
    seg = lsh.write_segment("t", 0, [rec(o) for o in range(10)], register=False)
    lying = SegmentInfo(**{**seg.__dict__, "base_offset": 0, "end_offset": 14})
    lsh.register_segment(lying, high_watermark=15)
    reader = make_reader(lsh)
    with pytest.raises(InconsistentMetadataError) as info:
        reader.read(0, None, 100)
    assert seg.key in str(info.value)
    assert "0..9" in str(info.value) and "0..14" in str(info.value)


def test_overlapping_rows_yield_each_offset_once(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store)
    expected = overlapping_partition(lsh)
    reader = make_reader(lsh)
    got = read_all(reader, 0, None, 4)
    assert [r[0] for r in got] == expected
    assert all((r[3] == b"compacted") == (10 <= r[0] <= 18) for r in got)


def test_offset_for_timestamp_with_out_of_order_timestamps(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=100)
    lsh.create_topic("t", partitions=1)
    # Timestamps go backwards inside and across blocks; segment max_timestamp = last record's.
    ts = [100, 300, 200, 250, 150, 400, 350, 500, 450, 600]
    lsh.write_segment("t", 0, [rec(o, ts=t, size=40) for o, t in enumerate(ts)])
    ts2 = [700, 650, 800]
    lsh.write_segment("t", 0, [rec(10 + o, ts=t, size=40) for o, t in enumerate(ts2)])
    reader = make_reader(lsh)
    for target in [0, 100, 101, 220, 260, 301, 420, 460, 550, 600, 601, 660, 700, 701, 800]:
        expected = next((o for o, t in enumerate(ts + ts2) if t >= target), reader.readable_end())
        assert reader.offset_for_timestamp(target) == expected, target
    assert reader.offset_for_timestamp(801) == 13


def test_prefetch_starts_at_the_threshold_with_the_exact_next_segments(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store, segment_max_records=100)
    lsh.create_topic("t", partitions=1)
    lsh.append("t", 0, [rec(o)[3] for o in range(130)], flush=True)
    # Segments of irregular size (StreamHouse's base+10000 guess would miss all of them).
    lsh.write_segment("t", 0, [rec(o) for o in range(130, 137)])
    lsh.write_segment("t", 0, [rec(o) for o in range(137, 300)])
    lsh.write_segment("t", 0, [rec(o) for o in range(300, 310)])
    segs = lsh.metadata().segments("t", 0)
    assert [s.base_offset for s in segs] == [0, 100, 130, 137, 300]
    cache = SegmentCache(64 << 20)
    reader = make_reader(lsh, cache=cache, prefetch_threshold=0.8, prefetch_segments=2)
    batch = reader.read(0, None, 79)
    assert batch.prefetches == 0
    assert cache.stats().prefetches_issued == 0
    batch = reader.read(79, None, 1)  # 80 of 100 consumed
    assert batch.prefetches == 2
    next_keys = [segment_cache_key(lsh.store, s) for s in segs[1:3]]
    for key in next_keys:
        assert cache.contains(key) or cache.in_flight(key)
    assert not cache.contains(segment_cache_key(lsh.store, segs[3]))
    assert cache.stats().prefetches_issued == 2
    batch = reader.read(80, None, 30)  # into segment 1
    assert batch.prefetch_hits == 1
    assert cache.stats().prefetch_hits == 1
    rest = read_all(reader, batch.next_offset, None, 1000)
    assert rest[-1][0] == 309
    stats = cache.stats()
    assert stats.misses == 1  # only the first segment was downloaded by a read
    assert stats.prefetch_hits == 4
    assert stats.wasted_prefetches == 0


def test_successive_reads_of_one_segment_reuse_its_parsed_reader(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=300)
    lsh.create_topic("t", partitions=1)
    lsh.write_segment("t", 0, [rec(o) for o in range(200)])
    cache = SegmentCache(64 << 20)
    reader = make_reader(lsh, cache=cache, prefetch_segments=0)
    reader.read(0, None, 10)
    opened = reader._opener.current
    for start in range(10, 200, 10):
        batch = reader.read(start, None, 10)
        assert (batch.cache_hits, batch.cache_misses) == (0, 0)
        assert reader._opener.current is opened
    assert cache.stats().misses == 1
    assert cache.stats().hits == 0


def test_range_reads_equal_whole_object_reads(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=400)
    lsh.create_topic("t", partitions=1)
    lsh.write_segment("t", 0, [rec(o, size=30) for o in range(500)])
    lsh.write_segment("t", 0, [rec(o, size=30) for o in range(500, 600)])
    whole = make_reader(lsh)
    cache = SegmentCache(64 << 20)
    ranged = make_reader(lsh, cache=cache, range_reads=True)
    for start in (0, 1, 250, 499, 520):
        assert read_all(ranged, start, None, 33) == read_all(whole, start, None, 1000)
    first = lsh.segments("t", 0)[0]
    fresh_cache = SegmentCache(64 << 20)
    fresh = make_reader(lsh, cache=fresh_cache, range_reads=True)
    batch = fresh.read(450, None, 10)
    assert [r[0] for r in batch.records] == list(range(450, 460))
    assert batch.bytes_fetched < first.size_bytes / 2
    assert not fresh_cache.contains(segment_cache_key(lsh.store, first))
    assert fresh._opener.current is not None and not fresh._opener.current.reader.crc_verified


def test_estimate_bytes_prorates_known_segments(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = make_lsh(tmp_path, store, segment_max_records=100)
    lsh.create_topic("t", partitions=1)
    lsh.append("t", 0, [rec(o)[3] for o in range(200)], flush=True)
    segs = lsh.segments("t", 0)
    reader = make_reader(lsh)
    assert reader.estimate_bytes(0, 200) == 0.0  # nothing known yet, and no I/O
    reader.read(0, None, 1)
    assert reader.estimate_bytes(0, 200) == pytest.approx(sum(s.size_bytes for s in segs))
    assert reader.estimate_bytes(50, 150) == pytest.approx(
        segs[0].size_bytes / 2 + segs[1].size_bytes / 2
    )
    assert reader.estimate_bytes(150, 150) == 0.0
    other = make_reader(lsh)
    other.refresh_metadata(100)
    assert other.estimate_bytes(0, 200) == pytest.approx(segs[1].size_bytes)


def test_first_segment_fetch_names_the_segment_a_read_needs(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store)
    expected = gapped_partition(lsh)
    del expected
    cache = SegmentCache(64 << 20)
    reader = make_reader(lsh, cache=cache)
    segs = lsh.segments("t", 0)
    key, fetch, size = reader.first_segment_fetch(130)  # type: ignore[misc]
    assert key == segment_cache_key(lsh.store, segs[2])
    assert size == segs[2].size_bytes
    assert fetch() == lsh.store.get(segs[2].key, bucket=segs[2].bucket)
    assert cache.prefetch([(key, fetch, size)]) == 1
    batch = reader.read(130, None, 5)
    assert batch.prefetch_hits == 1
    assert reader.first_segment_fetch(401) is None


def test_earliest_offset_is_the_first_segment_base(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store)
    gapped_partition(lsh)
    reader = make_reader(lsh)
    assert reader.earliest_offset() == 5


def test_close_releases_the_pinned_segment(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = one_partition(tmp_path, store, [b"x" * 100])
    cache = SegmentCache(64 << 20)
    reader = make_reader(lsh, cache=cache)
    reader.read(0, None, 1)
    assert cache._pinned_bytes > 0
    reader.close()
    assert cache._pinned_bytes == 0
    reader.read(0, None, 1)
    del reader
    cache.stats()  # a finalizer's release takes effect at the cache's next operation
    assert cache._pinned_bytes == 0


def test_invalid_arguments_are_named(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = one_partition(tmp_path, store)
    reader = make_reader(lsh)
    with pytest.raises(ValueError, match="start_offset"):
        reader.read(-1, None, 1)
    with pytest.raises(ValueError, match="max_records"):
        reader.read(0, None, 0)
    with pytest.raises(ValueError, match="prefetch_threshold"):
        ReadOptions(prefetch_threshold=1.5)
    with pytest.raises(ValueError, match="on_missing_segment"):
        ReadOptions(on_missing_segment="ignore")  # type: ignore[arg-type]


class GatedStore(ObjectStore):
    """Passes reads through, except that a GET of a gated key waits for its Event."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.scheme = inner.scheme
        self.gates: dict[str, threading.Event] = {}

    @property
    def url(self) -> str:
        return self.inner.url

    def get(self, key: str, *, bucket: str | None = None) -> bytes:
        if key in self.gates:
            assert self.gates[key].wait(10)
        return self.inner.get(key, bucket=bucket)

    def get_range(self, key: str, start: int, end: int, *, bucket: str | None = None) -> bytes:
        return self.inner.get_range(key, start, end, bucket=bucket)

    def get_suffix(self, key: str, length: int, *, bucket: str | None = None) -> bytes:
        return self.inner.get_suffix(key, length, bucket=bucket)

    def size(self, key: str, *, bucket: str | None = None) -> int:
        return self.inner.size(key, bucket=bucket)

    def put(self, key: str, data: bytes, *, bucket: str | None = None) -> None:
        self.inner.put(key, data, bucket=bucket)

    def delete(self, key: str, *, bucket: str | None = None) -> None:
        self.inner.delete(key, bucket=bucket)


def test_prefetch_look_ahead_doubles_when_a_read_catches_up_with_it(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store, segment_max_records=10)
    lsh.create_topic("t", partitions=1)
    lsh.append("t", 0, [rec(o)[3] for o in range(80)], flush=True)
    segs = lsh.segments("t", 0)
    gated = GatedStore(lsh.store)
    gate = gated.gates.setdefault(segs[1].key, threading.Event())
    cache = SegmentCache(64 << 20)
    reader = PartitionReader(
        lsh.metadata(),
        gated,
        cache,
        "t",
        0,
        ReadOptions(prefetch_segments=1, max_prefetch_segments=4, prefetch_threshold=0.5),
    )
    first = reader.read(0, None, 10)
    assert first.prefetches == 1  # segment 1, held at the gate
    key1 = segment_cache_key(gated, segs[1])
    batches: list[object] = []
    thread = threading.Thread(target=lambda: batches.append(reader.read(10, None, 5)))
    thread.start()
    for _ in range(2000):  # until the read has joined the prefetch in flight
        flight = cache._flights.get(key1)
        if flight is not None and flight.waiters == 1:
            break
        threading.Event().wait(0.005)
    gate.set()
    thread.join(10)
    assert reader._opener.depth == 2
    (caught_up,) = batches
    assert caught_up.prefetch_hits == 1  # type: ignore[attr-defined]
    assert caught_up.prefetches == 2  # type: ignore[attr-defined]  # segments 2 and 3
    for seg in segs[2:4]:
        key = segment_cache_key(gated, seg)
        assert cache.contains(key) or cache.in_flight(key)
