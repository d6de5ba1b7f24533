"""Event-time policies: which timestamp each output carries and how the watermark follows it.

=====================================================  ========================================
policy                                                 element timestamp / partition watermark
=====================================================  ========================================
``EventTimePolicy.record_time()`` (the default)        the record's StreamHouse timestamp /
                                                       the largest one read so far
``EventTimePolicy.bounded_out_of_orderness(s)``        the record's timestamp / the largest
                                                       one read so far minus ``s`` seconds
``EventTimePolicy.processing_time()``                  the wall clock when the record was read
                                                       (one instant per polled chunk) / now
``EventTimePolicy.from_record(fn, s)``                 ``fn(record)`` / the largest ``fn``
                                                       timestamp so far minus ``s`` seconds
=====================================================  ========================================

They are what Flink's ``WatermarkStrategy.forMonotonousTimestamps()`` /
``forBoundedOutOfOrderness(Duration)`` / ``withTimestampAssigner`` and KafkaIO's
``withLogAppendTime()`` / ``withCreateTime(maxDelay)`` / ``withProcessingTime()`` offer.
A record whose timestamp is behind the watermark is late: windows without allowed lateness
drop it. Under record time that is any record older than one read before it in its
partition, which suits StreamHouse's server-stamped (REST) records; producers that send their
own timestamps (the Kafka protocol, client libraries) need a bound.

Every policy keeps the idle advance: a caught-up partition with nothing new moves its
watermark to ``now - max_delay_seconds`` (processing time: to ``now``), so windows downstream
of a quiet partition still close. Records of the output kinds (``records``, ``rows``, ``kv``,
dead letters) keep their ``timestamp`` field, the StreamHouse timestamp, whatever the policy.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable
from typing import Any, Literal

from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Timestamp

from streamhouse_beam.errors import EventTimeError
from streamhouse_beam.records import StreamHouseRecord

__all__ = ["EventTimePolicy", "TimestampFn", "call_timestamp_fn", "to_micros"]

#: ``fn(record) -> timestamp`` of :meth:`EventTimePolicy.from_record`: milliseconds since the
#: epoch (an ``int``, as record timestamps), a Beam ``Timestamp`` or a timezone-aware
#: ``datetime``.
TimestampFn = Callable[[StreamHouseRecord], "int | Timestamp | datetime.datetime"]

PolicyKind = Literal["record_time", "processing_time", "timestamp_fn"]

_MIN_MICROS = MIN_TIMESTAMP.micros
_MAX_MICROS = MAX_TIMESTAMP.micros
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _bound(value: object) -> float:
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "max_out_of_orderness must be a number of seconds or a datetime.timedelta, got "
            f"{type(value).__name__} {value!r}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"max_out_of_orderness must be >= 0 seconds and finite, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class EventTimePolicy:
    """How a read stamps its outputs and moves its watermark; build one with a factory.

    Attributes:
        kind: ``"record_time"``, ``"processing_time"`` or ``"timestamp_fn"``.
        max_out_of_orderness: seconds the watermark stays behind the largest event time seen
            (record time and timestamp functions; 0 for processing time).
        timestamp_fn: the function of :meth:`from_record`, else ``None``.
    """

    kind: PolicyKind
    max_out_of_orderness: float = 0.0
    timestamp_fn: TimestampFn | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("record_time", "processing_time", "timestamp_fn"):
            raise ValueError(
                "EventTimePolicy kind must be record_time, processing_time or timestamp_fn, "
                f"got {self.kind!r} (use the factories, e.g. EventTimePolicy.record_time())"
            )
        object.__setattr__(self, "max_out_of_orderness", _bound(self.max_out_of_orderness))
        if self.kind == "timestamp_fn":
            if not callable(self.timestamp_fn):
                raise TypeError(
                    "EventTimePolicy.from_record needs a callable fn(record) -> timestamp, got "
                    f"{type(self.timestamp_fn).__name__} {self.timestamp_fn!r}"
                )
        elif self.timestamp_fn is not None:
            raise ValueError(f"a {self.kind} policy takes no timestamp_fn")
        if self.kind == "processing_time" and self.max_out_of_orderness:
            raise ValueError("a processing_time policy has no out-of-orderness: it is the clock")

    @classmethod
    def record_time(cls) -> EventTimePolicy:
        """The record's StreamHouse timestamp; the watermark is the largest one read so far.

        The default. Right for records StreamHouse stamps itself (its REST API uses server
        time); any record older than one before it in its partition is late.
        """
        return cls("record_time")

    @classmethod
    def bounded_out_of_orderness(
        cls, max_out_of_orderness: float | datetime.timedelta
    ) -> EventTimePolicy:
        """The record's timestamp; the watermark is the largest one read so far minus a bound.

        Flink's ``forBoundedOutOfOrderness``, KafkaIO's ``withCreateTime(maxDelay)``: for
        producers that send their own timestamps. A record at most ``max_out_of_orderness``
        behind the newest one read before it in its partition is on time; windows close that
        much later.

        Args:
            max_out_of_orderness: seconds (or a ``timedelta``), ``>= 0``.
        """
        return cls("record_time", _bound(max_out_of_orderness))

    @classmethod
    def processing_time(cls) -> EventTimePolicy:
        """The wall clock when the record was read; the watermark is now.

        KafkaIO's ``withProcessingTime()``. The records of one polled chunk (up to
        ``ReadPartitionsFn.read_chunk_records``) share the instant their chunk was read; a
        clock stepping backwards never stamps a record behind the watermark. Nothing is late.
        """
        return cls("processing_time")

    @classmethod
    def from_record(
        cls, fn: TimestampFn, max_out_of_orderness: float | datetime.timedelta = 0.0
    ) -> EventTimePolicy:
        """A timestamp computed from each record, e.g. a field of its decoded value.

        Flink's ``withTimestampAssigner``. ``fn`` gets the :class:`StreamHouseRecord` (decoded
        value, key, offset and the StreamHouse ``timestamp``, whatever the output kind) and
        returns milliseconds since the epoch (``int``), a Beam ``Timestamp`` or a
        timezone-aware ``datetime``. The watermark is the largest timestamp ``fn`` returned so
        far minus ``max_out_of_orderness``. An exception from ``fn`` or a result of another
        type fails the read with :class:`~streamhouse_beam.errors.EventTimeError` naming the
        record; return ``record.timestamp`` to fall back to the record time. Undecodable
        records routed to ``dead_letter`` keep their record timestamp and do not move the
        watermark. Needs one Python call per record, and per-record outputs (not
        ``output="batches"``). ``fn`` is pickled with the pipeline.

        Args:
            fn: ``fn(record) -> int | Timestamp | datetime``.
            max_out_of_orderness: seconds (or a ``timedelta``), ``>= 0``.
        """
        return cls("timestamp_fn", _bound(max_out_of_orderness), fn)

    @property
    def is_default(self) -> bool:
        """Whether this is :meth:`record_time`, the policy of the C fast path as it always was."""
        return self.kind == "record_time" and not self.max_out_of_orderness

    @property
    def bound_micros(self) -> int:
        """``max_out_of_orderness`` in microseconds."""
        return round(self.max_out_of_orderness * 1_000_000)

    def describe(self) -> str:
        """A short description for display data and messages."""
        if self.kind == "processing_time":
            return "processing_time()"
        if self.kind == "record_time":
            if not self.max_out_of_orderness:
                return "record_time()"
            return f"bounded_out_of_orderness({self.max_out_of_orderness:g} s)"
        name = getattr(self.timestamp_fn, "__qualname__", None) or repr(self.timestamp_fn)
        return f"from_record({name}, {self.max_out_of_orderness:g} s)"


def _where(record: StreamHouseRecord) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def to_micros(value: object, record: StreamHouseRecord) -> int:
    """A timestamp function's result in microseconds since the epoch.

    Raises:
        EventTimeError: ``value`` is not an ``int`` (ms), a ``Timestamp`` or an aware
            ``datetime``, or lies outside Beam's timestamp range; names the record.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        micros = value * 1000
    elif isinstance(value, Timestamp):
        micros = value.micros
    elif isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise EventTimeError(
                f"the timestamp function returned a naive datetime {value!r}; give it a "
                "timezone (e.g. tzinfo=datetime.timezone.utc)",
                **_where(record),
            )
        delta = value - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    else:
        raise EventTimeError(
            "the timestamp function must return milliseconds (int), a Beam Timestamp or an "
            f"aware datetime, got {type(value).__name__} {value!r}",
            **_where(record),
        )
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        raise EventTimeError(
            f"the timestamp function returned {value!r}, outside Beam's timestamp range",
            **_where(record),
        )
    return micros


def call_timestamp_fn(fn: Any, record: StreamHouseRecord) -> int:
    """``fn(record)`` in microseconds; an exception from ``fn`` becomes :class:`EventTimeError`."""
    try:
        value = fn(record)
    except Exception as exc:
        raise EventTimeError(
            f"the timestamp function raised {type(exc).__name__}: {exc}",
            **_where(record),
        ) from exc
    return to_micros(value, record)
