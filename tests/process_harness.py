"""Drive ``ReadPartitionsFn.process()`` directly, one call at a time, as a runner would.

Used by the tests that check the DoFn's poll loop without a pipeline
(``tests/test_read_fn_process.py``, ``tests/test_read_columns.py``,
``tests/test_new_partition_claims.py``): Beam's thread-safe tracker
and watermark estimator wrap the DoFn's own, and every output's timestamp is observed.
"""

from __future__ import annotations

import pathlib
from typing import Any

import apache_beam as beam
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
    ThreadsafeWatermarkEstimator,
)

from streamhouse_beam import ReadFromStreamHouse
from streamhouse_beam.beam._read_fn import (
    CommittingReadPartitionsFn,
    ReadPartitionsFn,
    partitions_fn,
)
from tests.read_helpers import urls


class Finalizer:
    """A bundle finalizer that keeps the registered callbacks (a test may run them)."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def register(self, callback: Any) -> None:
        self.callbacks.append(callback)


def call_process(
    fn: ReadPartitionsFn, element: Any, finalizer: Any, tracker: Any, estimator: Any
) -> Any:
    """``fn.process()`` as a runner calls it: with the bundle finalizer only if ``fn`` asks for one."""
    if isinstance(fn, CommittingReadPartitionsFn):
        return fn.process(element, finalizer, tracker, estimator)
    return fn.process(element, tracker, estimator)


class CheckpointAfter:
    """A tracker view whose runner checkpoints the restriction after ``n`` offset claims.

    Offset claims are ints (a partition restriction) or ``("offset", partition, offset)``
    (the new-partitions restriction); ``residual`` is what the checkpoint split off.
    """

    def __init__(self, tracker: ThreadsafeRestrictionTracker, n: int) -> None:
        self._tracker = tracker
        self._view = RestrictionTrackerView(tracker)
        self._left = n
        self.residual: Any = None

    def try_claim(self, position: Any) -> bool:
        if isinstance(position, tuple) and position[0] == "offset":
            if self._left == 0:
                _, self.residual = self._tracker.try_split(0)
            self._left -= 1
        return bool(self._view.try_claim(position))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)


class Harness:
    """One process() call at a time, as a runner would make it."""

    def __init__(self, tmp: pathlib.Path, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", 0.05)
        config = ReadFromStreamHouse("t", **urls(tmp), **kwargs).config
        self.fn = partitions_fn(config, tailing=False)
        self.fn.setup()
        self.fn.start_bundle()
        # The DoFn is its own watermark estimator provider (the read's event-time policy).
        self.provider = self.fn

    def start(self, element: Any) -> tuple[Any, Any]:
        """The initial restriction and watermark-estimator state of ``element``."""
        restriction = self.fn.initial_restriction(element)
        return restriction, self.provider.initial_estimator_state(element, restriction)

    def call(
        self, element: Any, restriction: Any, wm_state: Any
    ) -> tuple[list[Any], ThreadsafeRestrictionTracker, ThreadsafeWatermarkEstimator, Finalizer]:
        """One process() call; returns its outputs, tracker, estimator and finalizer."""
        tracker = ThreadsafeRestrictionTracker(self.fn.create_tracker(restriction))
        estimator = ThreadsafeWatermarkEstimator(self.provider.create_watermark_estimator(wm_state))
        finalizer = Finalizer()
        out = []
        view = RestrictionTrackerView(tracker)
        for item in call_process(self.fn, element, finalizer, view, estimator):
            out.append(item)
            # What the runner does for each output (a dead letter is a TaggedOutput around one).
            timestamped = item.value if isinstance(item, beam.pvalue.TaggedOutput) else item
            estimator.observe_timestamp(timestamped.timestamp)
        return out, tracker, estimator, finalizer


def claim_batch(tp: Any, records: Any, offsets: Any) -> tuple[list[Any], int | None, int, bool]:
    """The batches kind's claim and conversion of one chunk, as ``Chunk.emit`` runs them.

    Args:
        tp: the records' partition.
        records: a ``pyarrow.RecordBatch`` or record tuples, in offset order.
        offsets: where the chunk claims (``PartitionOffsets`` or ``NewPartitionOffsets``).

    Returns:
        ``(outputs, last claimed offset or None, records claimed, split)``.
    """
    from streamhouse_beam.beam._batches import BatchOutputs

    kind = BatchOutputs()
    if not len(records):
        return [], None, 0, False
    claimed, last = kind.claim(records, offsets)
    split = claimed < len(records)
    if not claimed:
        return [], None, 0, split
    outputs, _ = kind.convert(tp, records[:claimed], None)
    return list(outputs), last, claimed, split
