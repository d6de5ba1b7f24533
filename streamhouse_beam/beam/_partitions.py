"""Reading one partition's range: its restriction, its size, and its poll loop.

:class:`PartitionSource` is the :class:`~streamhouse_beam.beam._source.Source` of a
:class:`~streamhouse_beam.beam._descriptors.PartitionDescriptor`. Its restriction is resolved
from the start and stop positions on the worker when the read is planned. Each ``process()``
call

1. stops at once when the transform's ``max_records`` budget is spent (claims the range's end);
2. on a partition that was caught up at its previous poll, sleeps until ``poll_interval`` has
   passed since then (FnApiRunner resumes deferred residuals at once; runners that honour the
   deferral delay never sleep here), bounded by ``poll_interval``;
3. reads up to the poll's limits (``max_poll_records`` records, ``max_poll_bytes`` key and
   value bytes: whichever it reaches first) in reads of ``read_chunk_records`` records,
   stopping early once ``max_poll_seconds`` have passed (``batches`` read the whole poll in
   one read), each chunk going out through
   :meth:`Chunk.emit <streamhouse_beam.beam._poll.Chunk.emit>`: cut at the stop time, taken
   from the budget, claimed, converted, its event time reported; a refused claim means a split
   took the rest: stop;
4. claims the last offset the read scanned past (gaps, lost ranges), ends a bounded range by
   claiming its stop, and otherwise checkpoints with ``defer_remainder()``: at once when more
   is readable, after ``poll_interval`` when caught up (and advances an idle watermark).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from apache_beam.utils.timestamp import Duration, Timestamp

from streamhouse_beam.beam._claims import PartitionOffsets
from streamhouse_beam.beam._descriptors import PartitionDescriptor, ReadConfig
from streamhouse_beam.beam._poll import Chunk, Cursor
from streamhouse_beam.beam._restriction import PartitionRestriction, PartitionRestrictionTracker
from streamhouse_beam.beam._source import Source, Worker
from streamhouse_beam.beam._worker_state import WorkerResources
from streamhouse_beam.partition_reader import PartitionReader
from streamhouse_beam.records import TopicPartition

__all__ = ["PartitionSource"]

_LOG = logging.getLogger(__name__)


class _PartitionView:
    """Adapts a reader and the metadata store to :class:`~streamhouse_beam.positions.PartitionView`.

    One view resolves one restriction's start and stop, from one look at the partition: the
    metadata lookup that gives its earliest offset gives its readable end too, so resolving
    ``earliest()`` to ``latest()`` costs one lookup instead of three (a round trip each to a
    remote PostgreSQL, per partition, every time a pipeline starts).
    """

    def __init__(self, reader: PartitionReader, resources: WorkerResources, tp: TopicPartition):
        self._reader = reader
        self._resources = resources
        self._tp = tp
        self._earliest: int | None = None

    def _look(self) -> int:
        if self._earliest is None:
            # One metadata lookup: the earliest offset, and the readable end noted by the reader.
            self._earliest = self._reader.earliest_offset()
        return self._earliest

    def earliest_offset(self) -> int:
        return self._look()

    def readable_end(self) -> int:
        self._look()
        return self._reader.readable_end(refresh=False)

    def offset_for_timestamp(self, timestamp_ms: int) -> int:
        return self._reader.offset_for_timestamp(timestamp_ms)

    def committed_offset(self, group_id: str) -> int | None:
        return self._resources.metadata.committed_offset(
            group_id, self._tp.topic, self._tp.partition
        )


def _warn_empty_range(
    element: PartitionDescriptor, view: _PartitionView, start: int, stop: int | None
) -> None:
    """Say why a partition yields nothing: a start past its end, or a stop at or before the start.

    Such a read is not an error (a stop planned before the start can be deliberate), but
    returning no records without a word makes a wrong position look like an empty topic. An
    empty partition read from its start to its end is not worth a warning.
    """
    end = view.readable_end()  # what the positions were resolved against
    earliest = view.earliest_offset()
    if stop is not None and start == end == earliest:
        return
    where = f"topic {element.topic!r} partition {element.partition}"
    positions = f"readable offsets {earliest}..{end - 1}" if end > earliest else "no records"
    if stop is None:
        _LOG.warning(
            "%s: start offset %d (%s) is beyond the readable end %d (%s); the read waits until "
            "offset %d exists",
            where,
            start,
            element.start.describe(),
            end,
            positions,
            start,
        )
        return
    assert element.stop is not None
    _LOG.warning(
        "%s: nothing to read: start offset %d (%s) is at or after stop offset %d (%s); "
        "the partition has %s",
        where,
        start,
        element.start.describe(),
        stop,
        element.stop.describe(),
        positions,
    )


def _stop_timestamp(element: PartitionDescriptor, restriction: PartitionRestriction) -> int | None:
    """The stop timestamp an open-ended restriction must honour, if any."""
    stop = element.stop
    if restriction.unbounded and stop is not None and stop.kind == "timestamp":
        return stop.timestamp_ms
    return None


def _finish(tracker: Any) -> None:
    """End the restriction here: claiming its stop is refused and leaves nothing unclaimed."""
    tracker.try_claim(tracker.current_restriction().stop)


def _settle(tracker: Any, cursor: Cursor, chunk: Chunk) -> bool:
    """After a call's last chunk: claim what the reads scanned past, or end the restriction.

    Returns:
        True when the call is over without a checkpoint: a split took the rest, the stop
        time or the record budget ended the read, or the (bounded) range is done.
    """
    if chunk.split:  # a split took the rest of the range
        return True
    if chunk.ended:  # the stop time or the record budget: nothing more to read
        _finish(tracker)
        return True
    stop = tracker.current_restriction().stop
    if cursor.next_offset >= stop:
        _finish(tracker)  # the bounded range is done (splits may have shortened it)
        cursor.last_done = stop - 1
        return True
    return not cursor.claim_scanned()  # refused: a split took the rest


def _stop_time_passed(
    config: ReadConfig, stop_ms: int, now: Timestamp, watermark: Timestamp
) -> bool:
    """Whether a caught-up, idle read is past its stop time: no record below it can arrive.

    The stop is a record time: it is compared with record-time marks only (the wall clock
    minus the maximum delay; the watermark only under record time, as another policy's
    watermark is not one).
    """
    stop_ts = Timestamp(micros=stop_ms * 1000)
    if now - Duration.of(config.max_delay_seconds) >= stop_ts:
        return True
    return config.event_time.kind == "record_time" and watermark >= stop_ts


class PartitionSource(Source):
    """Reads a :class:`PartitionDescriptor` over a :class:`PartitionRestriction`.

    Sizing readers (one per partition) are kept apart from the reading ones:
    ``restriction_size`` runs on a separately deserialized copy of the DoFn, on runner threads.
    """

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker)
        self._sizers: dict[TopicPartition, PartitionReader] = {}
        self._sizer_lock = threading.Lock()

    def initial_restriction(self, element: PartitionDescriptor) -> PartitionRestriction:
        worker = self._worker
        tp = element.topic_partition
        reader = worker.reader(tp)
        view = _PartitionView(reader, worker.resources(), tp)
        start = element.start.resolve(tp, view)
        worker.note_position(tp, start)
        stop = element.stop.resolve(tp, view, start) if element.stop is not None else None
        if stop is None or stop.offset is None:
            if start > reader.readable_end(refresh=False):
                _warn_empty_range(element, view, start, None)
            return PartitionRestriction.open_ended(start)
        if stop.offset <= start:
            _warn_empty_range(element, view, start, stop.offset)
        return PartitionRestriction(start, stop.offset)

    def create_tracker(self, restriction: PartitionRestriction) -> PartitionRestrictionTracker:
        # Commits stay below every unread offset only if a partition's ranges are read in order.
        committing = self._worker.config.commit_offsets_group is not None
        return PartitionRestrictionTracker(restriction, checkpoint_only=committing)

    def restriction_size(
        self, element: PartitionDescriptor, restriction: PartitionRestriction
    ) -> float:
        """Remaining bytes, prorated from segment sizes the sizing reader already knows."""
        if not restriction.unbounded and restriction.start >= restriction.stop:
            return 0.0
        tp = element.topic_partition
        with self._sizer_lock:
            sizer = self._sizers.get(tp)
            if sizer is None:
                sizer = self._sizers[tp] = self._worker.new_reader(tp)
                # One metadata query per partition and worker loads the segment list.
                sizer.first_segment_fetch(restriction.start)
            stop = restriction.stop
            if restriction.unbounded:
                stop = sizer.readable_end(refresh=False)
            size = sizer.estimate_bytes(restriction.start, stop)
        # Zero would let runners drop the restriction from their accounting; keep it visible.
        return max(size, 1.0)

    def truncate(
        self, element: PartitionDescriptor, restriction: PartitionRestriction
    ) -> PartitionRestriction | None:
        # On drain, a bounded range is finished; an open-ended read has nothing left to do.
        return None if restriction.unbounded else restriction

    def forget_readers(self) -> None:
        """Drop the sizing readers unclosed: in a forked child they hold the parent's clients."""
        self._sizers = {}
        self._sizer_lock = threading.Lock()

    def close(self) -> None:
        """Close the sizing readers (the DoFn's teardown)."""
        with self._sizer_lock:
            for sizer in self._sizers.values():
                sizer.close()
            self._sizers.clear()

    def process(
        self,
        element: PartitionDescriptor,
        bundle_finalizer: Any,
        tracker: Any,
        watermark_estimator: Any,
    ) -> Iterator[Any]:
        worker = self._worker
        config = worker.config
        tp = element.topic_partition
        restriction: PartitionRestriction = tracker.current_restriction()
        budget = worker.budget()
        if budget is not None and budget.exhausted:
            _finish(tracker)
            return
        worker.prefetch_bundle(tp)
        worker.pace((config.run_id, tp))
        stop = None if restriction.unbounded else restriction.stop
        if stop is not None and restriction.start >= stop:
            _finish(tracker)
            return

        stop_ms = _stop_timestamp(element, restriction)
        poll = worker.poll(tracker, watermark_estimator)
        cursor = poll.cursor(
            tp,
            worker.reader(tp),
            PartitionOffsets(tracker),
            restriction.start,
            stop,
            stop_ms=stop_ms,
        )
        while True:
            # Read before claiming: the read may be slow and must not hold the tracker's lock.
            chunk = cursor.read()
            yield from chunk.emit()
            if chunk.split or chunk.ended:
                break
            if chunk.short or cursor.at_stop or poll.spent or poll.out_of_time():
                break

        over = _settle(tracker, cursor, chunk)
        worker.note_progress(cursor, bundle_finalizer)
        if over:
            return
        worker.note_caught_up((config.run_id, tp), cursor.caught_up)
        if not cursor.caught_up:
            tracker.defer_remainder()  # more is readable: resume at once
            return
        poll.count_empty()
        now = Timestamp.now()
        watermark = poll.advance_idle()
        if stop_ms is not None and _stop_time_passed(config, stop_ms, now, watermark):
            # Caught up and idle past the stop time: no record below it can still arrive.
            _finish(tracker)
            return
        tracker.defer_remainder(Duration.of(config.poll_interval))
