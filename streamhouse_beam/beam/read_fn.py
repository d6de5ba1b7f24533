"""The splittable DoFns that read StreamHouse partitions, and the partition discovery DoFns.

:class:`ReadPartitionsFn` is its own :class:`~apache_beam.transforms.core.RestrictionProvider`
(as Beam's ``io/watch.py``): one element per partition (:class:`PartitionDescriptor`), one
:class:`PartitionRestriction` per element, resolved from the start/stop positions on the
worker when the read is planned. Each ``process()`` call

1. stops at once when the transform's ``max_records`` budget is spent (claims the range's end);
2. on a partition that was caught up at its previous poll, sleeps until ``poll_interval`` has
   passed since then (FnApiRunner resumes deferred residuals at once; runners that honour the
   deferral delay never sleep here), bounded by ``poll_interval``;
3. reads up to the poll's limits (``max_poll_records`` records, ``max_poll_bytes`` key and
   value bytes: whichever it reaches first) with :class:`PartitionReader` (in calls of
   ``read_chunk_records``, stopping early once ``max_poll_seconds`` have passed; ``batches``
   read the whole poll in one call), each chunk **before** claiming it, so a slow read never
   holds the tracker's lock during a split request;
4. claims each record's offset (offsets may jump over compacted gaps) and emits it with the
   event time the read's :class:`~streamhouse_beam.beam.event_time.EventTimePolicy` gives it
   (the record timestamp by default), reporting the chunk's largest to the watermark estimator
   first; a failed claim means a split took the rest: stop;
5. claims the last offset the read scanned past (gaps, lost ranges), ends a bounded range by
   claiming its stop, and otherwise checkpoints with ``defer_remainder()`` — at once when more
   is readable, after ``poll_interval`` when caught up (and advances an idle watermark).

The first call of each bundle hands the first segment of every other partition this worker has
planned to the segment cache's background prefetch, so a worker pays one round trip for all of
them instead of one per partition.

With ``commit_offsets_group`` the read uses :class:`CommittingReadPartitionsFn`: each call
registers a bundle-finalization callback that commits the next offset to read for its
partition once the runner has durably committed the bundle. Without it the DoFn does not ask
for bundle finalization at all (:func:`partitions_fn` picks the class).

Discovery: :class:`DiscoverPartitionsFn` lists the partitions of each topic when the pipeline
starts. For a tailing read it adds one :class:`NewPartitionsDescriptor` per topic: that element's
restriction re-lists the topic every ``partition_discovery_interval`` and reads every partition
created since, from its earliest offset, with exactly-once claims (see
:class:`~streamhouse_beam.beam.restriction.NewPartitionsTracker`), a chunk per partition
claimed and converted by the same code as steps 3-4
(:class:`~streamhouse_beam.beam.claims.NewPartitionOffsets`). Discovery is part of the read
stage rather than an upstream watching stage because runners such as FnApiRunner start a stage
only once its upstream stages are finished, which an endless watcher never is.

:class:`TailPartitionsFn` is the same DoFn marked ``unbounded_per_element`` (tailing reads make
the output PCollection unbounded, which puts Dataflow in streaming mode), and
:class:`CommittingTailPartitionsFn` its committing counterpart.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Duration, Timestamp

from streamhouse_beam.beam.claims import NewPartitionOffsets, claim_prefix
from streamhouse_beam.beam.coders import (
    DeadLetterRecord,
    StreamHouseRow,
    StreamHouseTextRow,
)
from streamhouse_beam.beam.descriptors import (
    NewPartitionsDescriptor,
    PartitionDescriptor,
    ReadConfig,
)
from streamhouse_beam.beam.emit import (
    check_event_time,
    timestamp_micros,
    timestamp_ms,
    windowed_records,
)
from streamhouse_beam.beam.event_time import call_timestamp_fn
from streamhouse_beam.beam.restriction import (
    NewPartitionsRestriction,
    NewPartitionsTracker,
    PartitionRestriction,
    PartitionRestrictionCoder,
    PartitionRestrictionTracker,
)
from streamhouse_beam.beam.watermark import (
    PartitionWatermarkEstimator,
    PartitionWatermarkEstimatorProvider,
    WatermarkStateCoder,
)
from streamhouse_beam.beam.worker_state import (
    RecordBudget,
    RunLease,
    WorkerResources,
    new_retries,
    run_state,
    worker_resources,
)
from streamhouse_beam.errors import DecodeError
from streamhouse_beam.partition_reader import PartitionReader, ReadBatch
from streamhouse_beam.records import StreamHouseRecord, TopicPartition

__all__ = [
    "DEAD_LETTER_TAG",
    "CommittingReadPartitionsFn",
    "CommittingTailPartitionsFn",
    "DiscoverPartitionsFn",
    "ReadPartitionsFn",
    "TailPartitionsFn",
    "partitions_fn",
]

_LOG = logging.getLogger(__name__)

#: The tag of the dead-letter output.
DEAD_LETTER_TAG = "dead_letter"
_GLOBAL_WINDOWS = (GlobalWindow(),)
#: The metrics namespace.
NAMESPACE = "streamhouse"
#: At most this many other partitions get their first segment prefetched at a bundle's start.
_BUNDLE_PREFETCH_PARTITIONS = 64
#: The record count a read call asks for when the poll has no record limit (bytes end it).
_NO_RECORD_LIMIT = sys.maxsize

# What the DoFns remember between calls (poll pacing, read positions, the max_records budget,
# committed offsets) lives in beam/worker_state.py, per transform run and worker process, with
# a lifetime. These helpers are its call sites; a pacing key is (run id, what is paced).


def _pace(key: tuple[str, Hashable], interval: float) -> None:
    """Sleep until ``interval`` has passed since ``key`` last found nothing (bounded)."""
    run_state(key[0]).pace(key[1], interval)


def _note_empty_poll(key: tuple[str, Hashable], empty: bool) -> None:
    run_state(key[0]).note_empty_poll(key[1], empty)


def _note_position(run_id: str, tp: TopicPartition, offset: int) -> None:
    run_state(run_id).note_position(tp, offset)


def _listing_due(run_id: str, topic: str, interval: float) -> bool:
    """Whether ``topic``'s partitions are due to be listed again (then they count as listed)."""
    return run_state(run_id).listing_due(("listing", topic), interval)


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


class _Committer:
    """Bundle-finalization callback committing one partition's next offset (never regressing)."""

    def __init__(self, resources: WorkerResources, group: str, tp: TopicPartition, offset: int):
        self.resources = resources
        self.group = group
        self.tp = tp
        self.offset = offset

    def __call__(self) -> None:
        self.resources.commit_offset(self.group, self.tp, self.offset)


def _largest_event_time(outputs: list[Any]) -> int | None:
    """The largest event time (microseconds) among ``outputs``, or None for no outputs."""
    largest: int | None = None
    for out in outputs:
        if isinstance(out, beam.pvalue.TaggedOutput):
            out = out.value
        micros = out.timestamp.micros
        if largest is None or micros > largest:
            largest = micros
    return largest


class ReadPartitionsFn(beam.DoFn, RestrictionProvider, WatermarkEstimatorProvider):  # type: ignore[misc]
    """Reads one partition range per element; see the module docstring.

    It is its own watermark estimator provider too (a
    :class:`PartitionWatermarkEstimatorProvider` of the config's event-time policy), because
    the policy decides how each restriction's watermark is seeded and bounded.

    Args:
        config: the validated read configuration.
    """

    #: Records per reader call; between calls the ``max_poll_seconds`` deadline is checked.
    read_chunk_records = 1024

    def __init__(self, config: ReadConfig, *, global_window: bool = False) -> None:
        self.config = config
        # Set when the descriptors are in the global window: records are then emitted as
        # ready-made WindowedValues, skipping Beam's per-element window assignment (about a
        # third of the per-record cost on FnApiRunner).
        self.global_window = global_window
        self._reset()

    def _reset(self) -> None:
        self._watermarks = PartitionWatermarkEstimatorProvider(self.config.event_time)
        self._lease: RunLease | None = None
        self._readers: dict[TopicPartition, PartitionReader] = {}
        self._sizers: dict[TopicPartition, PartitionReader] = {}
        self._sizer_lock = threading.Lock()
        self._budget: RecordBudget | None = None
        self._bundle_prefetched = False
        self._metrics: dict[str, Any] | None = None
        self._gauges: dict[TopicPartition, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Clients, readers, locks and metric handles are rebuilt lazily after unpickling.
        return {"config": self.config, "global_window": self.global_window}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self.global_window = state.get("global_window", False)
        self._reset()

    # ------------------------------------------------------------------ shared resources

    def _res(self) -> WorkerResources:
        lease = self._lease
        if lease is None or lease.stale:
            if lease is not None:
                # Forked since: the readers hold the parent's clients and cache.
                self._readers.clear()
                self._sizers.clear()
            lease = self._lease = RunLease(self.config)
            self._budget = lease.budget
        return lease.resources

    def _new_reader(self, tp: TopicPartition) -> PartitionReader:
        res = self._res()
        return PartitionReader(
            res.metadata, res.store, res.cache, tp.topic, tp.partition, self.config.read_options
        )

    def _reader(self, tp: TopicPartition) -> PartitionReader:
        reader = self._readers.get(tp)
        if reader is None:
            reader = self._readers[tp] = self._new_reader(tp)
        return reader

    # ------------------------------------------------------------------ RestrictionProvider

    def initial_restriction(
        self, element: PartitionDescriptor | NewPartitionsDescriptor
    ) -> PartitionRestriction | NewPartitionsRestriction:
        if isinstance(element, NewPartitionsDescriptor):
            return NewPartitionsRestriction(element.first_partition)
        tp = element.topic_partition
        reader = self._reader(tp)
        view = _PartitionView(reader, self._res(), tp)
        start = element.start.resolve(tp, view)
        _note_position(self.config.run_id, tp, start)
        stop = element.stop.resolve(tp, view, start) if element.stop is not None else None
        if stop is None or stop.offset is None:
            if start > reader.readable_end(refresh=False):
                _warn_empty_range(element, view, start, None)
            return PartitionRestriction.open_ended(start)
        if stop.offset <= start:
            _warn_empty_range(element, view, start, stop.offset)
        return PartitionRestriction(start, stop.offset)

    def create_tracker(
        self, restriction: PartitionRestriction | NewPartitionsRestriction
    ) -> PartitionRestrictionTracker | NewPartitionsTracker:
        if isinstance(restriction, NewPartitionsRestriction):
            return NewPartitionsTracker(restriction)
        return PartitionRestrictionTracker(restriction)

    def split(
        self, element: PartitionDescriptor, restriction: PartitionRestriction
    ) -> Iterator[PartitionRestriction]:
        # One restriction per partition; runners split big bounded ranges dynamically.
        yield restriction

    def restriction_size(
        self, element: PartitionDescriptor, restriction: PartitionRestriction
    ) -> float:
        """Remaining bytes, prorated from segment sizes the sizing reader already knows."""
        if isinstance(restriction, NewPartitionsRestriction):
            return 0.0 if restriction.done else 1.0
        if not restriction.unbounded and restriction.start >= restriction.stop:
            return 0.0
        tp = element.topic_partition
        with self._sizer_lock:
            sizer = self._sizers.get(tp)
            if sizer is None:
                sizer = self._sizers[tp] = self._new_reader(tp)
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
        if isinstance(restriction, NewPartitionsRestriction) or restriction.unbounded:
            return None
        return restriction

    def restriction_coder(self) -> PartitionRestrictionCoder:
        return PartitionRestrictionCoder()

    # ------------------------------------------------------------------ WatermarkEstimatorProvider

    def initial_estimator_state(self, element: Any, restriction: Any) -> Timestamp:
        return self._watermarks.initial_estimator_state(element, restriction)

    def create_watermark_estimator(self, estimator_state: Timestamp) -> PartitionWatermarkEstimator:
        return self._watermarks.create_watermark_estimator(estimator_state)

    def estimator_state_coder(self) -> WatermarkStateCoder:
        return self._watermarks.estimator_state_coder()

    def _advance_idle(self, watermark_estimator: Any) -> Timestamp:
        """Move an idle partition's watermark (now minus the idle delay); returns it."""
        return watermark_estimator.advance_idle(  # type: ignore[no-any-return]
            Timestamp.now(), self._watermarks.idle_delay(self.config.max_delay_seconds)
        )

    # ------------------------------------------------------------------ DoFn lifecycle

    def setup(self) -> None:
        self._res()
        self._metrics = {
            name: Metrics.counter(NAMESPACE, name)
            for name in (
                "records_read",
                "bytes_read",
                "decode_errors",
                "segment_cache_hits",
                "segment_cache_misses",
                "segments_prefetched",
                "prefetch_hits",
                "lost_ranges",
                "storage_retries",
                "metadata_retries",
                "polls",
                "empty_polls",
            )
        }

    def start_bundle(self) -> None:
        self._bundle_prefetched = False

    def teardown(self) -> None:
        for reader in list(self._readers.values()) + list(self._sizers.values()):
            reader.close()
        self._readers.clear()
        self._sizers.clear()
        if self._lease is not None:
            # The run's state and the resources go once no instance of the run holds them.
            self._lease.release()
            self._lease = None

    def _prefetch_bundle(self, current: TopicPartition) -> None:
        """Prefetch the first segment of every other partition this worker knows about."""
        self._bundle_prefetched = True
        positions = run_state(self.config.run_id).positions()
        positions.pop(current, None)
        items = []
        for tp, offset in list(positions.items())[:_BUNDLE_PREFETCH_PARTITIONS]:
            try:
                item = self._reader(tp).first_segment_fetch(offset)
            except Exception as exc:  # a failure here resurfaces, named, on the real read
                _LOG.debug("first-segment prefetch of %s skipped: %s", tp, exc)
                continue
            if item is not None:
                items.append(item)
        if items:
            self._res().cache.prefetch(items)

    def _gauge(self, tp: TopicPartition) -> Any:
        gauge = self._gauges.get(tp)
        if gauge is None:
            gauge = self._gauges[tp] = Metrics.gauge(
                NAMESPACE, f"backlog_records/{tp.topic}/{tp.partition}"
            )
        return gauge

    def _poll(
        self, reader: Any, start: int, stop: int | None, limit: int, max_bytes: int | None
    ) -> Any:
        """One read of up to ``limit`` records (and ``max_bytes``) from ``start``, counted.

        ``batches`` output reads one Arrow batch, decoded without a Python object per record;
        the other outputs read record tuples.
        """
        if self.config.output == "batches":
            batch = reader.read_columns(start, stop, limit, max_bytes)
        else:
            batch = reader.read(start, stop, limit, max_bytes)
        self._count(batch)
        return batch

    def _count(self, batch: ReadBatch) -> None:
        m = self._metrics
        if m is None:
            return
        m["polls"].inc()
        if batch.bytes_read:
            m["bytes_read"].inc(batch.bytes_read)
        if batch.cache_hits:
            m["segment_cache_hits"].inc(batch.cache_hits)
        if batch.cache_misses:
            m["segment_cache_misses"].inc(batch.cache_misses)
        if batch.prefetches:
            m["segments_prefetched"].inc(batch.prefetches)
        if batch.prefetch_hits:
            m["prefetch_hits"].inc(batch.prefetch_hits)
        if batch.lost_ranges:
            m["lost_ranges"].inc(len(batch.lost_ranges))
        res = self._res()
        for name, store in (("storage_retries", res.store), ("metadata_retries", res.metadata)):
            retries = self._new_retries(store)
            if retries:
                m[name].inc(retries)

    @staticmethod
    def _new_retries(store: Any) -> int:
        """Retries ``store`` made (reads, prefetches, commits) since they were last reported."""
        return new_retries(store)

    # ------------------------------------------------------------------ process

    def _outputs(
        self,
        tp: TopicPartition,
        records: list[tuple[int, int, bytes | None, bytes]],
        tracker: Any,
        watermark_estimator: Any,
    ) -> tuple[Iterable[Any], int | None, int, bool]:
        """Claim and convert ``records``; observe their event time and count them.

        Returns:
            ``(outputs, last claimed offset or None, records claimed, split)``; ``split`` is
            True when a claim was refused because a split took the rest of the range.
        """
        outputs, last, claimed, split, event_micros = self._claim_and_convert(
            tp, records, tracker, watermark_estimator
        )
        if event_micros is not None:
            # Before the outputs leave: the estimator ignores Beam's per-output calls.
            watermark_estimator.observe_event_time(event_micros)
        if self._metrics is not None and claimed:
            self._metrics["records_read"].inc(claimed)
        return outputs, last, claimed, split

    def _claim_and_convert(
        self,
        tp: TopicPartition,
        records: list[tuple[int, int, bytes | None, bytes]],
        tracker: Any,
        watermark_estimator: Any,
    ) -> tuple[Iterable[Any], int | None, int, bool, int | None]:
        """:meth:`_outputs` plus the largest event time of the outputs (microseconds or None)."""
        config = self.config
        if config.output == "batches":
            # One Arrow batch for the whole chunk (streamhouse_beam.beam.batches).
            from streamhouse_beam.beam.batches import claim_batch

            outputs, last, claimed, split = claim_batch(tp, records, tracker)
            if outputs and config.event_time.kind == "processing_time":
                now = self._processing_time(watermark_estimator)
                outputs = [beam.window.TimestampedValue(outputs[0].value, now)]
            return outputs, last, claimed, split, _largest_event_time(outputs)
        # One claim for the chunk (streamhouse_beam.beam.claims), not one per record.
        claimed = claim_prefix(records, tracker)
        split = claimed < len(records)
        if split:
            records = records[:claimed]
        if not records:
            return [], None, 0, split, None
        last = records[-1][0]
        stamp: Timestamp | None = None
        if config.event_time.kind == "processing_time":
            stamp = self._processing_time(watermark_estimator)
        out, event_micros = self._convert_chunk(tp, records, stamp)
        return out, last, claimed, split, event_micros

    @staticmethod
    def _processing_time(watermark_estimator: Any) -> Timestamp:
        """Now, as the timestamp of a chunk read under processing time (never behind the watermark)."""
        now = Timestamp.now()
        watermark = watermark_estimator.current_watermark()
        return timestamp_micros(max(now, watermark).micros)

    def _timestamps_of(
        self, tp: TopicPartition, records: list[tuple[int, int, bytes | None, bytes]], values: Any
    ) -> list[int]:
        """The timestamp function's result for each record (microseconds)."""
        fn = self.config.event_time.timestamp_fn
        topic, partition = tp
        return [
            call_timestamp_fn(
                fn,
                StreamHouseRecord(
                    topic, partition, offset, ts, key, raw if values is None else values[i]
                ),
            )
            for i, (offset, ts, key, raw) in enumerate(records)
        ]

    def _convert_chunk(
        self,
        tp: TopicPartition,
        records: list[tuple[int, int, bytes | None, bytes]],
        stamp: Timestamp | None = None,
    ) -> tuple[Iterable[Any], int | None]:
        """The outputs of claimed ``records`` (made lazily) and their largest event time (µs).

        Under record time (``stamp`` None, no timestamp function) each output carries its
        record timestamp; under processing time every output carries ``stamp``; with a
        timestamp function each carries what the function returned.
        """
        config = self.config
        decoder = config.decoder
        topic, partition = tp
        row_type: Any
        if config.output == "kv":
            row_type = None
        elif config.output == "rows":
            row_type = StreamHouseTextRow if decoder.name == "utf-8" else StreamHouseRow
        else:
            row_type = StreamHouseRecord
        values: list[Any] | None = None
        if not decoder.identity:
            decode = decoder.decode_record
            try:
                values = [
                    decode(raw, topic=topic, partition=partition, offset=offset)
                    for offset, _, _, raw in records
                ]
            except DecodeError:
                # Some value does not decode: go record by record, which counts it and routes
                # it to the dead-letter output or raises, as configured.
                return self._convert_each(tp, records, stamp)
        times: Timestamp | list[Timestamp] | None = stamp
        event_micros: int | None = None
        if stamp is not None:
            event_micros = stamp.micros
        elif config.event_time.kind == "timestamp_fn":
            micros = self._timestamps_of(tp, records, values)
            times = [timestamp_micros(us) for us in micros]
            event_micros = max(micros)
        if self.global_window:
            # Ready-made WindowedValues: exactly what Beam makes of a TimestampedValue in the
            # global window, without its per-element window assignment.
            outputs, max_ms = windowed_records(
                records, values, topic, partition, row_type, _GLOBAL_WINDOWS, times
            )
            return outputs, max_ms * 1000 if event_micros is None else event_micros
        out: list[Any] = []
        max_ms = 0
        for i, (offset, ts, key, raw) in enumerate(records):
            check_event_time(ts, topic, partition, offset)
            value = raw if values is None else values[i]
            element = (
                (key, value)
                if row_type is None
                else row_type(topic, partition, offset, ts, key, value)
            )
            if times is None:
                event_time = timestamp_ms(ts)
            else:
                event_time = times[i] if isinstance(times, list) else times
            out.append(beam.window.TimestampedValue(element, event_time))
            max_ms = max(max_ms, ts)
        return out, max_ms * 1000 if event_micros is None else event_micros

    def _convert_each(
        self,
        tp: TopicPartition,
        records: list[tuple[int, int, bytes | None, bytes]],
        stamp: Timestamp | None,
    ) -> tuple[list[Any], int | None]:
        """:meth:`_convert_chunk` one record at a time (a chunk holding undecodable values)."""
        out: list[Any] = []
        event_micros: int | None = None
        for rec in records:
            outputs, micros = self._convert(tp, rec, stamp)
            out.extend(outputs)
            if micros is not None and (event_micros is None or micros > event_micros):
                event_micros = micros
        return out, event_micros

    def process(
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        tracker: Any = beam.DoFn.RestrictionParam(),
        watermark_estimator: Any = beam.DoFn.WatermarkEstimatorParam(),
    ) -> Iterator[Any]:
        # No BundleFinalizerParam here: a DoFn that asks for one makes Prism finalize every
        # bundle, which fails in the SDK when nothing was registered (CommittingReadPartitionsFn).
        return self._read(element, None, tracker, watermark_estimator)

    def _read(
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        bundle_finalizer: Any,
        tracker: Any,
        watermark_estimator: Any,
    ) -> Iterator[Any]:
        """One ``process()`` call; ``bundle_finalizer`` is None unless offsets are committed."""
        if isinstance(element, NewPartitionsDescriptor):
            yield from self._process_new_partitions(
                element, bundle_finalizer, tracker, watermark_estimator
            )
            return
        config = self.config
        tp = element.topic_partition
        restriction: PartitionRestriction = tracker.current_restriction()
        start = restriction.start
        res = self._res()
        budget = self._budget

        if budget is not None and budget.exhausted:
            _finish(tracker)
            return
        if not self._bundle_prefetched:
            self._prefetch_bundle(tp)
        _pace((config.run_id, tp), config.poll_interval)

        stop = None if restriction.unbounded else restriction.stop
        if stop is not None and start >= stop:
            _finish(tracker)
            return
        reader = self._reader(tp)
        limit_ts = _stop_timestamp(element, restriction)
        deadline = time.monotonic() + config.max_poll_seconds
        pos = start
        last: int | None = None
        max_count = _NO_RECORD_LIMIT if config.max_poll_records is None else config.max_poll_records
        max_bytes = config.max_poll_bytes
        polled = 0
        polled_bytes = 0
        while True:
            # Poll before claiming: the read may be slow and must not hold the tracker's lock.
            # A batch is one element per read call, so batches read the whole poll at once.
            chunk = max_count if config.output == "batches" else self.read_chunk_records
            want = min(max_count - polled, chunk)
            batch = self._poll(
                reader, pos, stop, want, None if max_bytes is None else max_bytes - polled_bytes
            )
            records = batch.records
            polled += len(records)
            polled_bytes += batch.bytes_read
            ended = False
            if limit_ts is not None and config.output == "batches":
                from streamhouse_beam.beam.batches import first_at_or_after

                cut = first_at_or_after(records, limit_ts)
                if cut is not None:
                    records, ended = records[:cut], True
            elif limit_ts is not None:
                # A timestamp stop on an open-ended read: end before the first record reaching it.
                for i, rec in enumerate(records):
                    if rec[1] >= limit_ts:
                        records = records[:i]
                        ended = True
                        break
            granted = len(records)
            if budget is not None and records:
                granted = budget.take(len(records))
                if granted < len(records):
                    records = records[:granted]
                    ended = True
            outputs, chunk_last, claimed, split = self._outputs(
                tp, records, tracker, watermark_estimator
            )
            if budget is not None and split:
                budget.give_back(granted - claimed)
            if chunk_last is not None:
                last = chunk_last
            yield from outputs
            if split:
                self._after(element, tp, res, bundle_finalizer, last, start, batch)
                return
            if ended:
                _finish(tracker)
                self._after(element, tp, res, bundle_finalizer, last, start, batch)
                return
            pos = batch.next_offset
            if (
                len(batch.records) < want
                or polled >= max_count
                or (max_bytes is not None and polled_bytes >= max_bytes)
                or (stop is not None and pos >= stop)
                or time.monotonic() >= deadline
            ):
                break

        next_offset = batch.next_offset
        current_stop = tracker.current_restriction().stop
        scanned_to = last
        if next_offset >= current_stop:
            _finish(tracker)  # the bounded range is done (splits may have shortened it)
            scanned_to = current_stop - 1
        elif next_offset - 1 > (start - 1 if last is None else last):
            # Offsets the read scanned past hold no record (gaps, a lost range): claim them so a
            # checkpoint resumes after them instead of scanning them again.
            if not tracker.try_claim(next_offset - 1):
                self._after(element, tp, res, bundle_finalizer, last, start, batch)
                return
            scanned_to = next_offset - 1
        self._after(element, tp, res, bundle_finalizer, scanned_to, start, batch)
        if next_offset >= current_stop:
            return

        caught_up = not batch.records and next_offset >= batch.readable_end
        _note_empty_poll((config.run_id, tp), caught_up)
        if caught_up:
            if self._metrics is not None:
                self._metrics["empty_polls"].inc()
            now = Timestamp.now()
            watermark = self._advance_idle(watermark_estimator)
            stop_ms = _stop_timestamp(element, restriction)
            if stop_ms is not None:
                # The stop is a record time: compare it with record-time marks only (the
                # watermark of another policy is not one).
                stop_ts = Timestamp(micros=stop_ms * 1000)
                reached = now - Duration.of(config.max_delay_seconds) >= stop_ts or (
                    config.event_time.kind == "record_time" and watermark >= stop_ts
                )
                if reached:
                    # Caught up and idle past the stop time: no record below it can still arrive.
                    _finish(tracker)
                    return
            tracker.defer_remainder(Duration.of(config.poll_interval))
        else:
            tracker.defer_remainder()

    def _process_new_partitions(
        self,
        element: NewPartitionsDescriptor,
        bundle_finalizer: Any,
        tracker: Any,
        watermark_estimator: Any,
    ) -> Iterator[Any]:
        """Discover partitions created after launch and read them from their earliest offset."""
        config = self.config
        budget = self._budget
        restriction: NewPartitionsRestriction = tracker.current_restriction()
        if budget is not None and budget.exhausted:
            tracker.try_claim(("end",))
            return
        res = self._res()
        key = (config.run_id, ("new", element.topic))
        _pace(key, config.poll_interval)
        if _listing_due(config.run_id, element.topic, config.partition_discovery_interval):
            count = len(res.metadata.partitions(element.topic))
            for partition in range(restriction.next_partition, count):
                tp = TopicPartition(element.topic, partition)
                earliest = self._reader(tp).earliest_offset()
                if not tracker.try_claim(("partition", partition, earliest)):
                    return
                _LOG.info("%s: new partition discovered, reading from offset %d", tp, earliest)
        positions = dict(tracker.current_restriction().positions)
        # The poll's limits are shared by the partitions it reads.
        remaining = _NO_RECORD_LIMIT if config.max_poll_records is None else config.max_poll_records
        bytes_left = config.max_poll_bytes
        caught_up = True
        for partition, offset in positions.items():
            if remaining <= 0 or (bytes_left is not None and bytes_left <= 0):
                caught_up = False
                break
            tp = TopicPartition(element.topic, partition)
            batch = self._poll(self._reader(tp), offset, None, remaining, bytes_left)
            if bytes_left is not None:
                bytes_left -= batch.bytes_read
            records = batch.records
            granted = len(records)
            if budget is not None and granted:
                granted = budget.take(granted)
                if granted < len(records):
                    records = records[:granted]
            # The main path's claim and conversion; one claim per chunk on Beam's tracker view
            # (streamhouse_beam.beam.claims.NewPartitionOffsets).
            outputs, last, claimed, split = self._outputs(
                tp, records, NewPartitionOffsets(tracker, partition), watermark_estimator
            )
            # Records claimed before a refused claim belong to this restriction: emit them, or
            # they would be lost (the residual starts after the last successful claim).
            yield from outputs
            if split:
                if budget is not None:
                    budget.give_back(granted - claimed)
                self._after(element, tp, res, bundle_finalizer, last, offset, batch)
                return
            remaining -= granted
            if budget is not None and budget.exhausted:
                self._after(element, tp, res, bundle_finalizer, last, offset, batch)
                tracker.try_claim(("end",))
                return
            if granted == len(batch.records) and batch.next_offset - 1 > (
                offset - 1 if last is None else last
            ):
                # Offsets the read scanned past hold no record: resume after them.
                tracker.try_claim(("offset", partition, batch.next_offset - 1))
                last = batch.next_offset - 1
            self._after(element, tp, res, bundle_finalizer, last, offset, batch)
            if batch.records or batch.next_offset < batch.readable_end:
                caught_up = False
        _note_empty_poll(key, caught_up)
        if caught_up:
            self._advance_idle(watermark_estimator)
            tracker.defer_remainder(Duration.of(config.poll_interval))
        else:
            tracker.defer_remainder()

    def _convert(
        self,
        tp: TopicPartition,
        rec: tuple[int, int, bytes | None, bytes],
        stamp: Timestamp | None = None,
    ) -> tuple[list[Any], int | None]:
        """One record's outputs (no claim) and the event time it reports (µs, or None).

        The record, or its dead-letter entry; a dead letter under a timestamp function keeps
        its record timestamp (the function cannot see an undecodable value) and reports none.
        """
        config = self.config
        offset, ts, key, raw = rec
        check_event_time(ts, tp.topic, tp.partition, offset)
        event_time = timestamp_ms(ts) if stamp is None else stamp
        try:
            value = config.decoder.decode_record(
                raw, topic=tp.topic, partition=tp.partition, offset=offset
            )
        except DecodeError as exc:
            if self._metrics is not None:
                self._metrics["decode_errors"].inc()
            if not config.dead_letter:
                raise
            dead = beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG,
                beam.window.TimestampedValue(
                    DeadLetterRecord(tp.topic, tp.partition, offset, ts, key, raw, exc.reason),
                    event_time,
                ),
            )
            if config.event_time.kind == "timestamp_fn":
                return [dead], None
            return [dead], event_time.micros
        if config.output == "rows":
            row_type = StreamHouseTextRow if config.decoder.name == "utf-8" else StreamHouseRow
            element: Any = row_type(tp.topic, tp.partition, offset, ts, key, value)  # type: ignore[arg-type]
        elif config.output == "kv":
            element = (key, value)
        else:
            element = StreamHouseRecord(tp.topic, tp.partition, offset, ts, key, value)
        if config.event_time.kind == "timestamp_fn":
            micros = call_timestamp_fn(
                config.event_time.timestamp_fn,
                StreamHouseRecord(tp.topic, tp.partition, offset, ts, key, value),
            )
            event_time = timestamp_micros(micros)
        return [beam.window.TimestampedValue(element, event_time)], event_time.micros

    def _after(
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        tp: TopicPartition,
        res: WorkerResources,
        bundle_finalizer: Any,
        last_done: int | None,
        start: int,
        batch: ReadBatch,
    ) -> None:
        """Book-keeping after a poll: position, backlog gauge, offset commit."""
        position = start if last_done is None else last_done + 1
        _note_position(self.config.run_id, tp, position)
        self._gauge(tp).set(max(0, batch.readable_end - position))
        group = self.config.commit_offsets_group
        if group is not None and last_done is not None:
            bundle_finalizer.register(_Committer(res, group, tp, position))


class DiscoverPartitionsFn(beam.DoFn):  # type: ignore[misc]
    """Emits one :class:`PartitionDescriptor` per existing partition of each input topic.

    For a tailing read with partition discovery it also emits one
    :class:`NewPartitionsDescriptor` per topic for the partitions created later.
    """

    def __init__(self, config: ReadConfig, start: Any, stop: Any) -> None:
        self.config = config
        self.start = start
        self.stop = stop

    def process(self, topic: str) -> Iterator[PartitionDescriptor | NewPartitionsDescriptor]:
        metadata = worker_resources(self.config).metadata
        partitions = metadata.partitions(topic)
        for info in partitions:
            yield PartitionDescriptor(topic, info.partition, self.start, self.stop)
        if self.stop is None and self.config.partition_discovery_interval > 0:
            first = max((info.partition for info in partitions), default=-1) + 1
            yield NewPartitionsDescriptor(topic, first)


class TailPartitionsFn(ReadPartitionsFn):
    """:class:`ReadPartitionsFn` for tailing reads: its output PCollection is unbounded."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        tracker: Any = beam.DoFn.RestrictionParam(),
        # The DoFn is its own estimator provider: the read's event-time policy.
        watermark_estimator: Any = beam.DoFn.WatermarkEstimatorParam(),
    ) -> Iterator[Any]:
        return self._read(element, None, tracker, watermark_estimator)


def _nothing_to_commit() -> None:
    """The finalization callback of a call that read nothing new: keeps its bundle finalizable."""


class _Registrations:
    """A bundle finalizer that remembers whether this ``process()`` call registered a commit."""

    def __init__(self, finalizer: Any) -> None:
        self.finalizer = finalizer
        self.registered = False

    def register(self, callback: Any) -> None:
        self.finalizer.register(callback)
        self.registered = True


class CommittingReadPartitionsFn(ReadPartitionsFn):
    """:class:`ReadPartitionsFn` with ``commit_offsets_group``: commits on bundle finalization.

    Only this DoFn asks for ``BundleFinalizerParam``, and every call registers a callback: a
    runner that sees the request finalizes every bundle of the stage (Prism does, whatever
    the bundle's response says), and Beam's Python SDK keeps a bundle finalizable only when a
    callback was registered for it, failing the request with "Bundle is not in a finalizable
    state" otherwise. A call with nothing new to commit (an idle poll) registers a no-op.
    """

    # Beam passes process() parameters by their defaults; the extra one is the point here.
    def process(  # type: ignore[override]
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        bundle_finalizer: Any = beam.DoFn.BundleFinalizerParam,
        tracker: Any = beam.DoFn.RestrictionParam(),
        watermark_estimator: Any = beam.DoFn.WatermarkEstimatorParam(),
    ) -> Iterator[Any]:
        return self._read_committing(element, bundle_finalizer, tracker, watermark_estimator)

    def _read_committing(
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        bundle_finalizer: Any,
        tracker: Any,
        watermark_estimator: Any,
    ) -> Iterator[Any]:
        registrations = _Registrations(bundle_finalizer)
        yield from self._read(element, registrations, tracker, watermark_estimator)
        if not registrations.registered:
            bundle_finalizer.register(_nothing_to_commit)


class CommittingTailPartitionsFn(CommittingReadPartitionsFn):
    """:class:`CommittingReadPartitionsFn` for tailing reads: its output is unbounded."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        bundle_finalizer: Any = beam.DoFn.BundleFinalizerParam,
        tracker: Any = beam.DoFn.RestrictionParam(),
        # The DoFn is its own estimator provider: the read's event-time policy.
        watermark_estimator: Any = beam.DoFn.WatermarkEstimatorParam(),
    ) -> Iterator[Any]:
        return self._read_committing(element, bundle_finalizer, tracker, watermark_estimator)


def partitions_fn(
    config: ReadConfig, *, tailing: bool, global_window: bool = False
) -> ReadPartitionsFn:
    """The partition-reading DoFn for ``config``: tailing or not, committing offsets or not."""
    if config.commit_offsets_group is None:
        plain = TailPartitionsFn if tailing else ReadPartitionsFn
        return plain(config, global_window=global_window)
    committing = CommittingTailPartitionsFn if tailing else CommittingReadPartitionsFn
    return committing(config, global_window=global_window)
