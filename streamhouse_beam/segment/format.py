"""The StreamHouse segment file format: constants, struct layouts and the fixed-size parsers.

This docstring is the byte-level specification this package implements (StreamHouse commit
``cbca01eb``, ``crates/streamhouse-storage/src/segment/``). Every fixed-width integer is
big-endian; the only little-endian field is LZ4's 4-byte size prefix.

Layout of one segment object::

    [0, 64)                      header
    [64, index_position)         blocks 0..n-1, back to back, no padding
    [index_position, len - 32)   index: u32 n, then n entries of 24 bytes
    [len - 32, len)              footer

Header (64 bytes)::

    0   4  magic         b"STRM"
    4   2  u16 version   1 (the pre-2026-02-06 layout says 1 as well)
    6   2  u16 compression  0 none, 1 LZ4, 2 Zstd (never written; unsupported)
    8   8  u64 base_offset  offset of the first record appended
    16  8  u64 end_offset   offset of the last record appended (inclusive)
    24  4  u32 record_count
    28  4  u32 block_count  (= index entry count)
    32 32  reserved, zero, never read

Block ``i`` spans ``[index[i].position, index[i+1].position)``; the last one ends at
``index_position``. A block has no framing of its own except, for LZ4, a u32 **LE**
uncompressed length followed by one raw LZ4 *block* (not a frame). Decompressed, a block is a
bare concatenation of records, decoded until the bytes run out::

    offset_delta     zigzag LEB128 (signed)   wrapping u64 difference to the previous record
    timestamp_delta  zigzag LEB128 (signed)   may be negative
    key_len          LEB128 (unsigned)        0 = no key (an empty key is stored the same way)
    key              key_len bytes
    value_len        LEB128 (unsigned)        0 = empty value (there is no null value)
    value            value_len bytes

A varint has at most 10 bytes. The first record of every block has both deltas 0; its
absolute offset and timestamp are the block's index entry (the running state restarts at each
block). Additions wrap modulo 2**64. The legacy layout (written before 2026-02-06, same
version number) did not restart the delta state at a block boundary and stored
``previous block's last offset + 1`` / ``last timestamp`` in the index entries of blocks >= 1;
the rule that reads both is, for the first record of block ``i >= 1``: delta 0 -> the index
offset, otherwise ``index offset - 1 + delta`` (see ``decode.py``).

Index at ``index_position``: u32 entry count, then per block ``u64 first offset``,
``u64 absolute file position`` (block 0 -> 64), ``u64 first timestamp``. Not delta-encoded.

Footer (last 32 bytes)::

    0   8  u64 index_position
    8   4  u32 CRC-32 (IEEE, = zlib.crc32) of bytes [0, len - 32)
    12  4  magic b"STRM"
    16 16  reserved, zero, never read (and not covered by the CRC)

StreamHouse's reader validates, in this order: length >= 96, header magic, version == 1, a
known compression id, then the CRC, then the footer magic, then parses the index. This module
adds the checks StreamHouse omits: ``index_position`` inside the file, the index exactly
filling ``[index_position, len - 32)``, header ``block_count`` equal to the entry count, block
positions strictly ascending from 64, index offsets strictly ascending, and the header's
``base_offset``/``end_offset``/``record_count`` consistent with the index.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from streamhouse_beam.errors import (
    CorruptSegmentError,
    SegmentLimitError,
    TruncatedSegmentError,
    UnsupportedSegmentError,
)

__all__ = [
    "BLOCK_SIZE_TARGET",
    "DEFAULT_MAX_BLOCK_BYTES",
    "FOOTER_SIZE",
    "FOOTER_STRUCT",
    "HEADER_SIZE",
    "HEADER_STRUCT",
    "INDEX_COUNT_STRUCT",
    "INDEX_ENTRY_SIZE",
    "INDEX_ENTRY_STRUCT",
    "LZ4_SIZE_STRUCT",
    "MAGIC",
    "MAX_VARINT_BYTES",
    "MIN_SEGMENT_SIZE",
    "U64_MASK",
    "VERSION",
    "Compression",
    "IndexEntry",
    "SegmentFooter",
    "SegmentHeader",
    "parse_footer",
    "parse_header",
    "parse_index",
]

MAGIC = b"STRM"
VERSION = 1
HEADER_SIZE = 64
FOOTER_SIZE = 32
MIN_SEGMENT_SIZE = HEADER_SIZE + FOOTER_SIZE
INDEX_ENTRY_SIZE = 24
# StreamHouse's compile-time block target: uncompressed encoded record bytes.
BLOCK_SIZE_TARGET = 1 << 20
# A declared LZ4 uncompressed size above this is refused before allocating.
DEFAULT_MAX_BLOCK_BYTES = 64 << 20
MAX_VARINT_BYTES = 10
U64_MASK = (1 << 64) - 1

# magic, version, compression, base_offset, end_offset, record_count, block_count, reserved
HEADER_STRUCT = struct.Struct(">4sHHQQII32x")
# index_position, crc32, magic, reserved
FOOTER_STRUCT = struct.Struct(">QI4s16x")
INDEX_COUNT_STRUCT = struct.Struct(">I")
# offset, position, timestamp
INDEX_ENTRY_STRUCT = struct.Struct(">QQQ")
LZ4_SIZE_STRUCT = struct.Struct("<I")

assert HEADER_STRUCT.size == HEADER_SIZE
assert FOOTER_STRUCT.size == FOOTER_SIZE
assert INDEX_ENTRY_STRUCT.size == INDEX_ENTRY_SIZE


class Compression(enum.IntEnum):
    """The header's compression id; it applies to every block of the segment."""

    NONE = 0
    LZ4 = 1
    ZSTD = 2

    @property
    def label(self) -> str:
        """Lower-case name as the CLI and JSON output spell it: ``none``, ``lz4``, ``zstd``."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Compression:
        """Return the member named ``label`` (``"none"``, ``"lz4"``, ``"zstd"``)."""
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown compression {label!r}; expected none, lz4 or zstd") from None


class SegmentHeader(NamedTuple):
    """The 64-byte header. ``end_offset`` is inclusive."""

    magic: bytes
    version: int
    compression: Compression
    base_offset: int
    end_offset: int
    record_count: int
    block_count: int


class IndexEntry(NamedTuple):
    """One index entry: the first offset, file position and first timestamp of a block."""

    offset: int
    position: int
    timestamp: int


class SegmentFooter(NamedTuple):
    """The 32-byte footer."""

    index_position: int
    crc32: int
    magic: bytes


Buffer = bytes | bytearray | memoryview


def parse_header(buf: Buffer, *, key: str | None = None) -> SegmentHeader:
    """Parse and validate the header at the start of ``buf``.

    Checks, in StreamHouse's order: at least 64 bytes, magic, version, compression id.

    Args:
        buf: the segment bytes (at least the first 64).
        key: object key for error messages.

    Returns:
        The header.

    Raises:
        TruncatedSegmentError: fewer than 64 bytes.
        CorruptSegmentError: wrong magic.
        UnsupportedSegmentError: a version other than 1 or an unknown compression id.
    """
    if len(buf) < HEADER_SIZE:
        raise TruncatedSegmentError(
            f"segment header needs {HEADER_SIZE} bytes, got {len(buf)}", key=key, position=0
        )
    magic, version, compression, base, end, count, blocks = HEADER_STRUCT.unpack_from(buf, 0)
    if magic != MAGIC:
        raise CorruptSegmentError(
            f"bad header magic {bytes(magic)!r}, expected {MAGIC!r}", key=key, position=0
        )
    if version != VERSION:
        raise UnsupportedSegmentError(
            f"unsupported segment version {version} (this reader knows version {VERSION})",
            key=key,
            position=4,
        )
    try:
        comp = Compression(compression)
    except ValueError:
        raise UnsupportedSegmentError(
            f"unknown compression id {compression} (known: 0 none, 1 lz4, 2 zstd)",
            key=key,
            position=6,
        ) from None
    return SegmentHeader(magic, version, comp, base, end, count, blocks)


def parse_footer(buf: Buffer, file_length: int, *, key: str | None = None) -> SegmentFooter:
    """Parse the footer from the last 32 bytes of ``buf`` and validate its fields.

    The CRC is *not* checked here (it needs the whole file; see ``SegmentReader``). Checks that
    the footer magic is ``STRM`` and that ``index_position`` leaves room for the index between
    the header and the footer.

    Args:
        buf: at least the last 32 bytes of the segment (its tail is used).
        file_length: total length of the segment object.
        key: object key for error messages.

    Returns:
        The footer.

    Raises:
        TruncatedSegmentError: the file or ``buf`` is too short to hold a footer.
        CorruptSegmentError: wrong footer magic or ``index_position`` out of range.
    """
    if file_length < MIN_SEGMENT_SIZE:
        raise TruncatedSegmentError(
            f"segment is {file_length} bytes, shorter than header + footer ({MIN_SEGMENT_SIZE})",
            key=key,
            position=file_length,
        )
    if len(buf) < FOOTER_SIZE:
        raise TruncatedSegmentError(
            f"footer needs {FOOTER_SIZE} bytes, got {len(buf)}",
            key=key,
            position=file_length - FOOTER_SIZE,
        )
    footer_pos = file_length - FOOTER_SIZE
    index_position, crc, magic = FOOTER_STRUCT.unpack_from(buf, len(buf) - FOOTER_SIZE)
    if magic != MAGIC:
        raise CorruptSegmentError(
            f"bad footer magic {bytes(magic)!r}, expected {MAGIC!r}",
            key=key,
            position=footer_pos + 12,
        )
    if not HEADER_SIZE <= index_position <= footer_pos - INDEX_COUNT_STRUCT.size:
        raise CorruptSegmentError(
            f"footer index_position {index_position} is outside the file's index area "
            f"[{HEADER_SIZE}, {footer_pos - INDEX_COUNT_STRUCT.size}]",
            key=key,
            position=footer_pos,
        )
    return SegmentFooter(index_position, crc, bytes(magic))


def parse_index(
    buf: Buffer,
    *,
    index_position: int,
    index_end: int,
    block_count_hint: int | None = None,
    key: str | None = None,
    base: int = 0,
) -> list[IndexEntry]:
    """Parse and range-check the block index occupying ``[index_position, index_end)``.

    Args:
        buf: bytes holding the index; ``buf[0]`` is file position ``base``. Pass the whole
            segment with ``base=0``, or just the ranged index bytes with
            ``base=index_position``.
        index_position: file position of the index (from the footer).
        index_end: file position where the index ends (= file length - 32).
        block_count_hint: the header's ``block_count``; when given it must equal the entry
            count.
        key: object key for error messages.
        base: file position of ``buf[0]``.

    Returns:
        The entries in block order.

    Raises:
        TruncatedSegmentError: ``buf`` does not cover the index range.
        CorruptSegmentError: the entry count does not fill the range exactly, differs from
            ``block_count_hint``, or positions/offsets are not strictly ascending, or a
            position lies outside ``[64, index_position)``.
    """
    start = index_position - base
    length = index_end - index_position
    if start < 0 or length < INDEX_COUNT_STRUCT.size:
        raise CorruptSegmentError(
            f"index area [{index_position}, {index_end}) cannot hold an entry count",
            key=key,
            position=index_position,
        )
    if start + length > len(buf):
        raise TruncatedSegmentError(
            f"index [{index_position}, {index_end}) lies beyond the {len(buf)} bytes available",
            key=key,
            position=base + len(buf),
        )
    (count,) = INDEX_COUNT_STRUCT.unpack_from(buf, start)
    expected = INDEX_COUNT_STRUCT.size + INDEX_ENTRY_SIZE * count
    if expected != length:
        raise CorruptSegmentError(
            f"index declares {count} entries ({expected} bytes) but the index area between "
            f"index_position and the footer is {length} bytes",
            key=key,
            position=index_position,
        )
    if block_count_hint is not None and block_count_hint != count:
        raise CorruptSegmentError(
            f"header block_count {block_count_hint} differs from the index entry count {count}",
            key=key,
            position=28,
        )
    if count > (1 << 24):
        # 16M blocks of >= 1 byte each is already implausible; keeps a hostile count cheap.
        raise SegmentLimitError(f"index declares {count} blocks", key=key, position=index_position)
    entries = [
        IndexEntry(o, p, t)
        for o, p, t in INDEX_ENTRY_STRUCT.iter_unpack(
            buf[start + INDEX_COUNT_STRUCT.size : start + length]
        )
    ]
    prev_offset = -1
    prev_position = HEADER_SIZE - 1
    for i, entry in enumerate(entries):
        where = index_position + INDEX_COUNT_STRUCT.size + INDEX_ENTRY_SIZE * i
        if i == 0 and entry.position != HEADER_SIZE:
            raise CorruptSegmentError(
                f"index entry 0 places block 0 at {entry.position}, expected {HEADER_SIZE}",
                key=key,
                position=where + 8,
            )
        if not prev_position < entry.position < index_position:
            raise CorruptSegmentError(
                f"index entry {i} position {entry.position} is not after the previous block "
                f"({prev_position}) and before the index ({index_position})",
                key=key,
                position=where + 8,
            )
        if entry.offset <= prev_offset:
            raise CorruptSegmentError(
                f"index entry {i} offset {entry.offset} does not exceed the previous entry's "
                f"offset {prev_offset}",
                key=key,
                position=where,
            )
        prev_offset = entry.offset
        prev_position = entry.position
    if not entries and index_position != HEADER_SIZE:
        raise CorruptSegmentError(
            f"index has no entries but {index_position - HEADER_SIZE} block bytes precede it",
            key=key,
            position=index_position,
        )
    return entries
