# Apache Beam's annotations are partial (untyped calls, implicit re-exports); checked as far as they go.
# mypy: disable-error-code="no-untyped-call,attr-defined,unused-ignore,untyped-decorator,type-arg,misc"
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

Building a batch uses the C helper ``records_to_columns`` of
``streamhouse_beam.segment._speedups`` when it was built (buffers filled without a Python
object per cell), else an equivalent pure-Python path.

:class:`RecordBatchCoder` (registered for ``pyarrow.RecordBatch``) writes a batch as an Arrow
IPC stream: self-describing, versioned by Arrow itself and deterministic for a given batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam import coders
from apache_beam.coders import Coder
from apache_beam.utils.timestamp import Timestamp

from streamhouse_beam.beam.claims import claim_prefix
from streamhouse_beam.records import TopicPartition

try:
    from streamhouse_beam.segment._speedups import (  # type: ignore[attr-defined]
        records_to_columns as _records_to_columns_c,
    )
except ImportError:  # no compiler at install time: the pure-Python path below is used
    _records_to_columns_c = None

__all__ = [
    "BATCH_SCHEMA",
    "RecordBatchCoder",
    "batch_element",
    "batch_event_time",
    "claim_batch",
    "records_to_batch",
]

Record = tuple[int, int, "bytes | None", bytes]

#: The schema of every batch (``key``/``value`` become ``large_binary`` only past 2 GiB).
BATCH_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.uint64(), nullable=False),
        pa.field("timestamp", pa.uint64(), nullable=False),
        pa.field("key", pa.binary(), nullable=True),
        pa.field("value", pa.binary(), nullable=False),
    ]
)
_LARGE_SCHEMA = BATCH_SCHEMA.set(4, BATCH_SCHEMA.field("key").with_type(pa.large_binary())).set(
    5, BATCH_SCHEMA.field("value").with_type(pa.large_binary())
)

#: Key or value bytes above which a batch switches to 64-bit binary offsets.
_BINARY_LIMIT = 2**31 - 1


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
    largest = pa.compute.max(batch.column("timestamp")).as_py()
    return Timestamp(micros=int(largest) * 1000)


def claim_batch(
    tp: TopicPartition, records: list[Record], tracker: Any
) -> tuple[list[Any], int | None, int, bool]:
    """Claim ``records`` and wrap the claimed ones in one timestamped batch.

    Args:
        tp: the partition the records belong to.
        records: the polled records, in offset order.
        tracker: the restriction tracker of the ``process()`` call.

    Returns:
        ``(outputs, last claimed offset or None, records claimed, split)`` like
        ``ReadPartitionsFn._outputs``: ``outputs`` holds zero or one ``TimestampedValue``;
        ``split`` is true when a split took some of ``records``.
    """
    if not records:
        return [], None, 0, False
    take = claim_prefix(records, tracker)
    split = take < len(records)
    if not take:
        return [], None, 0, split
    if split:
        records = records[:take]
    return [batch_element(tp, records)], records[-1][0], take, split


def batch_element(tp: TopicPartition, records: list[Record]) -> Any:
    """The batch of ``records`` (non-empty) stamped with its event time (largest timestamp)."""
    batch = records_to_batch(tp.topic, tp.partition, records)
    return beam.window.TimestampedValue(batch, batch_event_time(batch))


class RecordBatchCoder(Coder):  # type: ignore[misc]
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

    def decode(self, encoded: bytes) -> pa.RecordBatch:
        reader = pa.ipc.open_stream(pa.py_buffer(encoded))
        batches = list(reader)
        if len(batches) != 1:
            # An empty batch is still written as one batch message: anything else is foreign.
            raise ValueError(f"expected one RecordBatch in the IPC stream, got {len(batches)}")
        return batches[0]

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return pa.RecordBatch

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)
