"""``PartitionReader.read_columns`` is ``read`` with an Arrow batch: same records and bookkeeping.

Every call is made on two readers with their own caches, one calling ``read`` and one
``read_columns``; the batch must hold exactly the records (as ``records_to_batch`` builds them)
and every other field of the result must be equal: ``next_offset``, the readable end, bytes
read and fetched, cache and prefetch counters, lost ranges. Also: errors (missing segments
under both policies, undecodable blocks re-fetched once; corrupt downloads are tested for both
methods in test_partition_reader.py), claims of a batch with a split, and the DoFn's batches
poll loop with a timestamp stop and a record budget.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pyarrow as pa
import pytest
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
)
from apache_beam.utils.timestamp import Timestamp

from streamhouse_beam import StartPosition, StopPosition, TopicPartition
from streamhouse_beam.beam._batches import (
    BATCH_SCHEMA,
    first_at_or_after,
    records_to_batch,
)
from streamhouse_beam.beam._claims import PartitionOffsets
from streamhouse_beam.beam._descriptors import PartitionDescriptor
from streamhouse_beam.beam._restriction import PartitionRestriction, PartitionRestrictionTracker
from streamhouse_beam.cache import SegmentCache
from streamhouse_beam.errors import CorruptSegmentError, DataLossError
from streamhouse_beam.partition_reader import PartitionReader, ReadOptions
from streamhouse_beam.segment import SegmentReader
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS, LocalStreamHouse
from tests import partition_layouts
from tests.partition_layouts import (
    GAPPED_STOP_RANGES,
    Rec,
    gapped_partition,
    make_lsh,
    one_partition,
    overlapping_partition,
    rec,
    three_segments,
)
from tests.process_harness import Harness, claim_batch
from tests.read_helpers import local_streamhouse

store = partition_layouts.store  # the file:// and memory:// fixture, by its name

T0 = DEFAULT_CLOCK_START_MS
FIELDS = (
    "next_offset",
    "readable_end",
    "bytes_read",
    "bytes_fetched",
    "cache_hits",
    "cache_misses",
    "prefetches",
    "prefetch_hits",
    "lost_ranges",
)


class Twins:
    """A ``read`` reader and a ``read_columns`` reader over the same partition, own caches."""

    def __init__(
        self,
        metadata: Any,
        store: ObjectStore,
        topic: str = "t",
        partition: int = 0,
        **options: Any,
    ) -> None:
        opts = ReadOptions(**options)
        self.rows = PartitionReader(metadata, store, SegmentCache(64 << 20), topic, partition, opts)
        self.cols = PartitionReader(metadata, store, SegmentCache(64 << 20), topic, partition, opts)
        self.topic = topic
        self.partition = partition

    @classmethod
    def of(cls, lsh: LocalStreamHouse, store: ObjectStore | None = None, **options: Any) -> Twins:
        return cls(lsh.metadata(), store or lsh.store, **options)

    def read(self, start: int, stop: int | None, n: int) -> Any:
        """Read with both; assert the results agree; return ``read``'s."""
        rows = self.rows.read(start, stop, n)
        cols = self.cols.read_columns(start, stop, n)
        batch = cols.records
        assert isinstance(batch, pa.RecordBatch)
        batch.validate(full=True)
        assert batch.schema == BATCH_SCHEMA
        expected = records_to_batch(self.topic, self.partition, rows.records)
        assert batch.equals(expected), (start, stop, n)
        for name in FIELDS:
            assert getattr(cols, name) == getattr(rows, name), (name, start, stop, n)
        return rows

    def read_all(self, start: int, stop: int | None, chunk: int) -> list[Rec]:
        out: list[Rec] = []
        cur = start
        for _ in range(100_000):
            batch = self.read(cur, stop, chunk)
            out += batch.records
            if batch.next_offset == cur and not batch.records:
                break
            cur = batch.next_offset
        return out


def test_every_start_offset_reads_the_same_records(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=300)
    expected = gapped_partition(lsh)
    twins = Twins.of(lsh)
    for start in range(0, 403):
        batch = twins.read(start, None, 10_000)
        assert batch.records == [r for r in expected if r[0] >= start], start


@pytest.mark.parametrize("chunk", [1, 7, 13, 500])
@pytest.mark.parametrize("block_size_target", [None, 250])
def test_chunks_across_block_and_segment_boundaries_match(
    tmp_path: pathlib.Path, store: ObjectStore, chunk: int, block_size_target: int | None
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=block_size_target)
    expected = gapped_partition(lsh)
    twins = Twins.of(lsh, prefetch_segments=0)
    assert twins.read_all(0, None, chunk) == expected
    assert twins.read_all(37, 160, chunk) == [r for r in expected if 37 <= r[0] < 160]


def test_stop_offsets_bound_the_batch(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=400)
    expected = gapped_partition(lsh)
    twins = Twins.of(lsh)
    for start, stop in GAPPED_STOP_RANGES:
        batch = twins.read(start, stop, 1_000_000)
        assert batch.records == [r for r in expected if start <= r[0] < stop]
        for n in (1, 3, 50):
            twins.read(start, stop, n)


def test_a_read_inside_one_block_is_a_zero_copy_slice_and_reuses_the_block(
    tmp_path: pathlib.Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    lsh = make_lsh(tmp_path, store, compression="none")
    lsh.create_topic("t", partitions=1)
    lsh.write_segment("t", 0, [rec(o) for o in range(200)])
    decoded: list[int] = []
    original = SegmentReader.decode_block_columns

    def counting(self: SegmentReader, i: int) -> Any:
        decoded.append(i)
        return original(self, i)

    monkeypatch.setattr(SegmentReader, "decode_block_columns", counting)
    reader = Twins.of(lsh, prefetch_segments=0).cols
    first = reader.read_columns(0, None, 10).records
    second = reader.read_columns(10, None, 10).records
    assert decoded == [0]  # one block, decoded once for both reads
    assert second.column("offset").offset == 10
    # Both batches share the block's value buffer (no copy).
    assert first.column("value").buffers()[2].address == second.column("value").buffers()[2].address


def test_successive_reads_keep_the_segment_and_count_nothing_twice(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=300)
    lsh.create_topic("t", partitions=1)
    lsh.write_segment("t", 0, [rec(o) for o in range(200)])
    twins = Twins.of(lsh, prefetch_segments=0)
    for start in range(0, 200, 10):
        batch = twins.read(start, None, 10)
        assert (batch.cache_hits, batch.cache_misses) == (0, int(start == 0))


def test_tailing_read_returns_an_empty_batch_then_new_records(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = one_partition(tmp_path, store, [b"a", b"b", b"c"])
    twins = Twins.of(lsh)
    twins.read(0, None, 100)
    idle = twins.cols.read_columns(3, None, 100)
    assert idle.records.num_rows == 0 and idle.next_offset == 3
    twins.read(3, None, 100)
    lsh.append("t", 0, [b"d", b"e"], flush=True)
    lsh.append("t", 0, [b"f"], flush=True)
    assert [r[3] for r in twins.read(3, None, 100).records] == [b"d", b"e", b"f"]


def test_hole_at_the_tail_and_watermark_below_segments(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = one_partition(tmp_path, store, [b"a", b"b"])
    lsh.set_high_watermark("t", 0, 10)
    assert Twins.of(lsh).read(0, None, 100).next_offset == 10
    lsh.set_high_watermark("t", 0, 0)
    assert len(Twins.of(lsh).read(0, None, 100).records) == 2


def test_prefetch_and_cache_counters_match(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = make_lsh(tmp_path, store, segment_max_records=100)
    lsh.create_topic("t", partitions=1)
    lsh.append("t", 0, [rec(o)[3] for o in range(130)], flush=True)
    lsh.write_segment("t", 0, [rec(o) for o in range(130, 137)])
    lsh.write_segment("t", 0, [rec(o) for o in range(137, 300)])
    # No look-ahead doubling: it depends on download timing, which differs between readers.
    twins = Twins.of(lsh, prefetch_segments=2, max_prefetch_segments=2)
    seen = [twins.read(s, None, n) for s, n in [(0, 79), (79, 1), (80, 30)]]
    assert seen[1].prefetches == 2 and seen[2].prefetch_hits == 1
    twins.read_all(seen[-1].next_offset, None, 41)


def test_range_reads_match(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=400)
    lsh.create_topic("t", partitions=1)
    lsh.write_segment("t", 0, [rec(o, size=30) for o in range(500)])
    lsh.write_segment("t", 0, [rec(o, size=30) for o in range(500, 600)])
    for start in (0, 1, 250, 499, 520):
        twins = Twins.of(lsh, range_reads=True)
        twins.read_all(start, None, 33)
    fresh = Twins.of(lsh, range_reads=True)
    batch = fresh.read(450, None, 10)
    assert batch.bytes_fetched < lsh.segments("t", 0)[0].size_bytes / 2


def test_overlapping_rows_yield_each_offset_once(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = make_lsh(tmp_path, store)
    expected = overlapping_partition(lsh)
    got = Twins.of(lsh).read_all(0, None, 4)
    assert [r[0] for r in got] == expected


# ---------------------------------------------------------------------- missing / corrupt


@pytest.mark.parametrize("mode", ["upfront", "mid_read"])
def test_missing_segment_fails_with_the_same_data_loss_error(
    tmp_path: pathlib.Path, store: ObjectStore, mode: str
) -> None:
    lsh = three_segments(tmp_path, store, "orders")
    twins = Twins.of(lsh, topic="orders")
    start = 0
    if mode == "mid_read":
        start = twins.read(0, None, 5).next_offset
    lsh.delete_segment_object("orders", 0, 10)
    errors = []
    for call in (twins.rows.read, twins.cols.read_columns):
        with pytest.raises(DataLossError) as info:
            cur = start
            for _ in range(10):
                cur = call(cur, None, 100).next_offset
        err = info.value
        errors.append((str(err), err.topic, err.partition, err.start_offset, err.end_offset))
    assert errors[0] == errors[1]
    assert errors[0][1:] == ("orders", 0, 10, 19)


def test_missing_segment_skipped_with_the_same_lost_ranges(
    tmp_path: pathlib.Path, store: ObjectStore
) -> None:
    lsh = three_segments(tmp_path, store)
    lsh.delete_segment_object("t", 0, 10)
    twins = Twins.of(lsh, on_missing_segment="skip")
    batch = twins.read(0, None, 100)
    assert [r[0] for r in batch.records] == list(range(10)) + list(range(20, 30))
    assert batch.lost_ranges == [(10, 19)]
    assert twins.read(12, None, 100).lost_ranges == [(12, 19)]
    Twins.of(lsh, on_missing_segment="skip").read_all(0, None, 3)


def _undecodable(data: bytes) -> bytes:
    """``data`` with block 0 of an uncompressed segment overwritten by 0x80 bytes (CRC left
    stale): the header, index and footer parse, the block does not decode."""
    start, end = SegmentReader(data, verify_crc=False).block_range(0)
    return data[:start] + b"\x80" * (end - start) + data[end:]


@pytest.mark.parametrize("bad_gets", [1, 5])
def test_undecodable_block_is_fetched_once_more_then_raised(
    tmp_path: pathlib.Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch, bad_gets: int
) -> None:
    lsh = make_lsh(tmp_path, store, compression="none")
    lsh.create_topic("t", partitions=1)
    lsh.write_segment("t", 0, [rec(o) for o in range(20)])
    (seg,) = lsh.segments("t", 0)
    real_get = store.get
    gets: dict[str, int] = {"rows": 0, "cols": 0}
    current = ["rows"]

    def get(key: str, *, bucket: str | None = None) -> bytes:
        data = real_get(key, bucket=bucket)
        gets[current[0]] += 1
        return _undecodable(data) if gets[current[0]] <= bad_gets else data

    monkeypatch.setattr(store, "get", get)
    twins = Twins.of(lsh, verify_crc=False, prefetch_segments=0)
    outcomes: list[tuple[Any, ...]] = []
    for name, call in (("rows", twins.rows.read), ("cols", twins.cols.read_columns)):
        current[0] = name
        try:
            result = call(0, None, 100)
            outcomes.append(("ok", result.next_offset, len(result.records)))
        except CorruptSegmentError as exc:
            outcomes.append(("error", type(exc), str(exc), exc.key, exc.position))
    assert outcomes[0] == outcomes[1]
    assert gets == {"rows": 2, "cols": 2}
    if bad_gets == 1:
        assert outcomes[0] == ("ok", 20, 20)
    else:
        assert outcomes[0][0] == "error" and outcomes[0][3] == seg.key


def test_invalid_arguments_are_named(tmp_path: pathlib.Path, store: ObjectStore) -> None:
    lsh = one_partition(tmp_path, store)
    reader = Twins.of(lsh).cols
    with pytest.raises(ValueError, match="start_offset"):
        reader.read_columns(-1, None, 10)
    with pytest.raises(ValueError, match="stop_offset"):
        reader.read_columns(0, -2, 10)
    with pytest.raises(ValueError, match="max_records"):
        reader.read_columns(0, None, 0)


# ------------------------------------------------------------------------ claims of batches


def _batch(offsets: list[int]) -> pa.RecordBatch:
    return records_to_batch("t", 0, [(o, T0 + (o % 5), None, b"v") for o in offsets])


def test_claim_batch_of_a_record_batch_claims_all_and_stamps_the_largest_timestamp() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction(0, 100))
    outputs, last, claimed, split = claim_batch(
        TopicPartition("t", 0), _batch([3, 4, 9]), PartitionOffsets(tracker)
    )
    assert (last, claimed, split) == (9, 3, False)
    (element,) = outputs
    assert element.value.column("offset").to_pylist() == [3, 4, 9]
    assert element.timestamp == Timestamp(micros=(T0 + 4) * 1000)
    assert claim_batch(TopicPartition("t", 0), _batch([]), PartitionOffsets(tracker)) == (
        [],
        None,
        0,
        False,
    )


@pytest.mark.parametrize("threadsafe", [False, True])
def test_claim_batch_after_a_split_slices_to_the_claimed_prefix(threadsafe: bool) -> None:
    def make() -> tuple[Any, Any]:
        inner = PartitionRestrictionTracker(PartitionRestriction(0, 100))
        assert inner.try_claim(2)
        primary, _ = inner.try_split(0.05)  # type: ignore[misc]
        if threadsafe:
            safe = ThreadsafeRestrictionTracker(inner)
            return RestrictionTrackerView(safe), primary.stop
        return inner, primary.stop

    tracker, stop = make()
    offsets = list(range(3, 3 + 2 * stop, 2))
    outputs, last, claimed, split = claim_batch(
        TopicPartition("t", 0), _batch(offsets), PartitionOffsets(tracker)
    )
    expected = [o for o in offsets if o < stop]
    assert split and claimed == len(expected)
    assert outputs[0].value.column("offset").to_pylist() == expected
    assert outputs[0].value.num_rows == claimed and last == expected[-1]
    # The same end state as claiming the record tuples.
    twin, _ = make()
    tuples = [(o, T0 + (o % 5), None, b"v") for o in offsets]
    from_list = claim_batch(TopicPartition("t", 0), tuples, PartitionOffsets(twin))
    assert from_list[1:] == (last, claimed, split)
    assert from_list[0][0].value.equals(outputs[0].value)
    assert from_list[0][0].timestamp == outputs[0].timestamp
    for t in (tracker, twin):
        (t if not threadsafe else t._threadsafe_restriction_tracker).check_done()


def test_first_at_or_after_finds_the_first_reaching_record() -> None:
    batch = records_to_batch("t", 0, [(i, ts, None, b"") for i, ts in enumerate([5, 9, 3, 12])])
    assert first_at_or_after(batch, 0) == 0
    assert first_at_or_after(batch, 6) == 1
    assert first_at_or_after(batch, 10) == 3
    assert first_at_or_after(batch, 13) is None
    assert first_at_or_after(batch, 2**64) is None
    assert first_at_or_after(_batch([]), 1) is None


# ------------------------------------------------------------------- the DoFn's poll loop


def _offsets(out: list[Any], batches: bool) -> list[int]:
    if batches:
        return [o for item in out for o in item.value.column("offset").to_pylist()]
    return [item.value.offset for item in out]


def test_poll_loop_cuts_a_batch_at_a_timestamp_stop_like_records_mode(
    tmp_path: pathlib.Path,
) -> None:
    lsh = local_streamhouse(tmp_path, segment_max_records=100)
    lsh.create_topic("t", 1)
    lsh.write_segment("t", 0, [rec(o) for o in range(10)])
    # Timestamps beyond the last record: the restriction is open-ended, ended by a record.
    stop = StopPosition.timestamp(T0 + 100)
    element = PartitionDescriptor("t", 0, StartPosition.earliest(), stop)
    results = {}
    for output in ("records", "batches"):
        h = Harness(tmp_path, output=output, max_poll_records=1000, stop=stop)
        restriction = h.fn.initial_restriction(element)
        assert restriction.unbounded
        results[output] = h
    lsh.write_segment("t", 0, [rec(o, ts=T0 + 85 + o) for o in range(10, 25)])
    got = {}
    for output, h in results.items():
        out, tracker, _, _ = h.call(element, *h.start(element))
        got[output] = _offsets(out, output == "batches")
        assert tracker.deferred_status() is None
        tracker.check_done()
    assert got["batches"] == got["records"] == list(range(15))


def test_poll_loop_honours_a_record_budget_in_batches(tmp_path: pathlib.Path) -> None:
    lsh = local_streamhouse(tmp_path, segment_max_records=4)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [f"v{i}" for i in range(10)], flush=True)
    h = Harness(tmp_path, output="batches", max_poll_records=50, max_records=6)
    element = PartitionDescriptor("t", 0)
    out, tracker, _, _ = h.call(element, *h.start(element))
    assert _offsets(out, True) == list(range(6))
    assert len(out) == 1
    assert tracker.deferred_status() is None
    tracker.check_done()


def test_pure_python_decoder_reads_the_same_batches(
    tmp_path: pathlib.Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamhouse_beam.segment import decode as decode_mod

    # What a worker without a compiler runs: both decoders in pure Python.
    monkeypatch.setattr(decode_mod, "decode_columns", decode_mod.decode_columns_py)
    monkeypatch.setattr(decode_mod, "decode_records", decode_mod.decode_records_py)
    lsh = make_lsh(tmp_path, store, block_size_target=250)
    expected = gapped_partition(lsh)
    assert Twins.of(lsh, prefetch_segments=0).read_all(0, None, 57) == expected


def test_coder_estimates_a_batch_size_without_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamhouse_beam.beam._batches import RecordBatchCoder

    coder = RecordBatchCoder()
    batch = records_to_batch("t", 0, [(o, o, b"k%d" % o, b"v" * 100) for o in range(1000)])
    sizes = {"whole": len(coder.encode(batch)), "slice": len(coder.encode(batch.slice(10, 100)))}

    def refuse(value: Any) -> bytes:
        raise AssertionError("estimate_size encoded the batch")

    monkeypatch.setattr(coder, "encode", refuse)
    for name, part in (("whole", batch), ("slice", batch.slice(10, 100))):
        estimate = coder.estimate_size(part)
        assert 0.8 * sizes[name] <= estimate <= 1.2 * sizes[name], name
    assert coder.get_impl().estimate_size(batch) == coder.estimate_size(batch)
