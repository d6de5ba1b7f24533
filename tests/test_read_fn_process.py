"""ReadPartitionsFn.process() driven directly with Beam's thread-safe tracker and estimator."""

from __future__ import annotations

import pathlib
import threading
import time
from typing import Any

import pytest
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
    ThreadsafeWatermarkEstimator,
)
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp

from streamhouse_beam import StartPosition, StopPosition
from streamhouse_beam.beam import _claims as claims
from streamhouse_beam.beam._descriptors import PartitionDescriptor
from streamhouse_beam.beam._discovery import NewPartitionsDescriptor
from streamhouse_beam.beam._restriction import PartitionRestriction
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS
from tests.process_harness import CheckpointAfter, Finalizer, Harness, call_process
from tests.read_helpers import local_streamhouse, write_topic

T0 = DEFAULT_CLOCK_START_MS


@pytest.fixture()
def topic(tmp_path: pathlib.Path) -> pathlib.Path:
    write_topic(tmp_path, "t", [[f"v{i}" for i in range(10)]], segment_max_records=4)
    return tmp_path


def test_process_emits_max_poll_records_then_checkpoints_at_the_next_offset(
    topic: pathlib.Path,
) -> None:
    h = Harness(topic, max_poll_records=3, stop=StopPosition.latest())
    element = PartitionDescriptor("t", 0, StartPosition.earliest(), StopPosition.latest())
    restriction, wm = h.start(element)
    assert restriction == PartitionRestriction(0, 10)
    out, tracker, estimator, _ = h.call(element, restriction, wm)
    assert [o.value.offset for o in out] == [0, 1, 2]
    assert [o.timestamp for o in out] == [Timestamp(micros=(T0 + i) * 1000) for i in range(3)]
    residual, delay = tracker.deferred_status()
    assert residual == PartitionRestriction(3, 10)
    assert delay == Duration(0)  # more is readable: resume at once
    assert estimator.current_watermark() == Timestamp(micros=(T0 + 2) * 1000)


def test_bounded_range_ends_by_claiming_its_stop(topic: pathlib.Path) -> None:
    h = Harness(topic, max_poll_records=50, stop=StopPosition.latest())
    element = PartitionDescriptor("t", 0, StartPosition.offsets({0: 7}), StopPosition.latest())
    restriction, wm = h.start(element)
    out, tracker, _, _ = h.call(element, restriction, wm)
    assert [o.value.offset for o in out] == [7, 8, 9]
    assert tracker.deferred_status() is None
    tracker.check_done()


def test_caught_up_unbounded_read_defers_by_poll_interval_and_advances_watermark(
    topic: pathlib.Path,
) -> None:
    h = Harness(topic, max_poll_records=50, max_delay_seconds=5.0, poll_interval=0.2)
    element = PartitionDescriptor("t", 0)
    restriction, wm = h.start(element)
    assert restriction == PartitionRestriction.open_ended(0)
    out, tracker, estimator, _ = h.call(element, restriction, wm)
    assert len(out) == 10
    residual, delay = tracker.deferred_status()
    assert residual == PartitionRestriction.open_ended(10) and delay == Duration(0)
    # Second call: nothing new. The watermark moves to about now - 5 s, the remainder waits.
    before = Timestamp.now()
    out, tracker, estimator, _ = h.call(element, residual, estimator.get_estimator_state())
    assert out == []
    again, delay = tracker.deferred_status()
    assert again == PartitionRestriction.open_ended(10)
    assert 0.1 < delay.micros / 1e6 <= 0.2
    assert estimator.current_watermark() >= before - Duration(5)


def test_resumed_caught_up_partition_sleeps_out_the_poll_interval(topic: pathlib.Path) -> None:
    h = Harness(topic, max_poll_records=50, poll_interval=0.3)
    element = PartitionDescriptor("t", 0, StartPosition.latest())
    restriction, wm = h.start(element)
    h.call(element, restriction, wm)  # caught up: notes the empty poll
    started = time.monotonic()
    out, _, _, _ = h.call(element, restriction, wm)
    assert out == [] and time.monotonic() - started >= 0.25


def _process_started(h: Harness, element: PartitionDescriptor) -> tuple[Any, Any]:
    """A process() generator over the whole range and its thread-safe tracker, not yet run."""
    restriction, _ = h.start(element)
    tracker = ThreadsafeRestrictionTracker(h.fn.create_tracker(restriction))
    estimator = ThreadsafeWatermarkEstimator(h.provider.create_watermark_estimator(MIN_TIMESTAMP))
    gen = call_process(h.fn, element, Finalizer(), RestrictionTrackerView(tracker), estimator)
    return gen, tracker


@pytest.mark.parametrize("locked_claims", [True, False])
def test_a_split_during_the_call_stops_emission_at_the_split_point(
    topic: pathlib.Path, locked_claims: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same outcome whether chunks are claimed under the view's lock or record by record.
    monkeypatch.setattr(claims, "LOCKED_CLAIMS", locked_claims)
    h = Harness(topic, max_poll_records=50, stop=StopPosition.latest())
    h.fn.read_chunk_records = 3  # one poll reads (and claims) 0-2, then 3-5, then 6-8, ...
    element = PartitionDescriptor("t", 0, StartPosition.earliest(), StopPosition.latest())
    gen, tracker = _process_started(h, element)
    assert next(gen).value.offset == 0  # 0-2 are claimed, 3-9 are still unclaimed
    split = tracker.try_split(0.5)
    assert split is not None, "a split with unclaimed offsets left gave nothing away"
    primary, residual = split
    assert (primary, residual) == (PartitionRestriction(0, 6), PartitionRestriction(6, 10))
    rest = [o.value.offset for o in gen]
    # The call goes on to the split point and no further: 6-9 belong to the residual now.
    assert rest == [1, 2, 3, 4, 5]
    tracker.check_done()


def test_a_split_after_a_chunk_is_claimed_leaves_that_chunk_to_the_call(
    topic: pathlib.Path,
) -> None:
    h = Harness(topic, max_poll_records=50, stop=StopPosition.latest())
    element = PartitionDescriptor("t", 0, StartPosition.earliest(), StopPosition.latest())
    gen, tracker = _process_started(h, element)
    first = next(gen)  # every record of the chunk is claimed before the first is yielded
    assert first.value.offset == 0
    # All ten were claimed already, so a split now finds no remainder to give away.
    assert tracker.try_split(0.5) is None
    assert [o.value.offset for o in gen] == list(range(1, 10))
    tracker.check_done()


def test_split_before_processing_is_honoured(topic: pathlib.Path) -> None:
    h = Harness(topic, max_poll_records=50, stop=StopPosition.latest())
    element = PartitionDescriptor("t", 0, StartPosition.earliest(), StopPosition.latest())
    restriction, _ = h.start(element)
    raw = h.fn.create_tracker(restriction)
    primary, residual = raw.try_split(0.3)
    assert (primary.stop, residual.start) == (2, 2)
    tracker = ThreadsafeRestrictionTracker(raw)
    estimator = ThreadsafeWatermarkEstimator(h.provider.create_watermark_estimator(MIN_TIMESTAMP))
    out = list(call_process(h.fn, element, Finalizer(), RestrictionTrackerView(tracker), estimator))
    assert [o.value.offset for o in out] == [0, 1]
    tracker.check_done()


def test_commit_callback_commits_the_next_offset(topic: pathlib.Path) -> None:
    h = Harness(topic, max_poll_records=4, commit_offsets_group="grp")
    element = PartitionDescriptor("t", 0)
    restriction, wm = h.start(element)
    _, _, _, finalizer = h.call(element, restriction, wm)
    [callback] = finalizer.callbacks
    metadata = h.fn.resources().metadata
    assert metadata.committed_offset("grp", "t", 0) is None
    callback()
    callback()  # idempotent
    assert metadata.committed_offset("grp", "t", 0) == 4


def test_concurrent_commits_of_one_partition_never_leave_the_lower_offset(
    topic: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A runner finalizes the bundles of a checkpoint together, each callback on its own SDK
    # thread. Commit 4 starts first, then waits (up to 1 s) for commit 8 to be written before
    # it writes: the group must still end at 8, whether the worker serializes the two or the
    # store refuses to lower the offset.
    h = Harness(topic, max_poll_records=4, commit_offsets_group="grp")
    element = PartitionDescriptor("t", 0)
    restriction, wm = h.start(element)
    _, tracker, estimator, first = h.call(element, restriction, wm)
    residual, _ = tracker.deferred_status()
    _, _, _, second = h.call(element, residual, estimator.get_estimator_state())
    [commit_4], [commit_8] = first.callbacks, second.callbacks
    metadata = h.fn._res().metadata
    real_commit = metadata.commit_offsets
    started_4, wrote_8 = threading.Event(), threading.Event()

    def commit(group: str, offsets: dict[Any, int], **options: Any) -> None:
        if threading.current_thread().name == "commit-4":
            started_4.set()
            wrote_8.wait(timeout=1.0)
        real_commit(group, offsets, **options)
        if 8 in offsets.values():
            wrote_8.set()

    monkeypatch.setattr(metadata, "commit_offsets", commit)
    first_thread = threading.Thread(target=commit_4, name="commit-4")
    first_thread.start()
    assert started_4.wait(timeout=30)
    second_thread = threading.Thread(target=commit_8, name="commit-8")
    second_thread.start()
    first_thread.join()
    second_thread.join()
    assert metadata.committed_offset("grp", "t", 0) == 8


def test_max_records_budget_ends_the_restriction(topic: pathlib.Path) -> None:
    h = Harness(topic, max_poll_records=50, max_records=4)
    element = PartitionDescriptor("t", 0)
    restriction, wm = h.start(element)
    out, tracker, _, _ = h.call(element, restriction, wm)
    assert [o.value.offset for o in out] == [0, 1, 2, 3]
    assert tracker.deferred_status() is None
    tracker.check_done()


def test_trailing_gap_is_claimed_so_the_checkpoint_skips_it(tmp_path: pathlib.Path) -> None:
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("t", 1)
    lsh.write_segment("t", 0, [(o, T0 + o, None, b"x") for o in (0, 1, 5)])
    lsh.set_high_watermark("t", 0, 9)
    h = Harness(tmp_path, max_poll_records=50)
    element = PartitionDescriptor("t", 0)
    restriction, wm = h.start(element)
    out, tracker, _, _ = h.call(element, restriction, wm)
    assert [o.value.offset for o in out] == [0, 1, 5]
    residual, _ = tracker.deferred_status()
    assert residual == PartitionRestriction.open_ended(9)


def _partition_added_after_a_first_call(
    tmp_path: pathlib.Path, values: list[str]
) -> tuple[Harness, NewPartitionsDescriptor, Any, Any]:
    """Topic ``t`` with one partition, watched by a NewPartitionsDescriptor whose first call
    finds nothing new; then partition 1 is added holding ``values``.

    Returns:
        The harness, the element, its residual restriction and the watermark state.
    """
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("t", 1)
    h = Harness(tmp_path, max_poll_records=50, partition_discovery_interval=0.01)
    element = NewPartitionsDescriptor("t", 1)
    restriction, wm = h.start(element)
    out, tracker, _, _ = h.call(element, restriction, wm)
    assert out == []
    restriction, _ = tracker.deferred_status()
    lsh.add_partitions("t", 2)
    lsh.append("t", 1, values, flush=True)
    time.sleep(0.02)  # past partition_discovery_interval
    return h, element, restriction, wm


def test_new_partitions_element_discovers_and_reads_partitions_created_later(
    tmp_path: pathlib.Path,
) -> None:
    h, element, restriction, wm = _partition_added_after_a_first_call(tmp_path, ["n0", "n1"])
    out, tracker, _, _ = h.call(element, restriction, wm)
    assert [(o.value.partition, o.value.offset) for o in out] == [(1, 0), (1, 1)]
    restriction, _ = tracker.deferred_status()
    assert restriction.next_partition == 2 and dict(restriction.positions) == {1: 2}


def test_reads_in_chunks_and_stops_at_the_time_bound(topic: pathlib.Path) -> None:
    h = Harness(topic, max_poll_records=50, max_poll_seconds=0.001, stop=StopPosition.latest())
    h.fn.read_chunk_records = 3
    element = PartitionDescriptor("t", 0, StartPosition.earliest(), StopPosition.latest())
    restriction, wm = h.start(element)
    reads = []
    real_read = h.fn.reader(element.topic_partition).read

    def counting_read(*args: Any) -> Any:
        reads.append(args)
        time.sleep(0.002)  # every read overruns the 1 ms bound
        return real_read(*args)

    h.fn.reader(element.topic_partition).read = counting_read  # type: ignore[method-assign]
    out, tracker, _, _ = h.call(element, restriction, wm)
    assert [o.value.offset for o in out] == [0, 1, 2] and len(reads) == 1
    residual, delay = tracker.deferred_status()
    assert residual == PartitionRestriction(3, 10) and delay == Duration(0)


def test_several_chunks_fill_one_poll(topic: pathlib.Path) -> None:
    h = Harness(topic, max_poll_records=8, stop=StopPosition.latest())
    h.fn.read_chunk_records = 3
    element = PartitionDescriptor("t", 0, StartPosition.earliest(), StopPosition.latest())
    restriction, wm = h.start(element)
    out, tracker, _, _ = h.call(element, restriction, wm)
    assert [o.value.offset for o in out] == list(range(8))
    residual, _ = tracker.deferred_status()
    assert residual == PartitionRestriction(8, 10)


def test_first_call_of_a_bundle_prefetches_the_other_partitions_first_segments(
    tmp_path: pathlib.Path,
) -> None:
    write_topic(tmp_path, "t", [[f"v{i}" for i in range(6)]] * 3, segment_max_records=4)
    h = Harness(tmp_path, max_poll_records=1, stop=StopPosition.latest(), prefetch_segments=0)
    elements = [
        PartitionDescriptor("t", p, StartPosition.earliest(), StopPosition.latest())
        for p in range(3)
    ]
    states = [h.start(e) for e in elements]  # the runner plans every restriction first
    cache = h.fn.resources().cache
    before = cache.stats().prefetches_issued
    h.call(elements[0], *states[0])
    assert cache.stats().prefetches_issued - before == 2  # partitions 1 and 2
    h.call(elements[1], *states[1])  # same bundle: no second round
    assert cache.stats().prefetches_issued - before == 2


def test_new_partition_records_claimed_before_a_checkpoint_are_emitted_not_lost(
    tmp_path: pathlib.Path,
) -> None:
    h, element, restriction, wm = _partition_added_after_a_first_call(
        tmp_path, ["n0", "n1", "n2", "n3"]
    )
    tracker = ThreadsafeRestrictionTracker(h.fn.create_tracker(restriction))
    estimator = ThreadsafeWatermarkEstimator(h.provider.create_watermark_estimator(wm))
    view = CheckpointAfter(tracker, 2)
    out = list(call_process(h.fn, element, Finalizer(), view, estimator))
    # The two records claimed before the checkpoint are emitted; the residual resumes at 2.
    assert [(o.value.partition, o.value.offset) for o in out] == [(1, 0), (1, 1)]
    assert dict(view.residual.positions) == {1: 2}


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        (StartPosition.earliest(), StopPosition.latest(), PartitionRestriction(0, 10)),
        (StartPosition.latest(), StopPosition.latest(), PartitionRestriction(10, 10)),
        (StartPosition.offsets({0: 4}), None, PartitionRestriction.open_ended(4)),
    ],
)
def test_planning_a_partition_looks_it_up_in_the_metadata_once(
    topic: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    start: StartPosition,
    stop: StopPosition | None,
    expected: PartitionRestriction,
) -> None:
    # The earliest offset and the readable end come from one lookup: a pipeline start costs
    # one round trip per partition to the metadata store, not three.
    h = Harness(topic, stop=stop)
    metadata = h.fn.resources().metadata
    lookups: list[tuple[str, int]] = []
    real = metadata.partition

    def counted(name: str, partition: int) -> Any:
        lookups.append((name, partition))
        return real(name, partition)

    monkeypatch.setattr(metadata, "partition", counted)
    element = PartitionDescriptor("t", 0, start, stop)
    assert h.fn.initial_restriction(element) == expected
    assert lookups == [("t", 0)]
