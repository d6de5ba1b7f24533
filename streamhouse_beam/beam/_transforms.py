"""``ReadFromStreamHouse`` and ``ReadAllFromStreamHouse``: the public read transforms.

Pipeline shape::

    Impulse ─ topics ─ DiscoverPartitionsFn ─ ReadPartitionsFn (splittable) ─ records
                       (lists the partitions     (reads them; for a tailing read also
                        once)                     discovers the partitions created later)

``ReadAllFromStreamHouse`` starts at the splittable DoFn: its input is a PCollection of
:class:`~streamhouse_beam.beam._descriptors.PartitionDescriptor` (or ``TopicPartition`` /
``(topic, partition)``), so partitions can come from anywhere (a side input, a Kafka-style
assignment, a file).

Every argument is validated when the transform is built, by the settings model
(:mod:`streamhouse_beam.settings`); errors name the argument and value.
Options the pipeline's runner cannot honour are refused when the transform is applied
(:mod:`streamhouse_beam.beam._runner_checks`: ``commit_offsets_group`` on Flink in batch mode).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.transforms.display import DisplayDataItem
from apache_beam.transforms.window import GlobalWindows

from streamhouse_beam.beam._coders import DeadLetterRecord
from streamhouse_beam.beam._descriptors import (
    PartitionDescriptor,
    ReadConfig,
    as_descriptor,
)
from streamhouse_beam.beam._discovery import DiscoverPartitionsFn
from streamhouse_beam.beam._event_time import EventTimePolicy
from streamhouse_beam.beam._outputs import DEAD_LETTER_TAG, element_type
from streamhouse_beam.beam._read_fn import partitions_fn
from streamhouse_beam.beam._runner_checks import check_flink_job_server, check_offset_commits
from streamhouse_beam.positions import StartPosition, StopPosition
from streamhouse_beam.settings import (
    OutputSettings,
    PollSettings,
    ReadOptions,
    ReadSettings,
    SourceSettings,
)

__all__ = [
    "ReadAllFromStreamHouse",
    "ReadFromStreamHouse",
]


def _read_config(settings: ReadSettings) -> ReadConfig:
    """The worker-side view of ``settings``: flat attributes the DoFns read on every poll."""
    source, polling, output = settings.source, settings.polling, settings.output
    if output.output == "batches":
        import streamhouse_beam.beam._batches  # noqa: F401  (registers the batch coder)
    max_poll_records, max_poll_bytes = polling.limits(output.output)
    return ReadConfig(
        metadata_url=source.metadata_url,
        storage_url=source.storage_url,
        organization_id=source.organization_id,
        storage_options=source.storage_options,
        metadata_options=source.metadata_options,
        read_options=settings.reader,
        cache_max_bytes=polling.cache_max_bytes,
        prefetch_workers=polling.prefetch_workers,
        spill_dir=polling.spill_dir,
        max_poll_records=max_poll_records,
        max_poll_bytes=max_poll_bytes,
        max_poll_seconds=polling.max_poll_seconds,
        poll_interval=polling.poll_interval,
        max_delay_seconds=polling.max_delay_seconds,
        partition_discovery_interval=source.partition_discovery_interval,
        decoder=output.decoder,
        output=output.output,
        dead_letter=output.dead_letter,
        commit_offsets_group=source.commit_offsets_group,
        max_records=source.max_records,
        run_id=uuid.uuid4().hex,
        event_time=(
            EventTimePolicy.record_time() if output.event_time is None else output.event_time
        ),
    )


def _topic_list(topics: object) -> list[str]:
    if isinstance(topics, str):
        topics = [topics]
    if not isinstance(topics, Sequence) or not topics:
        raise ValueError(f"topics must be a topic name or a non-empty list, got {topics!r}")
    for topic in topics:
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topics must be non-empty strings, got {topic!r}")
    if len(set(topics)) != len(topics):
        raise ValueError(f"topics lists a topic twice: {list(topics)!r}")
    return list(topics)


def _read(
    descriptors: beam.pvalue.PCollection, config: ReadConfig, label: str, tailing: bool
) -> Any:
    global_window = isinstance(descriptors.windowing.windowfn, GlobalWindows)
    pardo = beam.ParDo(partitions_fn(config, tailing=tailing, global_window=global_window))
    records_type = element_type(config)
    if not config.dead_letter:
        return descriptors | label >> pardo.with_output_types(records_type)
    result = descriptors | label >> pardo.with_outputs(DEAD_LETTER_TAG, main="records")
    result.records.element_type = records_type
    result[DEAD_LETTER_TAG].element_type = DeadLetterRecord
    return result


def _fresh_run(config: ReadConfig) -> ReadConfig:
    # Each application gets its own run id, so a transform object applied in two pipelines
    # (or twice in one) never shares a max_records budget or poll pacing between them.
    return dataclasses.replace(config, run_id=uuid.uuid4().hex)


def _display(config: ReadConfig) -> dict[str, Any]:
    items: dict[str, Any] = {
        k: DisplayDataItem(v, label=k.replace("_", " ")) for k, v in config.display().items()
    }
    items.update(
        max_poll_records=(
            "(no limit)" if config.max_poll_records is None else config.max_poll_records
        ),
        max_poll_bytes="(no limit)" if config.max_poll_bytes is None else config.max_poll_bytes,
        poll_interval=config.poll_interval,
        max_delay_seconds=config.max_delay_seconds,
        event_time=config.event_time.describe(),
        value_decoder=repr(config.decoder),
        output=config.output,
        dead_letter=config.dead_letter,
        cache_max_bytes=config.cache_max_bytes,
        verify_crc=config.read_options.verify_crc,
        on_missing_segment=config.read_options.on_missing_segment,
    )
    if config.commit_offsets_group is not None:
        items["commit_offsets_group"] = config.commit_offsets_group
    if config.max_records is not None:
        items["max_records"] = config.max_records
    return items


class ReadFromStreamHouse(beam.PTransform):  # type: ignore[misc]
    """Read StreamHouse topics: one splittable restriction per partition.

    Every keyword argument is a setting of :mod:`streamhouse_beam.settings`, which states its
    default (the signature shows it) and checks it when the transform is built: a
    ``TypeError`` or ``ValueError`` naming the argument and the value. The checked settings
    are the transform's ``settings`` (a :class:`~streamhouse_beam.settings.ReadSettings`).

    Args:
        topics: a topic name or a list of names.
        metadata_url: the metadata store, ``sqlite:////abs/path.db`` (``sqlite:///rel/path.db``:
            relative to the working directory where the transform is built, as in
            SQLAlchemy) or ``postgresql://…``.
        storage_url: the segment store, ``file:///dir``, ``s3://bucket``, ``gs://bucket`` or
            ``memory://name``. A bucket in the url is the bucket read, whatever the segment
            rows say (a replica, a renamed bucket); only a bucket-less ``s3://`` or ``gs://``
            reads each segment row's bucket. ``None`` means ``s3://`` (StreamHouse's S3 layout,
            AWS settings as usual). A root directory or bucket that does not exist fails the
            read with ``StorageRootNotFoundError``, whatever ``on_missing_segment`` says.
        organization_id: the organization (a str or a ``uuid.UUID``); ``None`` uses the
            store's only organization.
        storage_options: backend options (credentials, endpoint; see ``open_store``). Never shown.
        metadata_options: metadata store options (retry budget, timeouts).
        start: where to start (:class:`StartPosition`).
        stop: where to stop (:class:`StopPosition`); ``None`` tails the topics (unbounded).
        max_records: stop once this many records were emitted (per worker process; exact on
            single-process runners). Ends unbounded reads too.
        max_poll_records: records read per ``process()`` call; each call then checkpoints, so
            this is the bundle granularity. ``None``:
            :data:`~streamhouse_beam.settings.DEFAULT_MAX_POLL_RECORDS` for ``records``,
            ``rows`` and ``kv``, where throughput levels off (every checkpoint costs the runner
            a bundle round trip, about half a millisecond on FnApiRunner, which at 500 took a
            quarter of a read's time; ``benchmarks/results/report.md``), and no record limit
            for ``batches``, which fill up to ``max_poll_bytes`` instead. Lower it for
            finer-grained commits.
        max_poll_bytes: key and value bytes read per ``process()`` call: a call ends with the
            first record that makes its bytes reach this (so it reads at least one record).
            ``None``: :data:`~streamhouse_beam.settings.DEFAULT_MAX_POLL_BYTES` for
            ``batches`` when ``max_poll_records`` is not given either, and no byte limit
            otherwise. Given with ``max_poll_records``, a call ends at whichever limit it
            reaches first. It counts payload only: a batch also holds about 30 bytes of Arrow
            columns per record (offset, timestamp, partition, topic), which matters for tiny
            records only (give ``max_poll_records`` too to bound those).
        max_poll_seconds: a ``process()`` call stops reading (and checkpoints) once it has run
            this long, even below its poll limits (checked between reads of
            ``ReadPartitionsFn.read_chunk_records`` records; a batch is one read).
        poll_interval: seconds between polls of a caught-up partition.
        value_decoder: ``None``/"bytes", "utf-8", "json", an ``AvroDecoder``, a
            ``SchemaRegistryDecoder`` or a callable ``f(bytes) -> object``.
        commit_offsets_group: after each bundle is durably committed, commit the next offset to
            read per partition to this consumer group (never moving it backwards). On Flink
            that happens when a checkpoint completes: it needs ``--streaming`` and
            ``--checkpointing_interval``, and a bounded read in batch mode is refused with
            :class:`~streamhouse_beam.errors.UnsupportedOnRunnerError` when applied.
        output: ``"records"`` (:class:`StreamHouseRecord`), ``"rows"`` (Beam schema
            rows for SQL and YAML) or ``"kv"`` (``(key, value)`` tuples, like ``ReadFromKafka``
            without metadata) or ``"batches"`` (one ``pyarrow.RecordBatch`` per poll, up to
            ``max_poll_bytes`` or ``max_poll_records``, raw bytes values; see
            :mod:`streamhouse_beam.beam._batches`). Event timestamps are the record timestamps
            (a batch's is its largest) unless ``event_time`` says otherwise.
        dead_letter: route undecodable records to a ``dead_letter`` output (then the result has
            ``.records`` and ``.dead_letter``) instead of failing the pipeline.
        max_delay_seconds: an idle, caught-up partition's watermark advances to now minus this.
        event_time: the :class:`EventTimePolicy`: each output's timestamp and how each
            partition's watermark follows them. ``EventTimePolicy.record_time()`` (``None``)
            stamps the record timestamp and holds the watermark at the largest one read, so a
            record older than one read before it in its partition is late (windows without
            allowed lateness drop it): right for server-stamped records.
            ``bounded_out_of_orderness(seconds)`` keeps the watermark that far behind, for
            producers that send their own timestamps; ``processing_time()`` stamps the read's
            wall clock; ``from_record(fn, seconds)`` stamps ``fn(record)`` (e.g. a field of
            the decoded value; not with ``output="batches"``). Every policy keeps the idle
            advance of ``max_delay_seconds`` (processing time: to now). The ``timestamp``
            field of records, rows and dead letters stays the StreamHouse timestamp.
        partition_discovery_interval: seconds between re-listings of the topics' partitions in
            unbounded reads (new partitions are read from their earliest offset); ``None`` or
            ``0`` lists them once.
        cache_max_bytes: the per-worker segment cache budget.
        prefetch_workers: background download threads of the cache (enough to fetch the
            first segments of many partitions in one round trip).
        spill_dir: optional directory the cache spills evicted segments to.
        prefetch_segments: segments fetched ahead of the one being read.
        prefetch_threshold: share of a segment read before the next ones are prefetched.
        verify_crc: verify each segment's CRC-32.
        on_missing_segment: ``"fail"`` (DataLossError) or ``"skip"`` (count and log the range).
        range_reads: read only the needed blocks of a segment the cache does not hold.
    """

    def __init__(
        self,
        topics: str | Sequence[str],
        *,
        metadata_url: str,
        storage_url: str | None = SourceSettings.storage_url,
        organization_id: str | uuid.UUID | None = SourceSettings.organization_id,
        storage_options: Mapping[str, Any] | None = None,
        metadata_options: Mapping[str, Any] | None = None,
        start: StartPosition = SourceSettings.start,
        stop: StopPosition | None = SourceSettings.stop,
        max_records: int | None = SourceSettings.max_records,
        max_poll_records: int | None = PollSettings.max_poll_records,
        max_poll_bytes: int | None = PollSettings.max_poll_bytes,
        max_poll_seconds: float = PollSettings.max_poll_seconds,
        poll_interval: float = PollSettings.poll_interval,
        value_decoder: object = OutputSettings.value_decoder,
        commit_offsets_group: str | None = SourceSettings.commit_offsets_group,
        output: str = OutputSettings.output,
        dead_letter: bool = OutputSettings.dead_letter,
        max_delay_seconds: float = PollSettings.max_delay_seconds,
        partition_discovery_interval: float | None = SourceSettings.partition_discovery_interval,
        cache_max_bytes: int = PollSettings.cache_max_bytes,
        prefetch_workers: int = PollSettings.prefetch_workers,
        spill_dir: str | None = PollSettings.spill_dir,
        prefetch_segments: int = ReadOptions.prefetch_segments,
        prefetch_threshold: float = ReadOptions.prefetch_threshold,
        verify_crc: bool = ReadOptions.verify_crc,
        on_missing_segment: str = ReadOptions.on_missing_segment,
        range_reads: bool = ReadOptions.range_reads,
        event_time: EventTimePolicy | None = OutputSettings.event_time,
    ) -> None:
        # storage_options and metadata_options default to None ("no options"), which the
        # settings keep as their () of frozen items.
        super().__init__()
        self.topics = _topic_list(topics)
        self.settings = ReadSettings.from_arguments(
            {
                "metadata_url": metadata_url,
                "storage_url": storage_url,
                "organization_id": organization_id,
                "storage_options": storage_options,
                "metadata_options": metadata_options,
                "start": start,
                "stop": stop,
                "max_records": max_records,
                "max_poll_records": max_poll_records,
                "max_poll_bytes": max_poll_bytes,
                "max_poll_seconds": max_poll_seconds,
                "poll_interval": poll_interval,
                "value_decoder": value_decoder,
                "commit_offsets_group": commit_offsets_group,
                "output": output,
                "dead_letter": dead_letter,
                "max_delay_seconds": max_delay_seconds,
                "partition_discovery_interval": partition_discovery_interval,
                "cache_max_bytes": cache_max_bytes,
                "prefetch_workers": prefetch_workers,
                "spill_dir": spill_dir,
                "prefetch_segments": prefetch_segments,
                "prefetch_threshold": prefetch_threshold,
                "verify_crc": verify_crc,
                "on_missing_segment": on_missing_segment,
                "range_reads": range_reads,
                "event_time": event_time,
            },
            where=type(self).__name__,
        )
        self.start = self.settings.source.start
        self.stop = self.settings.source.stop
        self.config = _read_config(self.settings)

    def expand(self, pbegin: beam.pvalue.PBegin) -> Any:
        check_offset_commits(
            pbegin.pipeline,
            group=self.config.commit_offsets_group,
            bounded=self.stop is not None,
            where=type(self).__name__,
        )
        check_flink_job_server(
            pbegin.pipeline, unbounded=self.stop is None, where=type(self).__name__
        )
        config = _fresh_run(self.config)
        topics = pbegin | "Topics" >> beam.Create(self.topics, reshuffle=False)
        descriptors = topics | "DiscoverPartitions" >> beam.ParDo(
            DiscoverPartitionsFn(config, self.start, self.stop)
        )
        return _read(descriptors, config, "ReadPartitions", self.stop is None)

    def display_data(self) -> dict[str, Any]:
        items = _display(self.config)
        items["topics"] = ", ".join(self.topics)
        items["start"] = self.start.describe()
        items["stop"] = self.stop.describe() if self.stop is not None else "unbounded"
        return items


class ReadAllFromStreamHouse(beam.PTransform):  # type: ignore[misc]
    """Read the partitions named by the input PCollection.

    Input elements are :class:`PartitionDescriptor` (with their own start and stop), or
    ``TopicPartition`` / ``(topic, partition)`` tuples that use this transform's ``start`` and
    ``stop``. Takes every keyword argument of :class:`ReadFromStreamHouse` except ``topics``
    and ``partition_discovery_interval``.
    """

    def __init__(
        self,
        *,
        metadata_url: str,
        start: StartPosition = SourceSettings.start,
        stop: StopPosition | None = SourceSettings.stop,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if "partition_discovery_interval" in kwargs or "topics" in kwargs:
            raise TypeError(
                "ReadAllFromStreamHouse reads the partitions it is given: topics and "
                "partition_discovery_interval do not apply"
            )
        self.settings = ReadSettings.from_arguments(
            {
                "metadata_url": metadata_url,
                "start": start,
                "stop": stop,
                **kwargs,
                # No partitions are discovered: the input names them.
                "partition_discovery_interval": 0.0,
            },
            where=type(self).__name__,
        )
        self.start = self.settings.source.start
        self.stop = self.settings.source.stop
        self.config = _read_config(self.settings)

    def expand(self, pcoll: beam.pvalue.PCollection) -> Any:
        check_offset_commits(
            pcoll.pipeline,
            group=self.config.commit_offsets_group,
            bounded=self.stop is not None and pcoll.is_bounded,
            where=type(self).__name__,
        )
        check_flink_job_server(
            pcoll.pipeline,
            unbounded=self.stop is None or not pcoll.is_bounded,
            where=type(self).__name__,
        )
        start, stop = self.start, self.stop
        descriptors = pcoll | "ToDescriptors" >> beam.Map(
            lambda element: as_descriptor(element, start, stop)
        ).with_output_types(PartitionDescriptor)
        return _read(descriptors, _fresh_run(self.config), "ReadPartitions", self.stop is None)

    def display_data(self) -> dict[str, Any]:
        items = _display(self.config)
        items["start"] = self.start.describe()
        items["stop"] = self.stop.describe() if self.stop is not None else "unbounded"
        return items
