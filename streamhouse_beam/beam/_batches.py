"""``output="batches"``: one ``pyarrow.RecordBatch`` per poll instead of one element per record.

Per-element overhead dominates a Beam read of small records; a batch carries up to
``max_poll_records`` records in one element, as Arrow columns that vectorised code (pyarrow
compute, pandas, Beam's batched DoFns) consumes directly. The schema (:data:`BATCH_SCHEMA`):

========== ============== ===================================================================
column     type           notes
========== ============== ===================================================================
topic      string         the topic, repeated
partition  int32          the partition, repeated
offset     uint64         exact for every u64 offset (int64 would turn offsets >= 2**63 negative)
timestamp  uint64         milliseconds since the epoch as StreamHouse stores them (u64, exact)
key        binary, null   ``null`` when the record has no key (StreamHouse reads empty keys
                          as absent too)
value      binary         the raw value bytes (value decoders do not apply to batches)
========== ============== ===================================================================

``key``/``value`` use ``large_binary`` (64-bit offsets) only for a batch holding 2 GiB or more
of key or value bytes. A batch's event time is the largest record timestamp in it, so the
watermark after each batch is exactly what it is after the same records in ``"records"`` mode.

The read itself builds batches without a Python object per record: :class:`BatchOutputs`, the
output kind (:mod:`streamhouse_beam.beam._outputs`), polls
:meth:`streamhouse_beam.partition_reader.PartitionReader.read_columns`, which decodes blocks
straight into Arrow buffers (:mod:`streamhouse_beam.segment.columns`), claims the polled batch
with one tracker claim and slices it to the claimed prefix when a split took the rest. A batch can also be built from
record tuples (:func:`records_to_batch`, the reference the columnar path is tested against),
with the C helper ``records_to_columns`` of ``streamhouse_beam.segment._speedups`` when it
was built (buffers filled without a Python object per cell), else in pure Python.

:class:`RecordBatchCoder` (registered for ``pyarrow.RecordBatch``) writes a batch as an Arrow
IPC stream: self-describing, versioned by Arrow itself and deterministic for a given batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import apache_beam as beam
import pyarrow as pa
from apache_beam import coders
from apache_beam.utils.timestamp import Timestamp

from streamhouse_beam._accel import accelerator
from streamhouse_beam.beam._claims import OffsetClaims
from streamhouse_beam.beam._coders import DeterministicCoder
from streamhouse_beam.beam._outputs import OutputKind
from streamhouse_beam.partition_reader import PartitionReader, ReadBatch
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.segment.columns import (
    BATCH_SCHEMA,
    BINARY_LIMIT,
    LARGE_BATCH_SCHEMA,
    batch_max_timestamp,
    batch_offsets,
)

#: The C builder of a batch's buffers, or None (not built, or pure Python forced).
_records_to_columns_c = accelerator("streamhouse_beam.segment._speedups", "records_to_columns")

__all__ = [
    "BATCH_SCHEMA",
    "BatchOutputs",
    "RecordBatchCoder",
    "batch_event_time",
    "first_at_or_after",
    "records_to_batch",
]

Record = tuple[int, int, "bytes | None", bytes]

# The schema lives with the columnar decoder (streamhouse_beam.segment.columns), which builds
# most batches; these are its names here.
_LARGE_SCHEMA = LARGE_BATCH_SCHEMA
_BINARY_LIMIT = BINARY_LIMIT


def _columns_py(records: Sequence[Record], large: bool) -> list[pa.Array]:
    binary = pa.large_binary() if large else pa.binary()
    return [
        pa.array([r[0] for r in records], pa.uint64()),
        pa.array([r[1] for r in records], pa.uint64()),
        pa.array([r[2] for r in records], binary),
        pa.array([r[3] for r in records], binary),
    ]


def _columns_c(records: list[Record], large: bool) -> list[pa.Array]:
    assert _records_to_columns_c is not None
    offsets, timestamps, validity, nulls, key_offs, key_data, val_offs, val_data = (
        _records_to_columns_c(records, large)
    )
    n = len(records)
    binary = pa.large_binary() if large else pa.binary()
    buf = pa.py_buffer  # zero-copy views of the bytes objects the C helper filled
    return [
        pa.Array.from_buffers(pa.uint64(), n, [None, buf(offsets)]),
        pa.Array.from_buffers(pa.uint64(), n, [None, buf(timestamps)]),
        pa.Array.from_buffers(
            binary,
            n,
            [None if validity is None else buf(validity), buf(key_offs), buf(key_data)],
            null_count=nulls,
        ),
        pa.Array.from_buffers(binary, n, [None, buf(val_offs), buf(val_data)], null_count=0),
    ]


def records_to_batch(topic: str, partition: int, records: Sequence[Record]) -> pa.RecordBatch:
    """Build the Arrow batch of ``records`` (``(offset, timestamp, key, value)`` tuples).

    Args:
        topic: the topic of every record.
        partition: the partition of every record.
        records: the records, in offset order.

    Returns:
        A batch with :data:`BATCH_SCHEMA` (``large_binary`` key/value past 2 GiB of bytes).

    Raises:
        TypeError: ``topic`` is not a str, ``partition`` not an int, or a record is malformed.
    """
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, got {type(topic).__name__} {topic!r}")
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise TypeError(f"partition must be an int, got {type(partition).__name__} {partition!r}")
    n = len(records)
    if _records_to_columns_c is not None and type(records) is list:
        try:
            columns, large = _columns_c(records, False), False
        except OverflowError:  # 2 GiB or more of keys or values: 64-bit binary offsets
            columns, large = _columns_c(records, True), True
    else:
        value_bytes = sum(len(r[3]) for r in records)
        key_bytes = sum(len(r[2]) for r in records if r[2] is not None)
        large = value_bytes > _BINARY_LIMIT or key_bytes > _BINARY_LIMIT
        columns = _columns_py(records, large)
    return pa.RecordBatch.from_arrays(
        [
            pa.repeat(pa.scalar(topic, pa.string()), n),
            pa.repeat(pa.scalar(partition, pa.int32()), n),
            *columns,
        ],
        schema=_LARGE_SCHEMA if large else BATCH_SCHEMA,
    )


def batch_event_time(batch: pa.RecordBatch) -> Timestamp:
    """The event time of a batch: its largest record timestamp (ms), as a Beam timestamp."""
    largest = batch_max_timestamp(batch)
    return Timestamp(micros=(0 if largest is None else largest) * 1000)


class _OffsetRows(Sequence[tuple[int]]):
    """A batch's offsets as the ``(offset,)`` rows a chunk claim reads.

    A chunk claim (:func:`streamhouse_beam.beam._claims.claim_prefix`) looks at a few rows only (the last, and the one at a split), so a
    polled batch is claimed without a Python object per record.
    """

    __slots__ = ("_offsets",)

    def __init__(self, offsets: Sequence[int]) -> None:
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, i: int) -> tuple[int]: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[tuple[int]]: ...

    def __getitem__(self, i: int | slice) -> tuple[int] | Sequence[tuple[int]]:
        if isinstance(i, slice):
            return _OffsetRows(self._offsets[i])
        return (self._offsets[i],)


def first_at_or_after(batch: pa.RecordBatch, timestamp_ms: int) -> int | None:
    """Index of the first record of ``batch`` whose timestamp is ``>= timestamp_ms``, or None.

    The vectorised form of the records-mode scan for a timestamp stop (timestamps need not be
    ordered, so this is the first such record, not a binary search).
    """
    if not batch.num_rows or timestamp_ms >= 2**64:
        return None
    if timestamp_ms <= 0:
        return 0
    reached = pa.compute.greater_equal(batch.column(3), pa.scalar(timestamp_ms, pa.uint64()))
    index = pa.compute.index(reached, True).as_py()
    return None if index < 0 else int(index)


class BatchOutputs(OutputKind):
    """``output="batches"``: one timestamped ``pyarrow.RecordBatch`` per claimed chunk.

    A poll is read with ``PartitionReader.read_columns`` in one call (a batch is one element
    per read). A chunk is claimed with one claim through :class:`_OffsetRows`, without a
    Python object per record, and sliced (zero-copy) to the claimed prefix when a split took
    the rest. Its event time is the largest record timestamp in it, or the poll's instant
    under processing time. Chunks of record tuples (:func:`records_to_batch`'s input) are
    claimed and converted the same way.
    """

    element_type = pa.RecordBatch
    whole_poll = True

    def read(
        self,
        reader: PartitionReader,
        start: int,
        stop: int | None,
        limit: int,
        max_bytes: int | None,
    ) -> ReadBatch[Any]:
        return reader.read_columns(start, stop, limit, max_bytes)

    def first_at_or_after(self, records: pa.RecordBatch, timestamp_ms: int) -> int | None:
        return first_at_or_after(records, timestamp_ms)

    def claim(
        self, records: pa.RecordBatch | list[Record], offsets: OffsetClaims
    ) -> tuple[int, int | None]:
        if isinstance(records, pa.RecordBatch):
            column = batch_offsets(records)
            take = offsets.claim_prefix(_OffsetRows(column))
            return take, int(column[take - 1]) if take else None
        take = offsets.claim_prefix(records)
        return take, records[take - 1][0] if take else None

    def convert(
        self, tp: TopicPartition, records: pa.RecordBatch | list[Record], stamp: Timestamp | None
    ) -> tuple[list[Any], int]:
        if isinstance(records, pa.RecordBatch):
            batch = records
        else:
            batch = records_to_batch(tp.topic, tp.partition, records)
        event_time = batch_event_time(batch) if stamp is None else stamp
        return [beam.window.TimestampedValue(batch, event_time)], event_time.micros


#: Bytes an IPC stream of one batch adds to its buffers (schema + batch messages + padding),
#: roughly, for :meth:`RecordBatchCoder.estimate_size`.
_IPC_OVERHEAD = 1024


class RecordBatchCoder(DeterministicCoder):
    """Deterministic coder of ``pyarrow.RecordBatch`` through the Arrow IPC stream format."""

    def encode(self, value: pa.RecordBatch) -> bytes:
        if any(column.offset for column in value.columns):
            # A slice keeps its parent's buffers, which the IPC writer would partly copy
            # as they are; compacting first makes equal batches encode to equal bytes.
            value = pa.RecordBatch.from_arrays(
                [pa.concat_arrays([column]) for column in value.columns], schema=value.schema
            )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, value.schema) as writer:
            writer.write_batch(value)
        return bytes(sink.getvalue())

    def estimate_size(self, value: pa.RecordBatch) -> int:
        """The batch's buffer bytes plus the IPC stream's framing, without encoding it.

        Beam samples output sizes for its metrics through this; the default encodes the
        whole batch (an IPC write, plus a compacting copy of a slice) for every sample.
        """
        return int(value.nbytes) + _IPC_OVERHEAD

    def decode(self, encoded: bytes) -> pa.RecordBatch:
        reader = pa.ipc.open_stream(pa.py_buffer(encoded))
        batches = list(reader)
        if len(batches) != 1:
            # An empty batch is still written as one batch message: anything else is foreign.
            raise ValueError(f"expected one RecordBatch in the IPC stream, got {len(batches)}")
        return batches[0]

    def to_type_hint(self) -> Any:
        return pa.RecordBatch


coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)
