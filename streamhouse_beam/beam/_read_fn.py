"""The splittable DoFn that reads StreamHouse partitions: a shell over two sources and a poll.

:class:`ReadPartitionsFn` is its own :class:`~apache_beam.transforms.core.RestrictionProvider`
(as Beam's ``io/watch.py``) and its own watermark estimator provider. It takes two kinds of
element, each read by a :class:`~streamhouse_beam.beam._source.Source` that owns its
restriction, tracker, size, drain and poll loop:

* a :class:`~streamhouse_beam.beam._descriptors.PartitionDescriptor`, one partition's range:
  :class:`~streamhouse_beam.beam._partitions.PartitionSource`;
* a :class:`~streamhouse_beam.beam._discovery.NewPartitionsDescriptor`, the partitions of a
  topic created while a tailing read runs:
  :class:`~streamhouse_beam.beam._discovery.NewPartitionsSource`. Discovery is part of the
  read's stage rather than a watching stage upstream of it because runners such as FnApiRunner
  start a stage only once its upstream stages are finished, which a watcher never is.

Every restriction-provider hook and ``process()`` hands its element or restriction to that
source (:meth:`ReadPartitionsFn._source`, the one place the two kinds are told apart). A
source reads through a :class:`~streamhouse_beam.beam._poll.Poll` the DoFn makes for each
``process()`` call, whose chunks all go out through one method
(:meth:`~streamhouse_beam.beam._poll.Chunk.emit`), in the output kind the config chose once
(:mod:`streamhouse_beam.beam._outputs`).

The rest of this module is the worker's side, which the sources use through the
:class:`~streamhouse_beam.beam._source.Worker` interface: readers and shared resources, the
record budget, metrics, the first call of each bundle handing the first segment of every other
partition this worker has planned to the segment cache's background prefetch (one round trip
for all of them instead of one per partition), and the book-keeping kept between calls
(positions, idle pacing, offset commits).

With ``commit_offsets_group`` the read uses :class:`CommittingReadPartitionsFn`: each call
registers a bundle-finalization callback that commits the next offset to read for its
partition once the runner has durably committed the bundle. Without it the DoFn does not ask
for bundle finalization at all (:func:`partitions_fn` picks the class).

:class:`TailPartitionsFn` is the same DoFn marked ``unbounded_per_element`` (tailing reads make
the output PCollection unbounded, which puts Dataflow in streaming mode), and
:class:`CommittingTailPartitionsFn` its committing counterpart.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.iobase import RestrictionTracker, WatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.utils.timestamp import Timestamp

from streamhouse_beam.beam._coders import DeterministicCoder
from streamhouse_beam.beam._descriptors import (
    PartitionDescriptor,
    ReadConfig,
)
from streamhouse_beam.beam._discovery import (
    NewPartitionsDescriptor,
    NewPartitionsRestriction,
    NewPartitionsRestrictionCoder,
    NewPartitionsSource,
)
from streamhouse_beam.beam._outputs import OutputKind, output_kind
from streamhouse_beam.beam._partitions import PartitionSource
from streamhouse_beam.beam._poll import Cursor, Poll
from streamhouse_beam.beam._restriction import (
    PartitionRestriction,
    PartitionRestrictionCoder,
    restriction_kind,
)
from streamhouse_beam.beam._source import Source
from streamhouse_beam.beam._watermark import (
    PartitionWatermarkEstimatorProvider,
    WatermarkStateCoder,
)
from streamhouse_beam.beam._worker_state import (
    RecordBudget,
    RunLease,
    WorkerResources,
    new_retries,
    run_state,
)
from streamhouse_beam.partition_reader import PartitionReader, ReadBatch
from streamhouse_beam.records import TopicPartition

__all__ = [
    "CommittingReadPartitionsFn",
    "CommittingTailPartitionsFn",
    "ReadPartitionsFn",
    "TailPartitionsFn",
    "partitions_fn",
]

_LOG = logging.getLogger(__name__)

#: The metrics namespace.
NAMESPACE = "streamhouse"
#: At most this many other partitions get their first segment prefetched at a bundle's start.
_BUNDLE_PREFETCH_PARTITIONS = 64
#: The read's counters (the backlog gauges are per partition).
_COUNTERS = (
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

# What the DoFns remember between calls (poll pacing, read positions, the max_records budget,
# committed offsets) lives in beam/_worker_state.py, per transform run and worker process, with
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


class _Committer:
    """Bundle-finalization callback committing one partition's next offset (never regressing)."""

    def __init__(self, resources: WorkerResources, group: str, tp: TopicPartition, offset: int):
        self.resources = resources
        self.group = group
        self.tp = tp
        self.offset = offset

    def __call__(self) -> None:
        self.resources.commit_offset(self.group, self.tp, self.offset)


class _RestrictionCoder(DeterministicCoder):
    """Both restriction kinds of the read's DoFn; the kind byte of an encoding picks its layout.

    The layouts are :class:`~streamhouse_beam.beam._restriction.PartitionRestrictionCoder`'s
    (kind 0) and :class:`~streamhouse_beam.beam._discovery.NewPartitionsRestrictionCoder`'s
    (kind 1), behind one version byte.
    """

    def __init__(self) -> None:
        self._partition = PartitionRestrictionCoder()
        self._new_partitions = NewPartitionsRestrictionCoder()

    def encode(self, value: PartitionRestriction | NewPartitionsRestriction) -> bytes:
        if isinstance(value, NewPartitionsRestriction):
            return self._new_partitions.encode(value)
        return self._partition.encode(value)

    def decode(self, encoded: bytes) -> PartitionRestriction | NewPartitionsRestriction:
        if restriction_kind(encoded) == NewPartitionsRestrictionCoder.KIND:
            return self._new_partitions.decode(encoded)
        return self._partition.decode(encoded)


class ReadPartitionsFn(beam.DoFn, RestrictionProvider, WatermarkEstimatorProvider):  # type: ignore[misc]
    """Reads partition ranges and discovers new partitions; see the module docstring.

    It is its own watermark estimator provider too (a
    :class:`PartitionWatermarkEstimatorProvider` of the config's event-time policy), because
    the policy decides how each restriction's watermark is seeded and bounded.

    Args:
        config: the validated read configuration.
        global_window: the descriptors are in the global window.
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
        self._budget: RecordBudget | None = None
        self._bundle_prefetched = False
        self._metrics: dict[str, Any] | None = None
        self._kind: OutputKind | None = None
        self._gauges: dict[TopicPartition, Any] = {}
        self._partitions = PartitionSource(self)
        self._new_partitions = NewPartitionsSource(self)

    def __getstate__(self) -> dict[str, Any]:
        # Clients, readers, locks and metric handles are rebuilt lazily after unpickling.
        return {"config": self.config, "global_window": self.global_window}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self.global_window = state.get("global_window", False)
        self._reset()

    def _source(self, element_or_restriction: object) -> Source:
        """The source of an element or restriction: discovery's, or a partition's."""
        if isinstance(element_or_restriction, (NewPartitionsDescriptor, NewPartitionsRestriction)):
            return self._new_partitions
        return self._partitions

    # ------------------------------------------------------------------ RestrictionProvider

    def initial_restriction(
        self, element: PartitionDescriptor | NewPartitionsDescriptor
    ) -> PartitionRestriction | NewPartitionsRestriction:
        return self._source(element).initial_restriction(element)  # type: ignore[no-any-return]

    def create_tracker(
        self, restriction: PartitionRestriction | NewPartitionsRestriction
    ) -> RestrictionTracker:
        return self._source(restriction).create_tracker(restriction)

    def split(
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        restriction: PartitionRestriction | NewPartitionsRestriction,
    ) -> Iterator[PartitionRestriction | NewPartitionsRestriction]:
        # One restriction per element; runners split big bounded ranges dynamically.
        yield restriction

    def restriction_size(
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        restriction: PartitionRestriction | NewPartitionsRestriction,
    ) -> float:
        return self._source(element).restriction_size(element, restriction)

    def truncate(
        self,
        element: PartitionDescriptor | NewPartitionsDescriptor,
        restriction: PartitionRestriction | NewPartitionsRestriction,
    ) -> PartitionRestriction | NewPartitionsRestriction | None:
        return self._source(element).truncate(element, restriction)  # type: ignore[no-any-return]

    def restriction_coder(self) -> _RestrictionCoder:
        return _RestrictionCoder()

    # ------------------------------------------------------------------ WatermarkEstimatorProvider

    def initial_estimator_state(self, element: Any, restriction: Any) -> Timestamp:
        return self._watermarks.initial_estimator_state(element, restriction)

    def create_watermark_estimator(self, estimator_state: Timestamp) -> WatermarkEstimator:
        return self._watermarks.create_watermark_estimator(estimator_state)

    def estimator_state_coder(self) -> WatermarkStateCoder:
        return self._watermarks.estimator_state_coder()

    # ------------------------------------------------------------------ process

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
        return self._source(element).process(
            element, bundle_finalizer, tracker, watermark_estimator
        )

    # ------------------------------------------------------------------ DoFn lifecycle

    def setup(self) -> None:
        self._res()
        self._metrics = {name: Metrics.counter(NAMESPACE, name) for name in _COUNTERS}
        self._kind = output_kind(
            self.config, global_window=self.global_window, metrics=self._metrics
        )

    def start_bundle(self) -> None:
        self._bundle_prefetched = False

    def teardown(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self._partitions.close()
        if self._lease is not None:
            # The run's state and the resources go once no instance of the run holds them.
            self._lease.release()
            self._lease = None

    # ------------------------------------------------------------------ the Worker interface

    def _res(self) -> WorkerResources:
        lease = self._lease
        if lease is None or lease.stale:
            if lease is not None:
                # Forked since: the readers hold the parent's clients and cache.
                self._readers.clear()
                self._partitions.forget_readers()
            lease = self._lease = RunLease(self.config)
            self._budget = lease.budget
        return lease.resources

    def resources(self) -> WorkerResources:
        return self._res()

    def budget(self) -> RecordBudget | None:
        self._res()
        return self._budget

    def new_reader(self, tp: TopicPartition) -> PartitionReader:
        res = self._res()
        return PartitionReader(
            res.metadata, res.store, res.cache, tp.topic, tp.partition, self.config.read_options
        )

    def reader(self, tp: TopicPartition) -> PartitionReader:
        reader = self._readers.get(tp)
        if reader is None:
            reader = self._readers[tp] = self.new_reader(tp)
        return reader

    def poll(self, tracker: Any, watermark_estimator: Any) -> Poll:
        if self._kind is None:  # process() before setup(): only where tests drive the DoFn
            self._kind = output_kind(self.config, global_window=self.global_window)
        return Poll(
            self._kind,
            self.config,
            self.budget(),
            watermark_estimator,
            self._count,
            self._metrics,
            self.read_chunk_records,
            self._watermarks.idle_delay(self.config.max_delay_seconds),
        )

    def prefetch_bundle(self, tp: TopicPartition) -> None:
        if not self._bundle_prefetched:
            self._prefetch_bundle(tp)

    def _prefetch_bundle(self, current: TopicPartition) -> None:
        """Prefetch the first segment of every other partition this worker knows about."""
        self._bundle_prefetched = True
        positions = run_state(self.config.run_id).positions()
        positions.pop(current, None)
        items = []
        for tp, offset in list(positions.items())[:_BUNDLE_PREFETCH_PARTITIONS]:
            try:
                item = self.reader(tp).first_segment_fetch(offset)
            except Exception as exc:  # a failure here resurfaces, named, on the real read
                _LOG.debug("first-segment prefetch of %s skipped: %s", tp, exc)
                continue
            if item is not None:
                items.append(item)
        if items:
            self._res().cache.prefetch(items)

    def pace(self, key: tuple[str, Hashable]) -> None:
        _pace(key, self.config.poll_interval)

    def note_caught_up(self, key: tuple[str, Hashable], caught_up: bool) -> None:
        _note_empty_poll(key, caught_up)

    def listing_due(self, topic: str) -> bool:
        return _listing_due(self.config.run_id, topic, self.config.partition_discovery_interval)

    def note_position(self, tp: TopicPartition, offset: int) -> None:
        _note_position(self.config.run_id, tp, offset)

    def note_progress(self, cursor: Cursor, bundle_finalizer: Any) -> None:
        position = cursor.position
        _note_position(self.config.run_id, cursor.tp, position)
        self._gauge(cursor.tp).set(max(0, cursor.readable_end - position))
        group = self.config.commit_offsets_group
        if group is not None and cursor.last_done is not None:
            bundle_finalizer.register(_Committer(self._res(), group, cursor.tp, position))

    def _gauge(self, tp: TopicPartition) -> Any:
        gauge = self._gauges.get(tp)
        if gauge is None:
            gauge = self._gauges[tp] = Metrics.gauge(
                NAMESPACE, f"backlog_records/{tp.topic}/{tp.partition}"
            )
        return gauge

    def _count(self, batch: ReadBatch[Any]) -> None:
        """Count one read: the poll, its bytes, cache use, lost ranges and the stores' retries."""
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
