"""What a read emits, chosen once from ``output``: records, rows, ``(key, value)`` pairs or batches.

An :class:`OutputKind` answers the questions a polled chunk asks on its way out
(:class:`~streamhouse_beam.beam._poll.Chunk`):

* how to read a partition: record tuples (``PartitionReader.read``) or Arrow columns
  (``PartitionReader.read_columns``), and whether one read takes the whole poll (a batch is
  one element per read, so ``batches`` read the whole poll at once);
* where a stop time cuts a chunk: before its first record at or after that time;
* how to claim a chunk: its longest claimable prefix, with one tracker claim
  (:mod:`streamhouse_beam.beam._claims`);
* how claimed records become outputs, and the largest event time among those outputs, which
  the chunk reports to the watermark estimator before the outputs leave.

:func:`output_kind` picks the kind from the read's configuration when the DoFn is set up (and
:func:`element_type` the type the transforms declare), so nothing tests the ``output`` string
while reading. ``records``, ``rows`` and ``kv`` are made record by record here (the global
window's fast path: :func:`~streamhouse_beam.beam._emit.windowed_records`); ``batches`` is
:class:`~streamhouse_beam.beam._batches.BatchOutputs`, imported only when asked for, since it
needs pyarrow.
"""

from __future__ import annotations

import abc
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp

from streamhouse_beam.beam._claims import OffsetClaims
from streamhouse_beam.beam._coders import DeadLetterRecord, StreamHouseRow, StreamHouseTextRow
from streamhouse_beam.beam._descriptors import ReadConfig
from streamhouse_beam.beam._emit import (
    check_event_time,
    timestamp_micros,
    timestamp_ms,
    windowed_records,
)
from streamhouse_beam.beam._event_time import call_timestamp_fn
from streamhouse_beam.errors import DecodeError
from streamhouse_beam.partition_reader import PartitionReader, ReadBatch
from streamhouse_beam.records import StreamHouseRecord, TopicPartition

__all__ = ["DEAD_LETTER_TAG", "OutputKind", "element_type", "output_kind"]

#: The tag of the dead-letter output.
DEAD_LETTER_TAG = "dead_letter"
_GLOBAL_WINDOWS = (GlobalWindow(),)

Record = tuple[int, int, "bytes | None", bytes]


class OutputKind(abc.ABC):
    """How one output kind reads, cuts, claims and converts a chunk; see the module docstring."""

    #: The element type the read's main output declares.
    element_type: Any
    #: Whether one read takes the whole poll (else the poll reads in chunks).
    whole_poll: bool = False

    @abc.abstractmethod
    def read(
        self,
        reader: PartitionReader,
        start: int,
        stop: int | None,
        limit: int,
        max_bytes: int | None,
    ) -> ReadBatch[Any]:
        """One read of up to ``limit`` records (and ``max_bytes``) from ``start``."""

    @abc.abstractmethod
    def first_at_or_after(self, records: Any, timestamp_ms: int) -> int | None:
        """Index of the first record whose timestamp is ``>= timestamp_ms``, or None."""

    @abc.abstractmethod
    def claim(self, records: Any, offsets: OffsetClaims) -> tuple[int, int | None]:
        """Claim the longest claimable prefix of ``records`` (not empty).

        Returns:
            ``(records claimed, the last claimed offset or None)``.
        """

    @abc.abstractmethod
    def convert(
        self, tp: TopicPartition, records: Any, stamp: Timestamp | None
    ) -> tuple[Iterable[Any], int | None]:
        """The outputs of claimed ``records`` (not empty) and their largest event time (µs).

        Args:
            tp: the records' partition.
            records: what :meth:`read` returned, cut to the claimed prefix.
            stamp: the one timestamp of every output under processing time, else None.

        Returns:
            ``(outputs, largest event time in microseconds)``; None when no output carries an
            event time the watermark may follow (only dead letters under a timestamp
            function).
        """


class _PerRecordOutputs(OutputKind):
    """An output per record (or a dead letter per undecodable one); see :func:`output_kind`.

    Args:
        config: the read's configuration (decoder, dead letters, event-time policy).
        global_window: the descriptors are in the global window, so outputs are made as
            ready-made ``WindowedValue`` s (:func:`~streamhouse_beam.beam._emit.windowed_records`).
        metrics: the read's counters (``decode_errors`` is counted here), or None.
    """

    #: The row built per record as ``(topic, partition, offset, timestamp, key, value)``, or
    #: None for ``(key, value)`` tuples.
    row_type: type | None

    def __init__(
        self, config: ReadConfig, global_window: bool, metrics: dict[str, Any] | None
    ) -> None:
        self._decoder = config.decoder
        self._dead_letter = config.dead_letter
        self._timestamp_fn = (
            config.event_time.timestamp_fn if config.event_time.kind == "timestamp_fn" else None
        )
        self._global_window = global_window
        self._metrics = metrics

    def read(
        self,
        reader: PartitionReader,
        start: int,
        stop: int | None,
        limit: int,
        max_bytes: int | None,
    ) -> ReadBatch[Any]:
        return reader.read(start, stop, limit, max_bytes)

    def first_at_or_after(self, records: list[Record], timestamp_ms: int) -> int | None:
        # Timestamps need not be ordered: the first such record, not a binary search.
        for i, rec in enumerate(records):
            if rec[1] >= timestamp_ms:
                return i
        return None

    def claim(self, records: list[Record], offsets: OffsetClaims) -> tuple[int, int | None]:
        take = offsets.claim_prefix(records)
        return take, records[take - 1][0] if take else None

    def convert(
        self, tp: TopicPartition, records: list[Record], stamp: Timestamp | None
    ) -> tuple[Iterable[Any], int | None]:
        """The outputs of claimed ``records`` (made lazily) and their largest event time (µs).

        Under record time (``stamp`` None, no timestamp function) each output carries its
        record timestamp; under processing time every output carries ``stamp``; with a
        timestamp function each carries what the function returned.
        """
        decoder = self._decoder
        topic, partition = tp
        row_type = self.row_type
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
        elif self._timestamp_fn is not None:
            micros = self._timestamps_of(tp, records, values)
            times = [timestamp_micros(us) for us in micros]
            event_micros = max(micros)
        if self._global_window:
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

    def _timestamps_of(
        self, tp: TopicPartition, records: Sequence[Record], values: list[Any] | None
    ) -> list[int]:
        """The timestamp function's result for each record (microseconds)."""
        fn = self._timestamp_fn
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

    def _convert_each(
        self, tp: TopicPartition, records: list[Record], stamp: Timestamp | None
    ) -> tuple[list[Any], int | None]:
        """:meth:`convert` one record at a time (a chunk holding undecodable values)."""
        out: list[Any] = []
        event_micros: int | None = None
        for rec in records:
            output, micros = self._convert_one(tp, rec, stamp)
            out.append(output)
            if micros is not None and (event_micros is None or micros > event_micros):
                event_micros = micros
        return out, event_micros

    def _convert_one(
        self, tp: TopicPartition, rec: Record, stamp: Timestamp | None
    ) -> tuple[Any, int | None]:
        """One record's output and the event time it reports (µs, or None).

        The record, or its dead-letter entry; a dead letter under a timestamp function keeps
        its record timestamp (the function cannot see an undecodable value) and reports none.
        """
        offset, ts, key, raw = rec
        check_event_time(ts, tp.topic, tp.partition, offset)
        event_time = timestamp_ms(ts) if stamp is None else stamp
        try:
            value = self._decoder.decode_record(
                raw, topic=tp.topic, partition=tp.partition, offset=offset
            )
        except DecodeError as exc:
            if self._metrics is not None:
                self._metrics["decode_errors"].inc()
            if not self._dead_letter:
                raise
            dead = beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG,
                beam.window.TimestampedValue(
                    DeadLetterRecord(tp.topic, tp.partition, offset, ts, key, raw, exc.reason),
                    event_time,
                ),
            )
            return dead, None if self._timestamp_fn is not None else event_time.micros
        row_type = self.row_type
        element = (
            (key, value)
            if row_type is None
            else row_type(tp.topic, tp.partition, offset, ts, key, value)
        )
        if self._timestamp_fn is not None:
            micros = call_timestamp_fn(
                self._timestamp_fn,
                StreamHouseRecord(tp.topic, tp.partition, offset, ts, key, value),
            )
            event_time = timestamp_micros(micros)
        return beam.window.TimestampedValue(element, event_time), event_time.micros


class RecordOutputs(_PerRecordOutputs):
    """``output="records"``: a :class:`~streamhouse_beam.records.StreamHouseRecord` per record."""

    row_type = StreamHouseRecord
    element_type = StreamHouseRecord


class RowOutputs(_PerRecordOutputs):
    """``output="rows"``: a schema'd row per record (text values: :class:`StreamHouseTextRow`)."""

    def __init__(
        self, config: ReadConfig, global_window: bool, metrics: dict[str, Any] | None
    ) -> None:
        super().__init__(config, global_window, metrics)
        self.row_type = self.element_type = (
            StreamHouseTextRow if config.decoder.name == "utf-8" else StreamHouseRow
        )


class KeyValueOutputs(_PerRecordOutputs):
    """``output="kv"``: a ``(key, value)`` tuple per record."""

    row_type = None
    element_type = typing.Tuple[bytes | None, typing.Any]  # noqa: UP006


_PER_RECORD: dict[str, type[_PerRecordOutputs]] = {
    "records": RecordOutputs,
    "rows": RowOutputs,
    "kv": KeyValueOutputs,
}


def output_kind(
    config: ReadConfig, *, global_window: bool = False, metrics: dict[str, Any] | None = None
) -> OutputKind:
    """The :class:`OutputKind` of ``config.output`` (validated by the transforms).

    Args:
        config: the read's configuration.
        global_window: the read's descriptors are in the global window.
        metrics: the read's counters, or None.
    """
    if config.output == "batches":
        from streamhouse_beam.beam._batches import BatchOutputs  # needs pyarrow: only then

        return BatchOutputs()
    return _PER_RECORD[config.output](config, global_window, metrics)


def element_type(config: ReadConfig) -> Any:
    """The element type of the read's main output for ``config.output``."""
    return output_kind(config).element_type
