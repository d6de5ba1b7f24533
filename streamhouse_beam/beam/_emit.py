"""Records-mode output elements: a polled chunk of records as ready-made ``WindowedValue`` s.

On FnApiRunner, building each record's output in Python (the row, a Beam ``Timestamp``
through its validating constructor, the ``WindowedValue``) costs about as much as all the work
Beam does with the element afterwards. :func:`windowed_records` builds a whole chunk at once,
in C when the optional accelerator ``streamhouse_beam.beam._emit_speedups`` was built (and
``STREAMHOUSE_BEAM_PURE_PYTHON`` is not set), else in an equivalent Python loop; both return the chunk's largest timestamp too, which the read reports
to its watermark estimator once per chunk (see ``streamhouse_beam.beam._watermark``).

Timestamps come from :func:`timestamp_ms`, which fills an :class:`EventTime` (a ``Timestamp``
subclass storing its microseconds) directly instead of running the validating constructor
(about 4x cheaper, and Beam's per-element ``timestamp.micros`` becomes an attribute read).
That depends on the attribute layout of Beam's ``Timestamp``, so it is verified at import
against Beam's own constructor over edge values; when the layout differs (another Beam
version), both paths use the constructor instead — slower, never wrong.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from streamhouse_beam._accel import accelerator
from streamhouse_beam.errors import StreamHouseError

#: The C twin of windowed_records_py, or None (not built, or pure Python forced).
_windowed_records_c = accelerator("streamhouse_beam.beam._emit_speedups", "windowed_records")

__all__ = [
    "ACCELERATED",
    "EventTime",
    "check_event_time",
    "timestamp_micros",
    "timestamp_ms",
    "windowed_records",
    "windowed_records_py",
]

#: Largest millisecond timestamp whose microseconds fit Beam's int64 timestamps.
_MAX_MS = (2**63 - 1) // 1000

Record = tuple[int, int, "bytes | None", bytes]

_new_object = object.__new__


class EventTime(Timestamp):
    """A record's event time: a Beam ``Timestamp`` that also keeps its microseconds as a field.

    Beam's ``WindowedValue`` reads ``timestamp.micros`` once per element, which on a plain
    ``Timestamp`` is a computed property (about 130 ns); here it is a stored attribute. In
    every other respect — equality, hashing, ordering, arithmetic (which returns plain
    ``Timestamp`` s), ``repr`` — it is the ``Timestamp`` of the same instant.
    """

    micros = 0  # shadows the base class property; every instance stores its own value


def _timestamp_direct(ms: int) -> Timestamp:
    ts = _new_object(EventTime)
    micros = ms * 1000
    ts._precision = 6
    ts._seconds, ts._subseconds = divmod(micros, 1_000_000)
    ts.micros = micros
    return ts


def _timestamp_constructed(ms: int) -> Timestamp:
    return Timestamp(micros=ms * 1000)


def _micros_direct(micros: int) -> Timestamp:
    ts = _new_object(EventTime)
    ts._precision = 6
    ts._seconds, ts._subseconds = divmod(micros, 1_000_000)
    ts.micros = micros
    return ts


def _micros_constructed(micros: int) -> Timestamp:
    return Timestamp(micros=micros)


def _timestamp_layout_ok() -> bool:
    """Whether a directly filled EventTime is indistinguishable from a constructed Timestamp."""
    try:
        for ms in (0, 1, 999, 1000, 1_700_000_000_123, _MAX_MS):
            built, direct = Timestamp(micros=ms * 1000), _timestamp_direct(ms)
            if vars(built) != {k: v for k, v in vars(direct).items() if k != "micros"}:
                return False
            if built != direct or direct != built or direct.micros != built.micros:
                return False
            if hash(built) != hash(direct) or repr(built) != repr(direct):
                return False
        for micros in (-1, -1_000_001, -(2**63), 2**63 - 1, 1_700_000_000_123_456):
            built, direct = Timestamp(micros=micros), _micros_direct(micros)
            if vars(built) != {k: v for k, v in vars(direct).items() if k != "micros"}:
                return False
            if built != direct or hash(built) != hash(direct) or repr(built) != repr(direct):
                return False
        mid = _timestamp_direct(1_700_000_000_123)
        if mid + 1 != Timestamp(micros=1_700_000_001_123_000) or mid.to_rfc3339() != (
            "2023-11-14T22:13:20.123000Z"
        ):
            return False
    except Exception:  # any change in Beam's Timestamp internals means: do not take this path
        return False
    return True


_DIRECT = _timestamp_layout_ok()

#: Whether chunks are built by the C accelerator (it fills EventTimes directly too).
ACCELERATED = _DIRECT and _windowed_records_c is not None

#: ``timestamp_ms(ms)``: the ``Timestamp`` of ``ms`` milliseconds, equal to
#: ``Timestamp(micros=ms * 1000)`` (an :class:`EventTime` when the layout check passed).
timestamp_ms = _timestamp_direct if _DIRECT else _timestamp_constructed

#: ``timestamp_micros(us)``: the ``Timestamp`` of ``us`` microseconds (any in Beam's range),
#: equal to ``Timestamp(micros=us)``; the element timestamps of the other event-time policies.
timestamp_micros = _micros_direct if _DIRECT else _micros_constructed


def check_event_time(ms: int, topic: str, partition: int, offset: int) -> None:
    """Raise when ``ms`` is beyond the last event time Beam can represent.

    Raises:
        StreamHouseError: names the record and its timestamp.
    """
    if ms > _MAX_MS:
        raise StreamHouseError(
            f"record of {topic!r} partition {partition} offset {offset} has timestamp {ms} ms, "
            f"beyond the largest event time Beam can represent ({_MAX_MS} ms)"
        )


def windowed_records_py(
    records: Sequence[Record],
    values: Sequence[Any] | None,
    topic: str,
    partition: int,
    row_type: type | None,
    windows: tuple[Any, ...],
    times: Timestamp | list[Timestamp] | None = None,
) -> tuple[Iterator[WindowedValue], int]:
    """The pure-Python :func:`windowed_records`."""
    records = list(records)
    max_ms = max((rec[1] for rec in records), default=0)
    if max_ms > _MAX_MS:
        for offset, ms, _, _ in records:
            check_event_time(ms, topic, partition, offset)
    if times is not None:
        _check_times(times, len(records))
        return _outputs_given_times_py(
            records, values, topic, partition, row_type, windows, times
        ), max_ms
    return _outputs_py(records, values, topic, partition, row_type, windows), max_ms


def _check_times(times: object, n: int) -> None:
    if type(times) is list:
        if len(times) != n:
            raise TypeError(f"times must be None, a Timestamp or a list of {n}, got {len(times)}")
    elif not isinstance(times, Timestamp):
        raise TypeError(f"times must be None, a Timestamp or a list, got {times!r}")


def _outputs_given_times_py(
    records: list[Record],
    values: Sequence[Any] | None,
    topic: str,
    partition: int,
    row_type: type | None,
    windows: tuple[Any, ...],
    times: Timestamp | list[Timestamp],
) -> Iterator[WindowedValue]:
    each = times if isinstance(times, list) else [times] * len(records)
    for i, (offset, ms, key, raw) in enumerate(records):
        value = raw if values is None else values[i]
        if row_type is None:
            element: Any = (key, value)
        else:
            element = row_type(topic, partition, offset, ms, key, value)
        yield WindowedValue(element, each[i], windows)


def _outputs_py(
    records: list[Record],
    values: Sequence[Any] | None,
    topic: str,
    partition: int,
    row_type: type | None,
    windows: tuple[Any, ...],
) -> Iterator[WindowedValue]:
    make_ts = timestamp_ms
    prev_ms = -1
    ts: Any = None
    for i, (offset, ms, key, raw) in enumerate(records):
        if ms != prev_ms:  # records of one millisecond share their (immutable) Timestamp
            ts = make_ts(ms)
            prev_ms = ms
        value = raw if values is None else values[i]
        if row_type is None:
            element: Any = (key, value)
        else:
            element = row_type(topic, partition, offset, ms, key, value)
        yield WindowedValue(element, ts, windows)


def windowed_records(
    records: list[Record],
    values: list[Any] | None,
    topic: str,
    partition: int,
    row_type: type | None,
    windows: tuple[Any, ...],
    times: Timestamp | list[Timestamp] | None = None,
) -> tuple[Iterator[WindowedValue], int]:
    """The ``WindowedValue`` of each record, in order, and the largest record timestamp (ms).

    The outputs are made one at a time as the iterator is consumed, so each can be freed as
    soon as the runner is done with it (a whole chunk of live outputs would be walked by the
    garbage collector over and over). Every record is checked before this returns.

    Args:
        records: ``(offset, timestamp_ms, key, raw_value)`` tuples as the partition reader
            returns them.
        values: the decoded value of each record, or ``None`` to emit the raw bytes.
        topic: the records' topic.
        partition: the records' partition.
        row_type: a 6-field ``NamedTuple`` built as ``(topic, partition, offset, timestamp,
            key, value)``, or ``None`` for plain ``(key, value)`` tuples.
        windows: the windows every output is in.
        times: the outputs' timestamps when they are not the record timestamps (an
            event-time policy other than record time): one ``Timestamp`` for every record, or
            a list of one per record; ``None`` stamps each output with its record timestamp.

    Returns:
        ``(outputs, largest timestamp in ms)``; the largest timestamp is 0 for no records.

    Raises:
        StreamHouseError: a timestamp is beyond Beam's int64 microseconds (names the record).
    """
    if (
        _windowed_records_c is not None
        and _DIRECT
        and type(records) is list
        and (values is None or type(values) is list)
        and (row_type is None or len(getattr(row_type, "_fields", ())) == 6)
    ):
        got = _windowed_records_c(
            records,
            values,
            topic,
            partition,
            tuple if row_type is None else row_type,
            row_type is None,
            WindowedValue,
            EventTime,
            windows,
            times,
        )
        if got is not None:
            return got  # type: ignore[no-any-return]
    return windowed_records_py(records, values, topic, partition, row_type, windows, times)
