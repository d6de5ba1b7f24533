"""``ReadFromStreamHouse`` and ``ReadAllFromStreamHouse``: the public read transforms.

Pipeline shape::

    Impulse ─ topics ─ DiscoverPartitionsFn ─ ReadPartitionsFn (splittable) ─ records
                       (lists the partitions     (reads them; for a tailing read also
                        once)                     discovers the partitions created later)

``ReadAllFromStreamHouse`` starts at the splittable DoFn: its input is a PCollection of
:class:`~streamhouse_beam.beam.descriptors.PartitionDescriptor` (or ``TopicPartition`` /
``(topic, partition)``), so partitions can come from anywhere (a side input, a Kafka-style
assignment, a file).

Every argument is validated when the transform is built; errors name the argument and value.
Options the pipeline's runner cannot honour are refused when the transform is applied
(:mod:`streamhouse_beam.beam.runner_checks`: ``commit_offsets_group`` on Flink in batch mode).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.transforms.display import DisplayDataItem
from apache_beam.transforms.window import GlobalWindows

from streamhouse_beam.beam.coders import DeadLetterRecord
from streamhouse_beam.beam.descriptors import (
    PartitionDescriptor,
    ReadConfig,
    as_descriptor,
    options_tuple,
)
from streamhouse_beam.beam.discovery import DiscoverPartitionsFn
from streamhouse_beam.beam.event_time import EventTimePolicy
from streamhouse_beam.beam.outputs import DEAD_LETTER_TAG, element_type
from streamhouse_beam.beam.read_fn import partitions_fn
from streamhouse_beam.beam.runner_checks import check_flink_job_server, check_offset_commits
from streamhouse_beam.cache import DEFAULT_CACHE_BYTES, DEFAULT_PREFETCH_WORKERS
from streamhouse_beam.decoders import make_decoder
from streamhouse_beam.errors import MissingExtraError, redact
from streamhouse_beam.partition_reader import ReadOptions
from streamhouse_beam.poll_limits import (
    DEFAULT_MAX_POLL_BYTES,
    DEFAULT_MAX_POLL_RECORDS,
    poll_limits,
)
from streamhouse_beam.positions import StartPosition, StopPosition

__all__ = [
    "DEFAULT_MAX_POLL_BYTES",
    "DEFAULT_MAX_POLL_RECORDS",
    "OUTPUT_KINDS",
    "ReadAllFromStreamHouse",
    "ReadFromStreamHouse",
]

#: Accepted values of ``output``. A new kind is added here and in
#: :func:`streamhouse_beam.beam.outputs.output_kind`.
OUTPUT_KINDS: tuple[str, ...] = ("records", "rows", "kv", "batches")

#: ``storage_url=None`` reads from S3 with each segment row's bucket and the usual AWS settings.
DEFAULT_STORAGE_URL = "s3://"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def _seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__} {value!r}")
    if value < 0 or (not allow_zero and value == 0) or value != value:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return float(value)


def _build_config(
    *,
    metadata_url: object,
    storage_url: object,
    organization_id: object,
    storage_options: object,
    metadata_options: object,
    max_records: object,
    max_poll_records: object,
    max_poll_seconds: object,
    max_poll_bytes: object = None,
    poll_interval: object,
    value_decoder: object,
    commit_offsets_group: object,
    output: object,
    dead_letter: object,
    max_delay_seconds: object,
    partition_discovery_interval: object,
    cache_max_bytes: object,
    prefetch_workers: object,
    spill_dir: object,
    prefetch_segments: object,
    prefetch_threshold: object,
    verify_crc: object,
    on_missing_segment: object,
    range_reads: object,
    event_time: object = None,
) -> ReadConfig:
    if not isinstance(metadata_url, str) or not metadata_url:
        raise TypeError(f"metadata_url must be a non-empty str, got {redact(repr(metadata_url))}")
    scheme = metadata_url.split(":", 1)[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(
            f"metadata_url must be sqlite:/// or postgresql://, got {redact(metadata_url)!r}"
        )
    if scheme == "sqlite":
        from streamhouse_beam.metadata.sqlite import absolute_sqlite_url

        # Workers may run in another directory: resolve a relative path here, once.
        metadata_url = absolute_sqlite_url(metadata_url)
    if storage_url is None:
        storage_url = DEFAULT_STORAGE_URL
    if not isinstance(storage_url, str) or "://" not in storage_url:
        raise ValueError(
            "storage_url must be a file://, s3://, gs:// or memory:// URL, got "
            f"{redact(repr(storage_url))}"
        )
    if storage_url.split("://", 1)[0].lower() not in ("file", "s3", "gs", "memory"):
        raise ValueError(
            f"storage_url scheme must be file, s3, gs or memory, got {redact(storage_url)!r}"
        )
    if isinstance(organization_id, uuid.UUID):
        organization_id = str(organization_id)  # what psycopg returns for organizations.id
    if organization_id is not None and (
        not isinstance(organization_id, str) or not organization_id
    ):
        raise ValueError(
            f"organization_id must be None, a non-empty str or a uuid.UUID, got {organization_id!r}"
        )
    if max_records is not None:
        max_records = _positive_int("max_records", max_records)
    if commit_offsets_group is not None and (
        not isinstance(commit_offsets_group, str) or not commit_offsets_group
    ):
        raise ValueError(
            f"commit_offsets_group must be None or a non-empty str, got {commit_offsets_group!r}"
        )
    if output not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
    poll_records, poll_bytes = poll_limits(output, max_poll_records, max_poll_bytes)
    if not isinstance(dead_letter, bool):
        raise TypeError(f"dead_letter must be a bool, got {dead_letter!r}")
    decoder = make_decoder(value_decoder)
    if output == "batches":
        if decoder.name != "bytes":
            raise ValueError(
                f"output='batches' carries raw value bytes; value_decoder {decoder!r} cannot "
                "apply (use output='records', or decode the value column downstream)"
            )
        try:
            import streamhouse_beam.beam.batches  # noqa: F401  (registers the batch coder)
        except ImportError as exc:
            raise MissingExtraError("output='batches'", "arrow", module="pyarrow") from exc
    if output == "rows" and decoder.name not in ("bytes", "utf-8"):
        raise ValueError(
            f"output='rows' carries bytes or text values; value_decoder {decoder!r} produces "
            "other objects (use output='records', or decode downstream)"
        )
    if isinstance(cache_max_bytes, bool) or not isinstance(cache_max_bytes, int):
        raise TypeError(f"cache_max_bytes must be an int, got {cache_max_bytes!r}")
    if cache_max_bytes <= 0:
        raise ValueError(f"cache_max_bytes must be > 0, got {cache_max_bytes!r}")
    if isinstance(prefetch_workers, bool) or not isinstance(prefetch_workers, int):
        raise TypeError(f"prefetch_workers must be an int, got {prefetch_workers!r}")
    if prefetch_workers < 0:
        raise ValueError(f"prefetch_workers must be >= 0, got {prefetch_workers!r}")
    if spill_dir is not None and not isinstance(spill_dir, str):
        raise TypeError(f"spill_dir must be None or a str path, got {spill_dir!r}")
    if isinstance(prefetch_segments, bool) or not isinstance(prefetch_segments, int):
        raise TypeError(f"prefetch_segments must be an int, got {prefetch_segments!r}")
    if isinstance(prefetch_threshold, bool) or not isinstance(prefetch_threshold, (int, float)):
        raise TypeError(f"prefetch_threshold must be a number, got {prefetch_threshold!r}")
    if not isinstance(verify_crc, bool):
        raise TypeError(f"verify_crc must be a bool, got {verify_crc!r}")
    if not isinstance(range_reads, bool):
        raise TypeError(f"range_reads must be a bool, got {range_reads!r}")
    if event_time is None:
        event_time = EventTimePolicy.record_time()
    if not isinstance(event_time, EventTimePolicy):
        raise TypeError(
            "event_time must be an EventTimePolicy (EventTimePolicy.record_time(), "
            ".bounded_out_of_orderness(seconds), .processing_time() or .from_record(fn, "
            f"seconds)), got {type(event_time).__name__} {event_time!r}"
        )
    if event_time.kind == "timestamp_fn" and output == "batches":
        raise ValueError(
            "event_time=EventTimePolicy.from_record(...) stamps each record, but "
            "output='batches' emits one element per poll: use output='records', 'rows' or "
            "'kv', or bounded_out_of_orderness / processing_time with batches"
        )
    read_options = ReadOptions(
        verify_crc=verify_crc,
        prefetch_threshold=float(prefetch_threshold),
        prefetch_segments=prefetch_segments,
        on_missing_segment=on_missing_segment,  # type: ignore[arg-type]
        range_reads=range_reads,
    )
    # Open (without connecting) so bad URLs and options fail now, not on the workers.
    from streamhouse_beam.metadata import open_metadata
    from streamhouse_beam.storage import open_store

    meta_opts = options_tuple("metadata_options", metadata_options)  # type: ignore[arg-type]
    store_opts = options_tuple("storage_options", storage_options)  # type: ignore[arg-type]
    open_metadata(metadata_url, organization_id, **dict(meta_opts))  # type: ignore[arg-type]
    open_store(storage_url, dict(store_opts))
    return ReadConfig(
        metadata_url=metadata_url,
        storage_url=storage_url,
        organization_id=organization_id,  # type: ignore[arg-type]
        storage_options=store_opts,
        metadata_options=meta_opts,
        read_options=read_options,
        cache_max_bytes=cache_max_bytes,
        prefetch_workers=prefetch_workers,
        spill_dir=spill_dir,
        max_poll_records=poll_records,
        max_poll_bytes=poll_bytes,
        max_poll_seconds=_seconds("max_poll_seconds", max_poll_seconds, allow_zero=False),
        poll_interval=_seconds("poll_interval", poll_interval),
        max_delay_seconds=_seconds("max_delay_seconds", max_delay_seconds),
        partition_discovery_interval=_seconds(
            "partition_discovery_interval",
            0.0 if partition_discovery_interval is None else partition_discovery_interval,
        ),
        decoder=decoder,
        output=output,  # type: ignore[arg-type]
        dead_letter=dead_letter,
        commit_offsets_group=commit_offsets_group,  # type: ignore[arg-type]
        max_records=max_records,  # type: ignore[arg-type]
        run_id=uuid.uuid4().hex,
        event_time=event_time,
    )


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
        start: where to start (:class:`StartPosition`), earliest by default.
        stop: where to stop (:class:`StopPosition`); ``None`` tails the topics (unbounded).
        max_records: stop once this many records were emitted (per worker process; exact on
            single-process runners). Ends unbounded reads too.
        max_poll_records: records read per ``process()`` call; each call then checkpoints, so
            this is the bundle granularity. ``None`` (the default): 5000
            (:data:`DEFAULT_MAX_POLL_RECORDS`) for ``records``, ``rows`` and ``kv``, where
            throughput levels off (every checkpoint costs the runner a bundle round trip,
            about half a millisecond on FnApiRunner, which at 500 took a quarter of a read's
            time; ``benchmarks/results/report.md``), and no record limit for ``batches``,
            which fill up to ``max_poll_bytes`` instead. Lower it for finer-grained commits.
        max_poll_bytes: key and value bytes read per ``process()`` call: a call ends with the
            first record that makes its bytes reach this (so it reads at least one record).
            ``None`` (the default): 8 MiB (:data:`DEFAULT_MAX_POLL_BYTES`) for ``batches``
            when ``max_poll_records`` is not given either, and no byte limit otherwise. Given
            with ``max_poll_records``, a call ends at whichever limit it reaches first. It
            counts payload only: a batch also holds about 30 bytes of Arrow columns per record
            (offset, timestamp, partition, topic), which matters for tiny records only (give
            ``max_poll_records`` too to bound those).
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
        output: ``"records"`` (:class:`StreamHouseRecord`, the default), ``"rows"`` (Beam schema
            rows for SQL and YAML) or ``"kv"`` (``(key, value)`` tuples, like ``ReadFromKafka``
            without metadata) or ``"batches"`` (one ``pyarrow.RecordBatch`` per poll, up to
            ``max_poll_bytes`` or ``max_poll_records``, raw bytes values; see
            :mod:`streamhouse_beam.beam.batches`). Event timestamps are the record timestamps
            (a batch's is its largest) unless ``event_time`` says otherwise.
        dead_letter: route undecodable records to a ``dead_letter`` output (then the result has
            ``.records`` and ``.dead_letter``) instead of failing the pipeline.
        max_delay_seconds: an idle, caught-up partition's watermark advances to now minus this.
        event_time: the :class:`EventTimePolicy`: each output's timestamp and how each
            partition's watermark follows them. ``EventTimePolicy.record_time()`` (the default)
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
        prefetch_workers: background download threads of the cache (16: enough to fetch the
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
        storage_url: str | None = None,
        organization_id: str | uuid.UUID | None = None,
        storage_options: Mapping[str, Any] | None = None,
        metadata_options: Mapping[str, Any] | None = None,
        start: StartPosition = StartPosition.earliest(),
        stop: StopPosition | None = None,
        max_records: int | None = None,
        max_poll_records: int | None = None,
        max_poll_bytes: int | None = None,
        max_poll_seconds: float = 10.0,
        poll_interval: float = 1.0,
        value_decoder: object = None,
        commit_offsets_group: str | None = None,
        output: str = "records",
        dead_letter: bool = False,
        max_delay_seconds: float = 60.0,
        partition_discovery_interval: float | None = 30.0,
        cache_max_bytes: int = DEFAULT_CACHE_BYTES,
        prefetch_workers: int = DEFAULT_PREFETCH_WORKERS,
        spill_dir: str | None = None,
        prefetch_segments: int = 2,
        prefetch_threshold: float = 0.8,
        verify_crc: bool = True,
        on_missing_segment: str = "fail",
        range_reads: bool = False,
        event_time: EventTimePolicy | None = None,
    ) -> None:
        super().__init__()
        if isinstance(topics, str):
            topics = [topics]
        if not isinstance(topics, Sequence) or not topics:
            raise ValueError(f"topics must be a topic name or a non-empty list, got {topics!r}")
        for topic in topics:
            if not isinstance(topic, str) or not topic:
                raise ValueError(f"topics must be non-empty strings, got {topic!r}")
        if len(set(topics)) != len(topics):
            raise ValueError(f"topics lists a topic twice: {list(topics)!r}")
        if not isinstance(start, StartPosition):
            raise TypeError(f"start must be a StartPosition, got {type(start).__name__}")
        if stop is not None and not isinstance(stop, StopPosition):
            raise TypeError(f"stop must be a StopPosition or None, got {type(stop).__name__}")
        self.topics = list(topics)
        self.start = start
        self.stop = stop
        self.config = _build_config(
            metadata_url=metadata_url,
            storage_url=storage_url,
            organization_id=organization_id,
            storage_options=storage_options,
            metadata_options=metadata_options,
            max_records=max_records,
            max_poll_records=max_poll_records,
            max_poll_bytes=max_poll_bytes,
            max_poll_seconds=max_poll_seconds,
            poll_interval=poll_interval,
            value_decoder=value_decoder,
            commit_offsets_group=commit_offsets_group,
            output=output,
            dead_letter=dead_letter,
            max_delay_seconds=max_delay_seconds,
            partition_discovery_interval=partition_discovery_interval,
            cache_max_bytes=cache_max_bytes,
            prefetch_workers=prefetch_workers,
            spill_dir=spill_dir,
            prefetch_segments=prefetch_segments,
            prefetch_threshold=prefetch_threshold,
            verify_crc=verify_crc,
            on_missing_segment=on_missing_segment,
            range_reads=range_reads,
            event_time=event_time,
        )

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
        start: StartPosition = StartPosition.earliest(),
        stop: StopPosition | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(start, StartPosition):
            raise TypeError(f"start must be a StartPosition, got {type(start).__name__}")
        if stop is not None and not isinstance(stop, StopPosition):
            raise TypeError(f"stop must be a StopPosition or None, got {type(stop).__name__}")
        if "partition_discovery_interval" in kwargs or "topics" in kwargs:
            raise TypeError(
                "ReadAllFromStreamHouse reads the partitions it is given: topics and "
                "partition_discovery_interval do not apply"
            )
        defaults: dict[str, Any] = {
            "storage_url": None,
            "organization_id": None,
            "storage_options": None,
            "metadata_options": None,
            "max_records": None,
            "max_poll_records": None,
            "max_poll_bytes": None,
            "max_poll_seconds": 10.0,
            "poll_interval": 1.0,
            "value_decoder": None,
            "commit_offsets_group": None,
            "output": "records",
            "dead_letter": False,
            "max_delay_seconds": 60.0,
            "cache_max_bytes": DEFAULT_CACHE_BYTES,
            "prefetch_workers": DEFAULT_PREFETCH_WORKERS,
            "spill_dir": None,
            "prefetch_segments": 2,
            "prefetch_threshold": 0.8,
            "verify_crc": True,
            "on_missing_segment": "fail",
            "range_reads": False,
            "event_time": None,
        }
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            raise TypeError(f"ReadAllFromStreamHouse got unexpected arguments {unknown}")
        defaults.update(kwargs)
        self.start = start
        self.stop = stop
        self.config = _build_config(
            metadata_url=metadata_url, partition_discovery_interval=0.0, **defaults
        )

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
