"""The watermark estimator's contract: every output's event time is reported before it leaves.

The estimator ignores Beam's per-output ``observe_timestamp`` (a lock and a comparison per
record); the read reports each chunk's largest event time once instead, in ``Chunk.emit``,
before returning the chunk's outputs. That is right only while every output of ``process()``
comes from ``Chunk.emit``. These tests drive ``process()`` for every output kind, event-time
policy, window and element kind (a partition's range, partitions found by discovery), and fail
when an output does not come from ``Chunk.emit`` or leaves before the estimator saw an event
time at least as late as its own.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
    ThreadsafeWatermarkEstimator,
)
from apache_beam.utils.timestamp import MIN_TIMESTAMP

from streamhouse_beam import EventTimePolicy, ReadFromStreamHouse, StartPosition
from streamhouse_beam.beam import _poll as poll
from streamhouse_beam.beam._descriptors import PartitionDescriptor
from streamhouse_beam.beam._discovery import NewPartitionsDescriptor
from streamhouse_beam.beam._read_fn import ReadPartitionsFn, partitions_fn
from streamhouse_beam.beam._watermark import _PartitionWatermarkEstimator
from streamhouse_beam.records import StreamHouseRecord
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS
from tests.process_harness import Finalizer, call_process
from tests.read_helpers import local_streamhouse, urls

T0 = DEFAULT_CLOCK_START_MS
#: Per partition: record timestamps rise from partition to partition and within each, so an
#: output that skipped the report would be later than everything reported before it.
PER_PARTITION = 6
BAD = 3  # the index of the undecodable value in each partition


def _at(record: StreamHouseRecord) -> int:
    """The timestamp function: the JSON value's ``at`` field (ms)."""
    value = record.value if isinstance(record.value, dict) else json.loads(record.value)
    return int(value["at"])


POLICIES = {
    "record_time": EventTimePolicy.record_time(),
    "bounded": EventTimePolicy.bounded_out_of_orderness(5),
    "processing_time": EventTimePolicy.processing_time(),
    "timestamp_fn": EventTimePolicy.from_record(_at),
}
KINDS = ["records", "rows", "kv", "batches"]


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Topic ``t`` launched with one partition, then grown to three; each holds an undecodable
    value among JSON ones whose ``at`` (a timestamp-function time) follows the record time."""
    tmp = tmp_path_factory.mktemp("contract")
    lsh = local_streamhouse(tmp)
    lsh.create_topic("t", 1)
    lsh.add_partitions("t", 3)
    for p in range(3):
        stamps = [T0 + 1000 * p + 10 * i for i in range(PER_PARTITION)]
        values = [
            b"\xff not JSON, not UTF-8" if i == BAD else json.dumps({"at": stamp + 500})
            for i, stamp in enumerate(stamps)
        ]
        lsh.append("t", p, values, timestamps=stamps, flush=True)
    return tmp


class _Spy(_PartitionWatermarkEstimator):
    """The read's estimator, remembering every event time reported to it."""

    def __init__(self, bound_micros: int) -> None:
        super().__init__(MIN_TIMESTAMP, bound_micros)
        self.reported: list[int] = []

    def observe_event_time(self, micros: int) -> None:
        self.reported.append(micros)
        super().observe_event_time(micros)


@pytest.fixture()
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every output ``Chunk.emit`` returned, in order (kept alive, so identities stay unique)."""
    made: list[Any] = []
    real = poll.Chunk.emit

    def recording(self: poll.Chunk) -> list[Any]:
        outputs = list(real(self))
        made.extend(outputs)
        return outputs

    monkeypatch.setattr(poll.Chunk, "emit", recording)
    return made


def _fn(tmp: pathlib.Path, output: str, policy: str, global_window: bool) -> ReadPartitionsFn:
    kwargs: dict[str, Any] = {}
    if output != "batches":  # rows carry text; the others decoded JSON
        kwargs.update(value_decoder="utf-8" if output == "rows" else "json", dead_letter=True)
    config = ReadFromStreamHouse(
        "t",
        **urls(tmp),
        output=output,
        event_time=POLICIES[policy],
        max_poll_records=4,
        partition_discovery_interval=0.01,
        poll_interval=0.05,
        **kwargs,
    ).config
    fn = partitions_fn(config, tailing=False, global_window=global_window)
    fn.read_chunk_records = 2  # records kinds: two chunks per call on a partition's range
    fn.setup()
    fn.start_bundle()
    return fn


def _event_time(output: Any) -> Any:
    if isinstance(output, beam.pvalue.TaggedOutput):
        output = output.value
    return output.timestamp


def _drive(fn: ReadPartitionsFn, element: Any, spy: _Spy) -> Iterator[tuple[Any, int | None]]:
    """Each output of process() calls on ``element`` (each resuming the last one's residual,
    until one emits nothing), with the largest event time reported when the output left."""
    restriction = fn.initial_restriction(element)
    estimator = ThreadsafeWatermarkEstimator(spy)
    while True:
        tracker = ThreadsafeRestrictionTracker(fn.create_tracker(restriction))
        view = RestrictionTrackerView(tracker)
        emitted = False
        for output in call_process(fn, element, Finalizer(), view, estimator):
            emitted = True
            yield output, max(spy.reported, default=None)
        deferred = tracker.deferred_status()
        if not emitted or deferred is None:
            return
        restriction = deferred[0]


@pytest.mark.parametrize("global_window", [False, True], ids=["windowed", "global"])
@pytest.mark.parametrize("element_kind", ["partition", "new_partitions"])
@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("output", KINDS)
def test_every_output_comes_from_a_chunk_that_reported_its_event_time_first(
    grown: pathlib.Path,
    emitted: list[Any],
    output: str,
    policy: str,
    element_kind: str,
    global_window: bool,
) -> None:
    if output == "batches" and policy == "timestamp_fn":
        pytest.skip("batches take no timestamp function (refused when the read is built)")
    fn = _fn(grown, output, policy, global_window)
    if element_kind == "partition":
        element: Any = PartitionDescriptor("t", 0, StartPosition.earliest(), None)
        records = PER_PARTITION
    else:
        element = NewPartitionsDescriptor("t", 1)
        records = 2 * PER_PARTITION
    spy = _Spy(POLICIES[policy].bound_micros)
    seen = list(_drive(fn, element, spy))

    assert seen, "the read emitted nothing: the case checks nothing"
    if output == "batches":
        assert sum(out.value.num_rows for out, _ in seen) == records
    else:
        assert len(seen) == records
    assert len(spy.reported) >= 2, "one chunk only: the case checks less than it should"
    made = {id(out) for out in emitted}
    for out, reported in seen:
        assert id(out) in made, f"{out!r} did not come from Chunk.emit"
        dead_letter = isinstance(out, beam.pvalue.TaggedOutput)
        if dead_letter and policy == "timestamp_fn":
            continue  # keeps its record time, which the function's watermark does not follow
        assert reported is not None and _event_time(out).micros <= reported, (
            f"{out!r} left before an event time as late as its own was reported ({reported})"
        )
