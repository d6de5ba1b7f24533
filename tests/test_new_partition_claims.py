"""Partition discovery's reads claim and convert chunks exactly as the main read path does.

A partition found by discovery is read under a ``NewPartitionsTracker``; its chunks are claimed
through :class:`~streamhouse_beam.beam._discovery.NewPartitionOffsets` (one claim per chunk on
Beam's tracker view, per record through any other wrapper) and converted by the main path's
code, for records and batches alike, with the watermark observed once per emitted chunk.
"""

from __future__ import annotations

import pathlib
import threading
import time
from typing import Any

import pyarrow as pa
import pytest
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
    ThreadsafeWatermarkEstimator,
)
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp

from streamhouse_beam import ReadFromStreamHouse
from streamhouse_beam.beam._discovery import (
    NewPartitionOffsets,
    NewPartitionsDescriptor,
    NewPartitionsRestriction,
    NewPartitionsTracker,
)
from streamhouse_beam.beam._outputs import DEAD_LETTER_TAG
from streamhouse_beam.beam._read_fn import ReadPartitionsFn
from streamhouse_beam.beam._watermark import PartitionWatermarkEstimatorProvider
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.segment.columns import BATCH_SCHEMA
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS, LocalStreamHouse
from tests.process_harness import CheckpointAfter, Finalizer, call_process, claim_batch
from tests.read_helpers import local_streamhouse, read_all, urls

T0 = DEFAULT_CLOCK_START_MS
#: Record timestamps of the new partition: not in offset order, so "largest" is not "last".
STAMPS = [T0 + 40, T0 + 10, T0 + 70, T0 + 20, T0 + 30]
NEW = TopicPartition("t", 1)


class _CountingTracker(NewPartitionsTracker):
    """A NewPartitionsTracker that records every claim made on it."""

    def __init__(self, restriction: NewPartitionsRestriction) -> None:
        super().__init__(restriction)
        self.claims: list[tuple[Any, ...]] = []

    def try_claim(self, position: tuple[Any, ...]) -> bool:
        self.claims.append(position)
        return super().try_claim(position)

    def offset_claims(self) -> list[tuple[Any, ...]]:
        return [c for c in self.claims if c[0] == "offset"]


class Call:
    """One process() call of the discovery element, as a runner makes it."""

    def __init__(self, fn: ReadPartitionsFn, restriction: NewPartitionsRestriction) -> None:
        self.fn = fn
        self.raw = _CountingTracker(restriction)
        self.threadsafe = ThreadsafeRestrictionTracker(self.raw)
        provider = PartitionWatermarkEstimatorProvider()
        self.estimator = ThreadsafeWatermarkEstimator(
            provider.create_watermark_estimator(MIN_TIMESTAMP)
        )

    def run(self, element: NewPartitionsDescriptor, tracker: Any = None) -> list[Any]:
        view = RestrictionTrackerView(self.threadsafe) if tracker is None else tracker
        # No per-output observe_timestamp here: the estimator must get every event time from
        # the DoFn's own per-chunk observe_event_time (it ignores the per-output calls anyway).
        return list(call_process(self.fn, element, Finalizer(), view, self.estimator))

    def residual(self) -> NewPartitionsRestriction:
        status = self.threadsafe.deferred_status()
        if status is not None:
            return status[0]  # type: ignore[no-any-return]
        split = self.threadsafe.try_split(0)
        assert split is not None
        return split[1]  # type: ignore[no-any-return]


def _fn(tmp: pathlib.Path, global_window: bool = False, **kwargs: Any) -> ReadPartitionsFn:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("max_poll_records", 50)
    config = ReadFromStreamHouse(
        "t", **urls(tmp), partition_discovery_interval=0.01, **kwargs
    ).config
    fn = ReadPartitionsFn(config, global_window=global_window)
    fn.setup()
    fn.start_bundle()
    return fn


@pytest.fixture()
def grown_lsh(tmp_path: pathlib.Path) -> LocalStreamHouse:
    """Topic ``t`` launched with one partition, then grown to two; five records in the new one."""
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("t", 1)
    lsh.add_partitions("t", 2)
    lsh.append("t", 1, [f"n{i}" for i in range(5)], timestamps=STAMPS, flush=True)
    return lsh


@pytest.fixture()
def grown(grown_lsh: LocalStreamHouse, tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path


def _emitted(out: list[Any]) -> list[tuple[int, int, int]]:
    """``(partition, offset, timestamp)`` of every record in ``out`` (records or batches)."""
    rows: list[tuple[int, int, int]] = []
    for o in out:
        value = o.value
        if isinstance(value, pa.RecordBatch):
            d = value.to_pydict()
            rows.extend(zip(d["partition"], d["offset"], d["timestamp"], strict=True))
        else:
            rows.append((value.partition, value.offset, value.timestamp))
    return rows


def _ms(ts: Timestamp) -> int:
    return ts.micros // 1000  # type: ignore[no-any-return]


# ---------------------------------------------------------------- NewPartitionOffsets


def _per_record(partition: int, records: list[tuple[int]], tracker: Any) -> int:
    take = 0
    for rec in records:
        if not tracker.try_claim(("offset", partition, rec[0])):
            break
        take += 1
    return take


@pytest.mark.parametrize("state", ["open", "checkpointed", "ended"])
@pytest.mark.parametrize("wrap", ["bare", "view"])
def test_chunk_claim_leaves_the_tracker_as_per_record_claims_would(state: str, wrap: str) -> None:
    records = [(o,) for o in (3, 4, 7, 9)]
    results = []
    for chunked in (True, False):
        raw = _CountingTracker(NewPartitionsRestriction(3, ((1, 3), (2, 0))))
        if state == "checkpointed":
            assert raw.try_split(0) is not None
        elif state == "ended":
            assert not raw.try_claim(("end",))
        tracker: Any = raw
        if wrap == "view":
            tracker = RestrictionTrackerView(ThreadsafeRestrictionTracker(raw))
        if chunked:
            take = NewPartitionOffsets(tracker, 1).claim_prefix(records)
            # One claim of the chunk's last offset, whatever the outcome.
            assert raw.offset_claims() == [("offset", 1, 9)]
        else:
            take = _per_record(1, records, tracker)
        results.append((take, raw.current_restriction()))
    assert results[0] == results[1]
    assert results[0][0] == (4 if state == "open" else 0)
    if state == "open":
        assert dict(results[0][1].positions) == {1: 10, 2: 0}


def test_unknown_wrapper_is_claimed_record_by_record_and_keeps_the_claimed_prefix() -> None:
    raw = _CountingTracker(NewPartitionsRestriction(2, ((1, 0),)))
    wrapper = CheckpointAfter(ThreadsafeRestrictionTracker(raw), 2)
    assert NewPartitionOffsets(wrapper, 1).claim_prefix([(0,), (1,), (2,), (3,)]) == 2
    assert raw.offset_claims() == [("offset", 1, 0), ("offset", 1, 1), ("offset", 1, 2)]
    assert raw.current_restriction() == NewPartitionsRestriction(2, ((1, 2),))


@pytest.mark.parametrize("refuse_after", [None, 0, 3])
def test_claim_batch_on_new_partition_offsets_emits_exactly_the_claimed_rows(
    refuse_after: int | None,
) -> None:
    records = [(o, T0 + o, None, b"v%d" % o) for o in range(5)]
    batch = pa.RecordBatch.from_pydict(
        {
            "topic": ["t"] * 5,
            "partition": [1] * 5,
            "offset": [r[0] for r in records],
            "timestamp": [r[1] for r in records],
            "key": [None] * 5,
            "value": [r[3] for r in records],
        },
        schema=BATCH_SCHEMA,
    )
    raw = _CountingTracker(NewPartitionsRestriction(2, ((1, 0),)))
    threadsafe = ThreadsafeRestrictionTracker(raw)
    tracker: Any = RestrictionTrackerView(threadsafe)
    if refuse_after is not None:
        tracker = CheckpointAfter(threadsafe, refuse_after)
    outputs, last, claimed, split = claim_batch(NEW, batch, NewPartitionOffsets(tracker, 1))
    want = 5 if refuse_after is None else refuse_after
    assert (claimed, split) == (want, want < 5)
    assert last == (want - 1 if want else None)
    assert [_emitted(outputs)] == ([[(1, o, T0 + o) for o in range(want)]] if want else [[]])
    assert dict(raw.current_restriction().positions) == {1: want}


# ---------------------------------------------------------------- process() of discovery


@pytest.mark.parametrize(
    ("output", "global_window"), [("records", False), ("records", True), ("batches", False)]
)
def test_new_partition_chunk_is_claimed_once_emitted_whole_and_sets_the_watermark(
    grown: pathlib.Path, output: str, global_window: bool
) -> None:
    call = Call(_fn(grown, global_window, output=output), NewPartitionsRestriction(1))
    out = call.run(NewPartitionsDescriptor("t", 1))
    assert _emitted(out) == [(1, o, STAMPS[o]) for o in range(5)]
    assert len(out) == (1 if output == "batches" else 5)
    if output == "batches":
        assert _ms(out[0].timestamp) == max(STAMPS)  # a batch's event time: its largest
    else:
        assert [_ms(o.timestamp) for o in out] == STAMPS
    assert call.raw.offset_claims() == [("offset", 1, 4)]  # one claim for the chunk
    assert _ms(call.estimator.current_watermark()) == max(STAMPS)
    residual = call.residual()
    assert residual.next_partition == 2 and dict(residual.positions) == {1: 5}


@pytest.mark.parametrize("output", ["records", "batches"])
def test_claim_refused_mid_chunk_emits_the_claimed_prefix_and_watermarks_only_it(
    grown: pathlib.Path, output: str
) -> None:
    fn = _fn(grown, output=output)
    call = Call(fn, NewPartitionsRestriction(1))
    wrapper = CheckpointAfter(call.threadsafe, 3)
    out = call.run(NewPartitionsDescriptor("t", 1), wrapper)
    # Offsets 0-2 were claimed before the checkpoint: they are this restriction's to emit.
    assert _emitted(out) == [(1, o, STAMPS[o]) for o in range(3)]
    assert _ms(call.estimator.current_watermark()) == max(STAMPS[:3])
    assert wrapper.residual == NewPartitionsRestriction(2, ((1, 3),))
    # The resumed residual emits the rest, each record once over both calls.
    again = Call(fn, wrapper.residual)
    rest = again.run(NewPartitionsDescriptor("t", 1))
    assert _emitted(rest) == [(1, o, STAMPS[o]) for o in (3, 4)]
    assert _ms(again.estimator.current_watermark()) == max(STAMPS[3:])


@pytest.mark.parametrize("output", ["records", "batches"])
def test_checkpoint_while_a_new_partition_is_read_leaves_its_chunk_to_the_residual(
    grown: pathlib.Path, output: str
) -> None:
    fn = _fn(grown, output=output)
    call = Call(fn, NewPartitionsRestriction(1))
    reader = fn.reader(NEW)
    name = "read_columns" if output == "batches" else "read"
    real = getattr(reader, name)
    splits: list[Any] = []

    def read_then_checkpoint(*args: Any) -> Any:
        batch = real(*args)
        splits.append(call.threadsafe.try_split(0))  # the runner checkpoints during the read
        return batch

    setattr(reader, name, read_then_checkpoint)
    out = call.run(NewPartitionsDescriptor("t", 1))
    assert out == []
    assert call.estimator.current_watermark() == MIN_TIMESTAMP  # nothing emitted, nothing seen
    [(_, residual)] = splits
    # Partition 1's discovery was claimed before the checkpoint; none of its records were.
    assert residual == NewPartitionsRestriction(2, ((1, 0),))
    assert call.raw.offset_claims() == [("offset", 1, 4)]  # the one chunk claim, refused
    setattr(reader, name, real)
    resumed = Call(fn, residual)
    assert _emitted(resumed.run(NewPartitionsDescriptor("t", 1))) == [
        (1, o, STAMPS[o]) for o in range(5)
    ]


def test_undecodable_value_in_a_new_partition_goes_to_the_dead_letter_output(
    tmp_path: pathlib.Path,
) -> None:
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("t", 1)
    lsh.add_partitions("t", 2)
    lsh.append("t", 1, ['{"a": 1}', "not json", '{"b": 2}'], timestamps=STAMPS[:3], flush=True)
    call = Call(_fn(tmp_path, value_decoder="json", dead_letter=True), NewPartitionsRestriction(1))
    out = call.run(NewPartitionsDescriptor("t", 1))
    dead = [o.value.value for o in out if isinstance(o, TaggedOutput)]
    assert [o.tag for o in out if isinstance(o, TaggedOutput)] == [DEAD_LETTER_TAG]
    assert [o.value.value for o in out if not isinstance(o, TaggedOutput)] == [{"a": 1}, {"b": 2}]
    assert dead[0].offset == 1 and dead[0].value == b"not json"
    assert _ms(call.estimator.current_watermark()) == max(STAMPS[:3])


def test_a_resumed_discovery_element_claims_the_new_records_of_its_partitions_in_one_chunk(
    grown: pathlib.Path, grown_lsh: LocalStreamHouse
) -> None:
    fn = _fn(grown)
    call = Call(fn, NewPartitionsRestriction(1))
    assert len(call.run(NewPartitionsDescriptor("t", 1))) == 5
    residual = call.residual()
    grown_lsh.append("t", 1, ["m0", "m1"], flush=True)
    again = Call(fn, residual)
    out = again.run(NewPartitionsDescriptor("t", 1))
    assert [(p, o) for p, o, _ in _emitted(out)] == [(1, 5), (1, 6)]
    assert again.raw.offset_claims() == [("offset", 1, 6)]


@pytest.mark.parametrize("output", ["records", "batches"])
def test_new_partitions_share_one_poll_byte_budget_and_take_turns(
    grown: pathlib.Path, grown_lsh: LocalStreamHouse, output: str
) -> None:
    grown_lsh.add_partitions("t", 3)
    grown_lsh.append("t", 2, ["m0", "m1", "m2"], flush=True)
    # Values of 2 bytes: a poll of 5 bytes ends with its third record, across partitions.
    fn = _fn(grown, output=output, max_poll_records=None, max_poll_bytes=5)
    call = Call(fn, NewPartitionsRestriction(1))
    out = call.run(NewPartitionsDescriptor("t", 1))
    assert [(p, o) for p, o, _ in _emitted(out)] == [(1, 0), (1, 1), (1, 2)]
    # The poll was spent before partition 2: the next call starts there, although partition
    # 1 still has records (a partition with a backlog does not starve the others).
    again = Call(fn, call.residual())
    out = again.run(NewPartitionsDescriptor("t", 1))
    assert [(p, o) for p, o, _ in _emitted(out)] == [(2, 0), (2, 1), (2, 2)]
    last = Call(fn, again.residual())
    out = last.run(NewPartitionsDescriptor("t", 1))
    assert [(p, o) for p, o, _ in _emitted(out)] == [(1, 3), (1, 4)]


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


def test_a_discovery_call_stops_after_max_poll_seconds_and_the_next_reads_on(
    grown: pathlib.Path, grown_lsh: LocalStreamHouse
) -> None:
    grown_lsh.add_partitions("t", 3)
    grown_lsh.append("t", 2, ["m0", "m1", "m2"], flush=True)
    # Every poll is out of time at once: each call reads one partition, then checkpoints.
    fn = _fn(grown, max_poll_seconds=1e-9)
    call = Call(fn, NewPartitionsRestriction(1))
    out = call.run(NewPartitionsDescriptor("t", 1))
    assert [(p, o) for p, o, _ in _emitted(out)] == [(1, i) for i in range(5)]
    residual, delay = call.threadsafe.deferred_status()
    assert delay == Duration.of(0)  # more may be readable: resumed at once
    again = Call(fn, residual)
    out = again.run(NewPartitionsDescriptor("t", 1))
    assert [(p, o) for p, o, _ in _emitted(out)] == [(2, 0), (2, 1), (2, 2)]


def test_a_discovery_call_that_finds_nothing_counts_an_empty_poll(
    grown: pathlib.Path, grown_lsh: LocalStreamHouse
) -> None:
    fn = _fn(grown)
    assert fn._metrics is not None
    empty = fn._metrics["empty_polls"] = _Counter()
    call = Call(fn, NewPartitionsRestriction(1))
    assert len(call.run(NewPartitionsDescriptor("t", 1))) == 5
    assert empty.value == 0  # it read records
    again = Call(fn, call.residual())
    assert again.run(NewPartitionsDescriptor("t", 1)) == []
    assert empty.value == 1
    _, delay = again.threadsafe.deferred_status()
    assert Duration.of(0.04) < delay <= Duration.of(0.05)  # the poll interval


def test_tailing_batches_read_picks_up_a_partition_added_mid_run(tmp_path: pathlib.Path) -> None:
    lsh = local_streamhouse(tmp_path, segment_max_records=5)
    lsh.create_topic("live", 2)
    lsh.append("live", 0, [f"before-{i}" for i in range(8)], flush=True)
    org = lsh.organization_id

    def grow() -> None:
        writer = LocalStreamHouse(
            f"sqlite:///{tmp_path}/metadata.db", f"file://{tmp_path}/segments", organization_id=org
        )
        time.sleep(0.4)
        writer.add_partitions("live", 3)
        writer.append("live", 2, [f"new-{i}" for i in range(7)], flush=True)

    thread = threading.Thread(target=grow)
    thread.start()
    batches = read_all(
        ReadFromStreamHouse(
            "live",
            **urls(tmp_path),
            output="batches",
            max_records=15,
            poll_interval=0.1,
            partition_discovery_interval=0.2,
            max_poll_records=3,
        )
    )
    thread.join()
    rows = sorted(
        (p, o)
        for b in batches
        for p, o in zip(b["partition"].to_pylist(), b["offset"].to_pylist(), strict=True)
    )
    assert rows == [(0, o) for o in range(8)] + [(2, o) for o in range(7)]
