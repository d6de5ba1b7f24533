"""Write segments exactly as StreamHouse's ``SegmentWriter`` does.

Used by the testing utilities, the demo and anyone building fixtures. With compression none
the output is byte-identical to StreamHouse's; with LZ4 the framing (4-byte LE size prefix +
one raw LZ4 block) and the decompressed content are identical, while the compressed bytes come
from liblz4 (``lz4.block``) rather than Rust's ``lz4_flex`` and may differ.

Block cutting follows StreamHouse: *before* appending a record, if the uncompressed block
buffer already holds ``>= block_size_target`` bytes, the block is closed. Every block's first
record has deltas 0 and its absolute offset/timestamp in the index entry. With
``legacy_block_boundaries=True`` the writer reproduces the pre-2026-02-06 layout instead
(where a block after the first may start with a non-zero offset delta, counted from the
previous block's last offset) so readers can be tested against it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import lz4.block

from streamhouse_beam.segment.format import (
    BLOCK_SIZE_TARGET,
    FOOTER_SIZE,
    FOOTER_STRUCT,
    HEADER_SIZE,
    HEADER_STRUCT,
    INDEX_COUNT_STRUCT,
    INDEX_ENTRY_SIZE,
    INDEX_ENTRY_STRUCT,
    MAGIC,
    U64_MASK,
    VERSION,
    Compression,
    IndexEntry,
)

__all__ = ["SegmentWriter", "encode_uvarint", "encode_zigzag", "write_segment"]

_ONE_BYTE = tuple(bytes((b,)) for b in range(128))


def encode_uvarint(value: int) -> bytes:
    """Encode ``0 <= value < 2**64`` as unsigned LEB128."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_zigzag(delta_u64: int) -> bytes:
    """Encode a wrapping u64 difference, reinterpreted as i64, as a zigzag varint."""
    signed = delta_u64 - (1 << 64) if delta_u64 >= 1 << 63 else delta_u64
    return encode_uvarint((signed << 1) if signed >= 0 else ((-signed) << 1) - 1)


class SegmentWriter:
    """Accumulates records and produces one segment file.

    Args:
        compression: ``Compression.NONE`` or ``Compression.LZ4`` (Zstd is refused, as
            StreamHouse refuses it).
        block_size_target: uncompressed bytes after which the next record starts a new block
            (StreamHouse's constant is 1 MiB; smaller values are for tests).
        legacy_block_boundaries: write the pre-2026-02-06 layout (index entries of blocks >= 1
            hold the previous block's last offset + 1 and last timestamp; deltas are not reset
            at block boundaries).

    Raises:
        ValueError: an unsupported compression or a non-positive ``block_size_target``.
    """

    def __init__(
        self,
        compression: Compression = Compression.LZ4,
        *,
        block_size_target: int = BLOCK_SIZE_TARGET,
        legacy_block_boundaries: bool = False,
    ) -> None:
        compression = Compression(compression)
        if compression not in (Compression.NONE, Compression.LZ4):
            raise ValueError(f"compression must be none or lz4, got {compression.label}")
        if block_size_target <= 0:
            raise ValueError(f"block_size_target must be positive, got {block_size_target}")
        self._compression = compression
        self._target = block_size_target
        self._legacy = legacy_block_boundaries
        self._blocks: list[bytes] = []
        self._stored_size = 0
        self._index: list[IndexEntry] = []
        self._buf = bytearray()
        self._count = 0
        self._base_offset: int | None = None
        self._last_offset = 0
        self._first_ts = 0
        self._last_ts = 0
        self._finished = False

    # ------------------------------------------------------------------------------ appending

    def append(self, offset: int, timestamp: int, key: bytes | None, value: bytes) -> None:
        """Append one record.

        Args:
            offset: u64 offset; must exceed the previous record's.
            timestamp: u64 timestamp in ms (may go backwards).
            key: the key, or ``None``; an empty key is stored as no key, like StreamHouse.
            value: the value (may be empty).

        Raises:
            ValueError: out-of-range or non-increasing offset, out-of-range timestamp, or
                ``append`` after ``finish``.
            TypeError: key or value not bytes-like.
        """
        if self._finished:
            raise ValueError("append after finish(): the segment is already written")
        if not 0 <= offset <= U64_MASK:
            raise ValueError(f"offset must be a u64, got {offset}")
        if not 0 <= timestamp <= U64_MASK:
            raise ValueError(f"timestamp must be a u64, got {timestamp}")
        if self._base_offset is not None and offset <= self._last_offset:
            raise ValueError(
                f"offset {offset} does not exceed the previous offset {self._last_offset}"
            )
        if key is not None and not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError(f"key must be bytes or None, got {type(key).__name__}")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"value must be bytes, got {type(value).__name__}")
        buf = self._buf
        if len(buf) >= self._target:
            self._flush_block()
        if not buf:
            position = HEADER_SIZE + self._stored_size
            if self._legacy and self._index:
                # Pre-d40727a: the entry describes where the previous block's state left off.
                entry = IndexEntry((self._last_offset + 1) & U64_MASK, position, self._last_ts)
                od = (offset - self._last_offset) & U64_MASK
                td = (timestamp - self._last_ts) & U64_MASK
            else:
                entry = IndexEntry(offset, position, timestamp)
                od = td = 0
            self._index.append(entry)
        else:
            od = (offset - self._last_offset) & U64_MASK
            td = (timestamp - self._last_ts) & U64_MASK
        buf += encode_zigzag(od)
        buf += encode_zigzag(td)
        if key:
            buf += encode_uvarint(len(key))
            buf += key
        else:
            buf.append(0)
        buf += encode_uvarint(len(value))
        buf += value
        if self._base_offset is None:
            self._base_offset = offset
            self._first_ts = timestamp
        self._last_offset = offset
        self._last_ts = timestamp
        self._count += 1

    def _flush_block(self) -> None:
        raw = bytes(self._buf)
        if self._compression == Compression.LZ4:
            stored = lz4.block.compress(raw, store_size=True)
        else:
            stored = raw
        self._blocks.append(stored)
        self._stored_size += len(stored)
        self._buf.clear()

    # ------------------------------------------------------------------------------ finishing

    def finish(self) -> bytes:
        """Close the last block and return the whole segment file.

        A writer with no records produces a segment with no blocks (base and end offset 0).

        Raises:
            ValueError: ``finish`` called twice.
        """
        if self._finished:
            raise ValueError("finish() was already called")
        if self._buf:
            self._flush_block()
        self._finished = True
        header = HEADER_STRUCT.pack(
            MAGIC,
            VERSION,
            int(self._compression),
            self.base_offset,
            self.end_offset,
            self._count,
            len(self._index),
        )
        index = bytearray(INDEX_COUNT_STRUCT.pack(len(self._index)))
        for entry in self._index:
            index += INDEX_ENTRY_STRUCT.pack(*entry)
        body = b"".join([header, *self._blocks, index])
        self._blocks = []
        index_position = HEADER_SIZE + self._stored_size
        footer = FOOTER_STRUCT.pack(index_position, zlib.crc32(body), MAGIC)
        return body + footer

    # ----------------------------------------------------------------------------- properties

    @property
    def compression(self) -> Compression:
        """The segment's compression."""
        return self._compression

    @property
    def base_offset(self) -> int:
        """Offset of the first appended record (0 before any)."""
        return self._base_offset if self._base_offset is not None else 0

    @property
    def end_offset(self) -> int:
        """Offset of the last appended record, inclusive (0 before any)."""
        return self._last_offset if self._base_offset is not None else 0

    @property
    def record_count(self) -> int:
        """Number of records appended."""
        return self._count

    @property
    def min_timestamp(self) -> int:
        """Timestamp of the *first* appended record, as StreamHouse's metadata stores it."""
        return self._first_ts

    @property
    def max_timestamp(self) -> int:
        """Timestamp of the *last* appended record, as StreamHouse's metadata stores it."""
        return self._last_ts

    @property
    def estimated_size(self) -> int:
        """Bytes the segment would take if finished now (the open block counted uncompressed)."""
        blocks = len(self._index)
        return (
            HEADER_SIZE
            + self._stored_size
            + len(self._buf)
            + INDEX_COUNT_STRUCT.size
            + INDEX_ENTRY_SIZE * blocks
            + FOOTER_SIZE
        )


def write_segment(
    records: Iterable[tuple[int, int, bytes | None, bytes]],
    compression: Compression = Compression.LZ4,
    *,
    block_size_target: int = BLOCK_SIZE_TARGET,
    legacy_block_boundaries: bool = False,
) -> bytes:
    """Write ``(offset, timestamp, key, value)`` records into one segment and return its bytes."""
    writer = SegmentWriter(
        compression,
        block_size_target=block_size_target,
        legacy_block_boundaries=legacy_block_boundaries,
    )
    for offset, timestamp, key, value in records:
        writer.append(offset, timestamp, key, value)
    return writer.finish()
