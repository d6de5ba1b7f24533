"""Decoded blocks as Arrow columns, and Arrow record batches assembled from block slices.

The batch read path (``ReadFromStreamHouse(output="batches")``) never builds a Python object
per record: each block is decoded straight into Arrow buffers
(:func:`streamhouse_beam.segment.decode.decode_columns`, in C when the accelerator is built),
wrapped here without copying as a :class:`BlockColumns`, and a read's records are zero-copy
slices of those columns, concatenated only when a read spans blocks or segments
(:func:`assemble_batch`).

:data:`BATCH_SCHEMA` is the schema of every batch (documented in
:mod:`streamhouse_beam.beam._batches`, which re-exports it); ``key``/``value`` switch to
``large_binary`` only for a batch holding more than ``2**31 - 1`` key or value bytes.

This module needs ``pyarrow`` (the ``arrow`` extra); the rest of the segment package does not
import it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from streamhouse_beam.segment.decode import ColumnBuffers

__all__ = [
    "BATCH_SCHEMA",
    "BINARY_LIMIT",
    "LARGE_BATCH_SCHEMA",
    "BlockColumns",
    "assemble_batch",
    "batch_max_timestamp",
    "batch_offsets",
    "empty_batch",
]

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
#: :data:`BATCH_SCHEMA` with 64-bit binary offsets, for batches past :data:`BINARY_LIMIT`.
LARGE_BATCH_SCHEMA = BATCH_SCHEMA.set(
    4, BATCH_SCHEMA.field("key").with_type(pa.large_binary())
).set(5, BATCH_SCHEMA.field("value").with_type(pa.large_binary()))

#: Key or value bytes above which a batch switches to 64-bit binary offsets.
BINARY_LIMIT = 2**31 - 1

_UINT64 = pa.uint64()
_BINARY = pa.binary()
_LARGE_BINARY = pa.large_binary()


class BlockColumns:
    """One decoded block as Arrow arrays, plus what a reader needs to slice it cheaply.

    Args:
        buffers: what ``decode_columns`` returned for the block.

    Attributes:
        count: number of records.
        offsets: ``uint64`` array of the record offsets (increasing, possibly with gaps).
        timestamps: ``uint64`` array of the record timestamps (ms).
        keys: ``binary`` (``large_binary`` when ``large``) array, null for an absent key.
        values: ``binary`` (``large_binary`` when ``large``) array.
        offset_list: the offsets as a sequence of ints (a typed view of the offsets buffer),
            for ``bisect`` without a Python object per record.
        large: whether the block holds more than ``2**31 - 1`` key or value bytes.
        max_timestamp: the largest timestamp, ``None`` for an empty block.
    """

    __slots__ = (
        "_key_ends",
        "_value_ends",
        "count",
        "keys",
        "large",
        "max_timestamp",
        "offset_list",
        "offsets",
        "timestamps",
        "values",
    )

    def __init__(self, buffers: ColumnBuffers) -> None:
        (n, offs, tss, validity, nulls, kofs, kdata, vofs, vdata, large, max_ts) = buffers
        buf = pa.py_buffer  # zero-copy: Arrow keeps the bytes objects alive
        binary = _LARGE_BINARY if large else _BINARY
        self.count = n
        self.offsets = pa.Array.from_buffers(_UINT64, n, [None, buf(offs)], null_count=0)
        self.timestamps = pa.Array.from_buffers(_UINT64, n, [None, buf(tss)], null_count=0)
        self.keys = pa.Array.from_buffers(
            binary,
            n,
            [None if validity is None else buf(validity), buf(kofs), buf(kdata)],
            null_count=nulls,
        )
        self.values = pa.Array.from_buffers(binary, n, [None, buf(vofs), buf(vdata)], null_count=0)
        self.offset_list: Sequence[int] = memoryview(offs).cast("Q")
        self._key_ends: Sequence[int]
        self._value_ends: Sequence[int]
        if large:
            self._key_ends, self._value_ends = (
                memoryview(kofs).cast("q"),
                memoryview(vofs).cast("q"),
            )
        else:
            self._key_ends, self._value_ends = (
                memoryview(kofs).cast("i"),
                memoryview(vofs).cast("i"),
            )
        self.large = large
        self.max_timestamp = max_ts

    def key_bytes(self, start: int, stop: int) -> int:
        """Key bytes of records ``[start, stop)`` (absent keys count 0)."""
        ends = self._key_ends
        return ends[stop] - ends[start]

    def value_bytes(self, start: int, stop: int) -> int:
        """Value bytes of records ``[start, stop)``."""
        ends = self._value_ends
        return ends[stop] - ends[start]

    def records_reaching(self, start: int, stop: int, budget: int) -> int:
        """How many records from ``start`` it takes for their key and value bytes to reach
        ``budget`` (> 0), at most ``stop - start`` (all of them stay below it).

        A binary search over the cumulative key and value ends: no Python step per record.
        """
        keys, values = self._key_ends, self._value_ends
        base = keys[start] + values[start]
        if keys[stop] + values[stop] - base < budget:
            return stop - start
        # The first end index j in (start, stop] whose bytes reach the budget.
        j = bisect.bisect_left(
            range(start + 1, stop + 1), budget, key=lambda i: keys[i] + values[i] - base
        )
        return j + 1

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"BlockColumns(count={self.count}, large={self.large})"


#: ``(block, first record index, record count)``: one contiguous run of a block's records.
Piece = tuple[BlockColumns, int, int]


def _binary_column(parts: list[pa.Array], large: bool) -> pa.Array:
    want = _LARGE_BINARY if large else _BINARY
    parts = [p if p.type == want else p.cast(want) for p in parts]
    return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)


def assemble_batch(topic: str, partition: int, pieces: Sequence[Piece]) -> pa.RecordBatch:
    """The :data:`BATCH_SCHEMA` batch of ``pieces``' records, in order.

    One piece is sliced without copying; several are concatenated column by column (one copy).

    Args:
        topic: the topic of every record.
        partition: the partition of every record.
        pieces: runs of block records, in offset order.

    Returns:
        The batch; ``key``/``value`` are ``large_binary`` only when its key or value bytes
        exceed :data:`BINARY_LIMIT` (the rule of :func:`streamhouse_beam.beam._batches.records_to_batch`).
    """
    pieces = [p for p in pieces if p[2] > 0]
    if not pieces:
        return empty_batch()
    n = 0
    key_bytes = value_bytes = 0
    any_large = False
    for block, start, count in pieces:
        n += count
        key_bytes += block.key_bytes(start, start + count)
        value_bytes += block.value_bytes(start, start + count)
        any_large = any_large or block.large
    large = key_bytes > BINARY_LIMIT or value_bytes > BINARY_LIMIT
    if len(pieces) == 1 and not any_large and not large:
        block, start, count = pieces[0]
        if start == 0 and count == block.count:
            columns = [block.offsets, block.timestamps, block.keys, block.values]
        else:
            columns = [
                block.offsets.slice(start, count),
                block.timestamps.slice(start, count),
                block.keys.slice(start, count),
                block.values.slice(start, count),
            ]
    else:
        offsets = [b.offsets.slice(s, c) for b, s, c in pieces]
        timestamps = [b.timestamps.slice(s, c) for b, s, c in pieces]
        columns = [
            offsets[0] if len(offsets) == 1 else pa.concat_arrays(offsets),
            timestamps[0] if len(timestamps) == 1 else pa.concat_arrays(timestamps),
            _binary_column([b.keys.slice(s, c) for b, s, c in pieces], large),
            _binary_column([b.values.slice(s, c) for b, s, c in pieces], large),
        ]
    return pa.RecordBatch.from_arrays(
        [
            pa.repeat(pa.scalar(topic, pa.string()), n),
            pa.repeat(pa.scalar(partition, pa.int32()), n),
            *columns,
        ],
        schema=LARGE_BATCH_SCHEMA if large else BATCH_SCHEMA,
    )


_EMPTY: pa.RecordBatch | None = None


def empty_batch() -> pa.RecordBatch:
    """A batch of no records with :data:`BATCH_SCHEMA`."""
    global _EMPTY
    if _EMPTY is None:
        _EMPTY = pa.RecordBatch.from_arrays(
            [pa.array([], field.type) for field in BATCH_SCHEMA], schema=BATCH_SCHEMA
        )
    return _EMPTY


def batch_offsets(batch: pa.RecordBatch) -> Sequence[int]:
    """The ``offset`` column of ``batch`` as a sequence of ints, without copying.

    ``bisect`` and indexing read it without building a Python object per record.
    """
    column = batch.column(2)
    if column.null_count or len(column.buffers()) != 2:
        # Not the plain u64 layout of our batches: fall back to a (per-record) list.
        return list(column.to_pylist())
    data = column.buffers()[1]
    start = column.offset
    view = memoryview(data).cast("Q") if data is not None else memoryview(b"").cast("Q")
    return view[start : start + len(column)]


def batch_max_timestamp(batch: pa.RecordBatch) -> int | None:
    """The largest ``timestamp`` of ``batch``; ``None`` when it is empty."""
    if not batch.num_rows:
        return None
    largest = pc.max(batch.column(3)).as_py()
    return None if largest is None else int(largest)
