"""Every setting of a read, its default and its check, stated once.

``ReadFromStreamHouse``, ``ReadAllFromStreamHouse``, the ``streamhouse-beam read`` command and
the Beam YAML provider all build their read from these frozen dataclasses: the transforms'
keyword arguments take their defaults from the fields below, the command line and the YAML
provider pass on only what they were given, and every value is checked here, when the settings
are built, with a ``TypeError`` or ``ValueError`` that names the setting and the value.

Each setting is one keyword argument of the transforms, in one of four groups:

- :class:`SourceSettings`: where the records come from and which: the metadata and segment
  stores and their options, the organization, ``start``, ``stop``, ``max_records``,
  ``commit_offsets_group``, partition discovery;
- :class:`PollSettings`: how each worker reads: the size and duration of one poll, the pace
  of caught-up partitions, the idle watermark advance, the per-worker segment cache;
- :class:`OutputSettings`: what comes out: the output kind, the value decoder, dead letters,
  the event-time policy;
- :class:`~streamhouse_beam.partition_reader.ReadOptions` (the partition reader's own
  settings, re-exported here): how segments are read: CRC checks, prefetch, range reads,
  missing objects.

:class:`ReadSettings` holds one of each and sorts keyword arguments into them
(:meth:`ReadSettings.from_arguments`). Topics are not a setting: ``ReadFromStreamHouse`` takes
them as its first argument and ``ReadAllFromStreamHouse`` reads the partitions it is given.

How much one poll reads: it ends at the first limit it reaches, ``max_poll_records`` records,
``max_poll_bytes`` key and value bytes (with the record that reaches them),
``max_poll_seconds``, the range's stop or the readable end. When neither count limit is
given, ``output="batches"`` fills each batch up to :data:`DEFAULT_MAX_POLL_BYTES` (a batch is
one element: the fewer elements and checkpoints per record, the faster) and the per-record
outputs read :data:`DEFAULT_MAX_POLL_RECORDS` records (beyond which their per-element cost
dominates and larger polls gain nothing; ``benchmarks/results/report.md`` has both sweeps).

This module does not import Apache Beam: the command line reads its defaults without paying
for it. An :class:`~streamhouse_beam.beam._event_time.EventTimePolicy` (a Beam-side class) is
checked only when one is given.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from streamhouse_beam.cache import DEFAULT_CACHE_BYTES, DEFAULT_PREFETCH_WORKERS
from streamhouse_beam.decoders import ValueDecoder, make_decoder
from streamhouse_beam.errors import MissingExtraError, redact
from streamhouse_beam.partition_reader import ReadOptions
from streamhouse_beam.positions import StartPosition, StopPosition

if TYPE_CHECKING:
    from streamhouse_beam.beam._event_time import EventTimePolicy

__all__ = [
    "DEFAULT_MAX_POLL_BYTES",
    "DEFAULT_MAX_POLL_RECORDS",
    "OUTPUT_KINDS",
    "OutputSettings",
    "PollSettings",
    "ReadOptions",
    "ReadSettings",
    "SourceSettings",
]

#: Records per poll of ``output="records"``, ``"rows"`` and ``"kv"`` when neither
#: ``max_poll_records`` nor ``max_poll_bytes`` is given.
DEFAULT_MAX_POLL_RECORDS = 5000

#: Key and value bytes per poll of ``output="batches"`` when neither ``max_poll_records`` nor
#: ``max_poll_bytes`` is given.
DEFAULT_MAX_POLL_BYTES = 8 * 1024 * 1024

#: The values of ``output``.
OUTPUT_KINDS: tuple[str, ...] = ("records", "rows", "kv", "batches")

#: Backend options, frozen: sorted ``(name, value)`` items, so settings hash and compare.
Options = tuple[tuple[str, Any], ...]

#: What ``value_decoder`` accepts: a name (``"bytes"``, ``"utf-8"``, ``"json"``), a
#: :class:`~streamhouse_beam.decoders.ValueDecoder`, a callable ``f(bytes) -> object``, or
#: ``None`` (bytes).
DecoderSpec = str | ValueDecoder | Callable[[bytes], object] | None

_METADATA_SCHEMES = ("sqlite", "postgresql", "postgres")
_STORAGE_SCHEMES = ("file", "s3", "gs", "memory")


def _check_int(name: str, value: object, *, minimum: int = 1, optional: bool = False) -> None:
    """Check an int setting (``None`` too when ``optional``) is at least ``minimum``."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "None or an int" if optional else "an int"
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if value < minimum:
        bound = "> 0" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def _seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__} {value!r}")
    if value < 0 or (not allow_zero and value == 0) or math.isnan(value):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return float(value)


def _check_optional_name(name: str, value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{name} must be None or a non-empty str, got {value!r}")


def _options(name: str, options: object) -> Options:
    """A mapping argument checked and frozen (sorted items); ``None`` is no options."""
    if options is None:
        return ()
    if isinstance(options, tuple):
        # Already frozen: settings rebuilt from their own fields (dataclasses.replace).
        try:
            options = dict(options)
        except (TypeError, ValueError):
            # Never the value: options hold credentials.
            raise TypeError(f"{name} must be a mapping of names to values") from None
    if not isinstance(options, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(options).__name__}")
    for key in options:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be str, got {key!r}")
    return tuple(sorted(options.items()))


def _set(settings: object, name: str, value: object) -> None:
    # The settings are frozen; their own checks store the normalized value once, at creation.
    object.__setattr__(settings, name, value)


@dataclasses.dataclass(frozen=True)
class SourceSettings:
    """Where the records come from, and which of them are read.

    Attributes:
        metadata_url: the metadata store, ``sqlite:////abs/path.db`` (``sqlite:///rel/path.db``:
            relative to the working directory where the settings are built, as in SQLAlchemy;
            kept absolute) or ``postgresql://…``.
        storage_url: the segment store, ``file:///dir``, ``s3://bucket``, ``gs://bucket`` or
            ``memory://name``. A bucket in the url is the bucket read, whatever the segment
            rows say; only a bucket-less ``s3://`` or ``gs://`` reads each segment row's bucket.
            The default ``s3://`` is StreamHouse's S3 layout with the usual AWS settings
            (``None`` means it too).
        organization_id: the organization (a str, or a ``uuid.UUID`` kept as its str); ``None``
            uses the store's only organization.
        storage_options: backend options (credentials, endpoint; see ``open_store``), given as
            a mapping and kept as sorted items. Never shown.
        metadata_options: metadata store options (retry budget, timeouts), likewise.
        start: where to start (:class:`~streamhouse_beam.positions.StartPosition`).
        stop: where to stop (:class:`~streamhouse_beam.positions.StopPosition`); ``None``
            tails the topics (an unbounded read).
        max_records: stop once this many records were emitted (per worker process; exact on
            single-process runners). Ends unbounded reads too.
        commit_offsets_group: commit the next offset to read per partition to this consumer
            group after each bundle is durably committed.
        partition_discovery_interval: seconds between re-listings of the topics' partitions in
            unbounded reads; ``0`` (or ``None``) lists them once.

    The stores are opened (without connecting) when the settings are built, so a bad URL, an
    unknown option or a missing extra fails here rather than on the workers.
    """

    metadata_url: str
    storage_url: str = "s3://"
    organization_id: str | None = None
    storage_options: Options = ()
    metadata_options: Options = ()
    start: StartPosition = StartPosition.earliest()  # noqa: RUF009 - frozen value
    stop: StopPosition | None = None
    max_records: int | None = None
    commit_offsets_group: str | None = None
    partition_discovery_interval: float = 30.0

    def __post_init__(self) -> None:
        url: object = self.metadata_url
        if not isinstance(url, str) or not url:
            raise TypeError(f"metadata_url must be a non-empty str, got {redact(repr(url))}")
        scheme = url.split(":", 1)[0].lower()
        if scheme not in _METADATA_SCHEMES:
            raise ValueError(
                f"metadata_url must be sqlite:/// or postgresql://, got {redact(url)!r}"
            )
        if scheme == "sqlite":
            from streamhouse_beam.metadata.sqlite import absolute_sqlite_url

            # Workers may run in another directory: resolve a relative path here, once.
            _set(self, "metadata_url", absolute_sqlite_url(url))
        storage: object = self.storage_url
        if storage is None:
            storage = type(self).storage_url
            _set(self, "storage_url", storage)
        if not isinstance(storage, str) or "://" not in storage:
            raise ValueError(
                "storage_url must be a file://, s3://, gs:// or memory:// URL, got "
                f"{redact(repr(storage))}"
            )
        if storage.split("://", 1)[0].lower() not in _STORAGE_SCHEMES:
            raise ValueError(
                f"storage_url scheme must be file, s3, gs or memory, got {redact(storage)!r}"
            )
        organization: object = self.organization_id
        if isinstance(organization, uuid.UUID):
            # What psycopg returns for organizations.id.
            organization = str(organization)
            _set(self, "organization_id", organization)
        if organization is not None and (not isinstance(organization, str) or not organization):
            raise ValueError(
                f"organization_id must be None, a non-empty str or a uuid.UUID, got {organization!r}"
            )
        _set(self, "storage_options", _options("storage_options", self.storage_options))
        _set(self, "metadata_options", _options("metadata_options", self.metadata_options))
        if not isinstance(self.start, StartPosition):
            raise TypeError(f"start must be a StartPosition, got {type(self.start).__name__}")
        if self.stop is not None and not isinstance(self.stop, StopPosition):
            raise TypeError(f"stop must be a StopPosition or None, got {type(self.stop).__name__}")
        if self.max_records is not None:
            _check_int("max_records", self.max_records)
        _check_optional_name("commit_offsets_group", self.commit_offsets_group)
        interval: object = self.partition_discovery_interval
        _set(
            self,
            "partition_discovery_interval",
            _seconds("partition_discovery_interval", 0.0 if interval is None else interval),
        )
        # Open (without connecting) so bad URLs, options and missing extras fail now.
        from streamhouse_beam.metadata import open_metadata
        from streamhouse_beam.storage import open_store

        open_metadata(self.metadata_url, self.organization_id, **dict(self.metadata_options))
        open_store(self.storage_url, dict(self.storage_options))

    def __repr__(self) -> str:
        # The generated repr would print option values (credentials) and the metadata URL's
        # password into tracebacks and logs: URLs redacted, options by name only.
        shown = {
            "metadata_url": redact(self.metadata_url),
            "storage_url": redact(self.storage_url),
            "organization_id": self.organization_id,
            "storage_options": [name for name, _ in self.storage_options],
            "metadata_options": [name for name, _ in self.metadata_options],
            "start": self.start,
            "stop": self.stop,
            "max_records": self.max_records,
            "commit_offsets_group": self.commit_offsets_group,
            "partition_discovery_interval": self.partition_discovery_interval,
        }
        return f"SourceSettings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


@dataclasses.dataclass(frozen=True)
class PollSettings:
    """How each worker reads: one poll's size and duration, pacing, and the segment cache.

    Attributes:
        max_poll_records: records read per ``process()`` call (a poll), which then checkpoints:
            the bundle granularity. ``None``: :data:`DEFAULT_MAX_POLL_RECORDS` for the
            per-record outputs when ``max_poll_bytes`` is not given either, else no record
            limit (see :meth:`limits`). Lower it for finer-grained commits.
        max_poll_bytes: key and value bytes read per poll: a poll ends with the first record
            that makes its bytes reach this (so it reads at least one record). ``None``:
            :data:`DEFAULT_MAX_POLL_BYTES` for ``output="batches"`` when ``max_poll_records``
            is not given either, else no byte limit. Given with ``max_poll_records``, a poll
            ends at whichever limit it reaches first. It counts payload only: a batch also
            holds about 30 bytes of Arrow columns per record.
        max_poll_seconds: a poll stops reading (and checkpoints) once it has run this long,
            even below its limits (``> 0``).
        poll_interval: seconds between polls of a caught-up partition (``>= 0``).
        max_delay_seconds: an idle, caught-up partition's watermark advances to now minus
            this (``>= 0``).
        cache_max_bytes: the per-worker segment cache budget.
        prefetch_workers: background download threads of the cache (enough to fetch the first
            segments of many partitions in one round trip).
        spill_dir: a directory the cache spills evicted segments to; ``None``: no spilling.
    """

    max_poll_records: int | None = None
    max_poll_bytes: int | None = None
    max_poll_seconds: float = 10.0
    poll_interval: float = 1.0
    max_delay_seconds: float = 60.0
    cache_max_bytes: int = DEFAULT_CACHE_BYTES
    prefetch_workers: int = DEFAULT_PREFETCH_WORKERS
    spill_dir: str | None = None

    def __post_init__(self) -> None:
        _check_int("max_poll_records", self.max_poll_records, optional=True)
        _check_int("max_poll_bytes", self.max_poll_bytes, optional=True)
        _set(
            self,
            "max_poll_seconds",
            _seconds("max_poll_seconds", self.max_poll_seconds, allow_zero=False),
        )
        _set(self, "poll_interval", _seconds("poll_interval", self.poll_interval))
        _set(self, "max_delay_seconds", _seconds("max_delay_seconds", self.max_delay_seconds))
        _check_int("cache_max_bytes", self.cache_max_bytes)
        _check_int("prefetch_workers", self.prefetch_workers, minimum=0)
        if self.spill_dir is not None and not isinstance(self.spill_dir, str):
            raise TypeError(f"spill_dir must be None or a str path, got {self.spill_dir!r}")

    def limits(self, output: str) -> tuple[int | None, int | None]:
        """The ``(records, bytes)`` limits of one poll of ``output``; ``None``: no such limit.

        Given limits apply as given (both: whichever is reached first); with neither, the
        default of ``output`` (see the module docstring). At least one of the two is set.
        """
        if self.max_poll_records is None and self.max_poll_bytes is None:
            if output == "batches":
                return None, DEFAULT_MAX_POLL_BYTES
            return DEFAULT_MAX_POLL_RECORDS, None
        return self.max_poll_records, self.max_poll_bytes


@dataclasses.dataclass(frozen=True)
class OutputSettings:
    """What the read emits.

    Attributes:
        output: ``"records"`` (``StreamHouseRecord``), ``"rows"`` (Beam schema rows for SQL
            and YAML; bytes or text values), ``"kv"`` (``(key, value)`` tuples) or
            ``"batches"`` (one ``pyarrow.RecordBatch`` per poll, raw bytes values; needs the
            ``arrow`` extra).
        value_decoder: ``None``/``"bytes"``, ``"utf-8"``, ``"json"``, a ``ValueDecoder``
            (``AvroDecoder``, ``SchemaRegistryDecoder``...) or a callable ``f(bytes) ->
            object``; kept as given, built into :attr:`decoder`.
        dead_letter: route undecodable records to a ``dead_letter`` output instead of failing
            the pipeline.
        event_time: the ``EventTimePolicy``; ``None`` is ``EventTimePolicy.record_time()``
            (each output stamped with its record's timestamp). A timestamp computed from the
            record (``from_record``) needs a per-record output.
        decoder: the :class:`~streamhouse_beam.decoders.ValueDecoder` ``value_decoder`` names.
    """

    output: str = "records"
    value_decoder: DecoderSpec = None
    dead_letter: bool = False
    event_time: EventTimePolicy | None = None
    decoder: ValueDecoder = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        output: object = self.output
        if output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
        if not isinstance(self.dead_letter, bool):
            raise TypeError(f"dead_letter must be a bool, got {self.dead_letter!r}")
        decoder = make_decoder(self.value_decoder)
        _set(self, "decoder", decoder)
        if output == "batches":
            if decoder.name != "bytes":
                raise ValueError(
                    f"output='batches' carries raw value bytes; value_decoder {decoder!r} cannot "
                    "apply (use output='records', or decode the value column downstream)"
                )
            try:
                import pyarrow  # noqa: F401
            except ImportError as exc:
                raise MissingExtraError("output='batches'", "arrow", module="pyarrow") from exc
        if output == "rows" and decoder.name not in ("bytes", "utf-8"):
            raise ValueError(
                f"output='rows' carries bytes or text values; value_decoder {decoder!r} produces "
                "other objects (use output='records', or decode downstream)"
            )
        if self.event_time is not None:
            self._check_event_time(self.event_time)

    def _check_event_time(self, event_time: object) -> None:
        from streamhouse_beam.beam._event_time import EventTimePolicy

        if not isinstance(event_time, EventTimePolicy):
            raise TypeError(
                "event_time must be an EventTimePolicy (EventTimePolicy.record_time(), "
                ".bounded_out_of_orderness(seconds), .processing_time() or .from_record(fn, "
                f"seconds)), got {type(event_time).__name__} {event_time!r}"
            )
        if event_time.kind == "timestamp_fn" and self.output == "batches":
            raise ValueError(
                "event_time=EventTimePolicy.from_record(...) stamps each record, but "
                "output='batches' emits one element per poll: use output='records', 'rows' or "
                "'kv', or bounded_out_of_orderness / processing_time with batches"
            )


def _init_fields(group: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(group) if field.init)


#: The groups of :class:`ReadSettings`: each one's class and the transform arguments it holds.
_GROUPS: dict[str, tuple[type, tuple[str, ...]]] = {
    "source": (SourceSettings, _init_fields(SourceSettings)),
    "polling": (PollSettings, _init_fields(PollSettings)),
    "output": (OutputSettings, _init_fields(OutputSettings)),
    # ReadOptions' other fields are the partition reader's to tune, not read arguments.
    "reader": (
        ReadOptions,
        (
            "verify_crc",
            "prefetch_threshold",
            "prefetch_segments",
            "on_missing_segment",
            "range_reads",
        ),
    ),
}


@dataclasses.dataclass(frozen=True)
class ReadSettings:
    """The settings of one read, by group; built from keyword arguments by :meth:`from_arguments`.

    Attributes:
        source: where the records come from and which (:class:`SourceSettings`).
        polling: how each worker reads (:class:`PollSettings`).
        output: what comes out (:class:`OutputSettings`).
        reader: how segments are read (``ReadOptions``).
    """

    source: SourceSettings
    polling: PollSettings = PollSettings()
    output: OutputSettings = OutputSettings()
    reader: ReadOptions = ReadOptions()  # noqa: RUF009 - frozen value

    @staticmethod
    def argument_groups() -> dict[str, str]:
        """Each keyword argument of the read transforms, mapped to the group that holds it."""
        return {name: group for group, (_, names) in _GROUPS.items() for name in names}

    @staticmethod
    def defaults() -> dict[str, object]:
        """Each keyword argument's default (``metadata_url`` has none: it is required)."""
        found: dict[str, object] = {}
        for owner, names in _GROUPS.values():
            for field in dataclasses.fields(owner):
                if field.name in names and field.default is not dataclasses.MISSING:
                    found[field.name] = field.default
        return found

    @classmethod
    def from_arguments(
        cls, arguments: Mapping[str, object], *, where: str = "ReadSettings"
    ) -> ReadSettings:
        """Sort the transforms' keyword arguments into their groups and check them.

        Arguments not given take the groups' defaults.

        Raises:
            TypeError: an argument no group has (``where`` names the caller), or a value of
                the wrong type.
            ValueError: a value out of range.
            MissingExtraError: a URL or output kind whose optional dependency is not installed.
        """
        groups = cls.argument_groups()
        unknown = sorted(set(arguments) - set(groups))
        if unknown:
            raise TypeError(f"{where} got unexpected arguments {unknown}")
        given: dict[str, dict[str, Any]] = {group: {} for group in _GROUPS}
        for name, value in arguments.items():
            given[groups[name]][name] = value
        return cls(**{group: owner(**given[group]) for group, (owner, _) in _GROUPS.items()})
