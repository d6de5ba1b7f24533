"""Read a StreamHouse segment: header -> footer -> index -> block(offset) -> records.

Two ways in:

- ``SegmentReader(data)`` over the whole object in memory (``bytes``/``memoryview``). The
  CRC-32 is verified on construction unless ``verify_crc=False``; blocks are sliced from the
  buffer without copying and decoded only when asked for.
- ``SegmentReader.from_ranges(size, fetch)`` (or :meth:`SegmentReader.from_index` when the
  caller already holds the parsed header, footer and index) for range reads: the footer,
  header and index are fetched first, then only the blocks a read needs. The CRC covers the
  whole prefix of the file, so it **cannot** be verified on this path:
  :attr:`SegmentReader.crc_verified` is ``False``.

Validation follows StreamHouse's reader order (length, header magic, version, compression id,
CRC, footer magic, index) and adds checks of its own: ``index_position`` range,
the index exactly filling its area, ``block_count`` equal to the entry count, block positions
strictly ascending from 64, index offsets strictly ascending, header ``base_offset`` equal to
the first entry, ``end_offset`` not below the last entry, and per decoded block that the
records stay between their index entry and the next one (the last block ending exactly at
``end_offset``) and are no more than that offset span can hold. A full read also checks the decoded
record count and the last offset against the header.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from streamhouse_beam.errors import (
    ChecksumMismatchError,
    CorruptSegmentError,
    TruncatedSegmentError,
)
from streamhouse_beam.segment import decode as _decode
from streamhouse_beam.segment.format import (
    DEFAULT_MAX_BLOCK_BYTES,
    FOOTER_SIZE,
    HEADER_SIZE,
    MIN_SEGMENT_SIZE,
    Compression,
    IndexEntry,
    SegmentFooter,
    SegmentHeader,
    parse_footer,
    parse_header,
    parse_index,
)

if TYPE_CHECKING:
    from streamhouse_beam.segment.columns import BlockColumns

__all__ = ["FetchRange", "Record", "SegmentReader", "check_header_against_index"]

Record = tuple[int, int, "bytes | None", bytes]
Buffer = bytes | bytearray | memoryview
#: ``fetch(start, end)`` returns the object's bytes ``[start, end)``.
FetchRange = Callable[[int, int], Buffer]


def check_header_against_index(
    header: SegmentHeader, index: list[IndexEntry], *, key: str | None = None
) -> None:
    """Check the header's counts and offsets against the parsed index.

    Raises:
        CorruptSegmentError: ``block_count`` differs from the entry count, ``base_offset``
            differs from the first entry, ``end_offset`` lies below the last entry, or
            ``record_count`` is smaller than the number of blocks (each block holds at least
            one record).
    """
    if header.block_count != len(index):
        raise CorruptSegmentError(
            f"header block_count {header.block_count} differs from the index entry count "
            f"{len(index)}",
            key=key,
            position=28,
        )
    if not index:
        if header.record_count:
            raise CorruptSegmentError(
                f"header declares {header.record_count} records but the segment has no blocks",
                key=key,
                position=24,
            )
        return
    if header.base_offset != index[0].offset:
        raise CorruptSegmentError(
            f"header base_offset {header.base_offset} differs from block 0's first offset "
            f"{index[0].offset}",
            key=key,
            position=8,
        )
    if header.end_offset < index[-1].offset:
        raise CorruptSegmentError(
            f"header end_offset {header.end_offset} lies below the last block's first offset "
            f"{index[-1].offset}",
            key=key,
            position=16,
        )
    if header.record_count < len(index):
        raise CorruptSegmentError(
            f"header record_count {header.record_count} is smaller than the block count "
            f"{len(index)}",
            key=key,
            position=24,
        )


class SegmentReader:
    """Random access to the records of one segment.

    Args:
        data: the whole segment object.
        key: object key (or path), named in every error.
        verify_crc: check the footer's CRC-32 over ``[0, len - 32)`` (default on).
        max_block_bytes: largest declared LZ4 uncompressed block size accepted.

    Raises:
        SegmentError: a subclass naming what is wrong and where (see ``format.py``).
    """

    def __init__(
        self,
        data: Buffer,
        *,
        key: str | None = None,
        verify_crc: bool = True,
        max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
    ) -> None:
        if max_block_bytes <= 0:
            raise ValueError(f"max_block_bytes must be positive, got {max_block_bytes}")
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        size = len(view)
        if size < MIN_SEGMENT_SIZE:
            raise TruncatedSegmentError(
                f"segment is {size} bytes, shorter than header + footer ({MIN_SEGMENT_SIZE})",
                key=key,
                position=size,
            )
        header = parse_header(view, key=key)
        footer_pos = size - FOOTER_SIZE
        if verify_crc:
            # StreamHouse checks the CRC before the footer magic; so do we.
            stored_crc = _peek_footer_crc(view, footer_pos)
            actual = zlib.crc32(view[:footer_pos])
            if actual != stored_crc:
                raise ChecksumMismatchError(
                    f"CRC-32 of bytes [0, {footer_pos}) is {actual:#010x}, footer says "
                    f"{stored_crc:#010x}",
                    key=key,
                    position=footer_pos + 8,
                )
        footer = parse_footer(view[footer_pos:], size, key=key)
        index = parse_index(
            view,
            index_position=footer.index_position,
            index_end=footer_pos,
            block_count_hint=None,
            key=key,
        )
        check_header_against_index(header, index, key=key)
        self._init(header, footer, index, key, size, max_block_bytes, verify_crc)
        self._view: memoryview | None = view
        self._fetch: FetchRange | None = None

    def _init(
        self,
        header: SegmentHeader,
        footer: SegmentFooter,
        index: list[IndexEntry],
        key: str | None,
        size: int,
        max_block_bytes: int,
        crc_verified: bool,
    ) -> None:
        self._header = header
        self._footer = footer
        self._index = index
        self._index_offsets = [e.offset for e in index]
        self._key = key
        self._size = size
        self._max_block_bytes = max_block_bytes
        self.crc_verified = crc_verified
        """Whether the CRC-32 was checked (never on the range-read path)."""

    @classmethod
    def from_index(
        cls,
        header: SegmentHeader,
        footer: SegmentFooter,
        index: list[IndexEntry],
        fetch_block: FetchRange,
        *,
        key: str | None = None,
        size: int,
        max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
    ) -> SegmentReader:
        """Build a reader that fetches each block on demand (range reads).

        The CRC is not verified (``crc_verified`` is ``False``): it covers the whole prefix of
        the file, which this path never holds. Header and index are cross-checked as usual.

        Args:
            header: the parsed header (``parse_header``).
            footer: the parsed footer (``parse_footer``).
            index: the parsed index (``parse_index``).
            fetch_block: ``fetch_block(start, end)`` returns the object's bytes
                ``[start, end)``; called once per decoded block.
            key: object key, for errors.
            size: total object size in bytes.
            max_block_bytes: largest declared LZ4 uncompressed block size accepted.
        """
        if max_block_bytes <= 0:
            raise ValueError(f"max_block_bytes must be positive, got {max_block_bytes}")
        if footer.index_position > size - FOOTER_SIZE:
            raise CorruptSegmentError(
                f"index_position {footer.index_position} lies beyond the footer of a "
                f"{size}-byte segment",
                key=key,
                position=size - FOOTER_SIZE,
            )
        check_header_against_index(header, index, key=key)
        self = cls.__new__(cls)
        self._init(header, footer, index, key, size, max_block_bytes, False)
        self._view = None
        self._fetch = fetch_block
        return self

    @classmethod
    def from_ranges(
        cls,
        size: int,
        fetch: FetchRange,
        *,
        key: str | None = None,
        max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
    ) -> SegmentReader:
        """Open a segment of ``size`` bytes through ranged fetches (three small ones, then blocks).

        Fetches the 32-byte footer, the 64-byte header and ``[index_position, size - 32)``,
        validates them in StreamHouse's order (minus the CRC, which cannot be checked here),
        then returns a reader that fetches blocks on demand.

        Args:
            size: the object's size in bytes (from the store's HEAD / listing).
            fetch: ``fetch(start, end)`` returns the object's bytes ``[start, end)``.
            key: object key, for errors.
            max_block_bytes: largest declared LZ4 uncompressed block size accepted.
        """
        if size < MIN_SEGMENT_SIZE:
            raise TruncatedSegmentError(
                f"segment is {size} bytes, shorter than header + footer ({MIN_SEGMENT_SIZE})",
                key=key,
                position=size,
            )
        header = parse_header(_fetch_exact(fetch, 0, HEADER_SIZE, key), key=key)
        footer_pos = size - FOOTER_SIZE
        footer = parse_footer(_fetch_exact(fetch, footer_pos, size, key), size, key=key)
        index_bytes = _fetch_exact(fetch, footer.index_position, footer_pos, key)
        index = parse_index(
            index_bytes,
            index_position=footer.index_position,
            index_end=footer_pos,
            key=key,
            base=footer.index_position,
        )
        return cls.from_index(
            header, footer, index, fetch, key=key, size=size, max_block_bytes=max_block_bytes
        )

    # ---------------------------------------------------------------------------- properties

    @property
    def header(self) -> SegmentHeader:
        """The parsed 64-byte header."""
        return self._header

    @property
    def footer(self) -> SegmentFooter:
        """The parsed 32-byte footer."""
        return self._footer

    @property
    def index(self) -> list[IndexEntry]:
        """One entry per block, in block order (a copy)."""
        return list(self._index)

    @property
    def key(self) -> str | None:
        """Object key used in errors, or ``None``."""
        return self._key

    @property
    def size(self) -> int:
        """Size of the segment object in bytes."""
        return self._size

    @property
    def compression(self) -> Compression:
        """Compression of every block."""
        return self._header.compression

    @property
    def block_count(self) -> int:
        """Number of blocks (= index entries)."""
        return len(self._index)

    # ------------------------------------------------------------------------------- access

    def block_for_offset(self, offset: int) -> int:
        """Return the block that holds ``offset``: the last entry whose offset is <= it, else 0."""
        return max(bisect.bisect_right(self._index_offsets, offset) - 1, 0)

    def block_range(self, i: int) -> tuple[int, int]:
        """Return the file byte span ``[start, end)`` of block ``i``."""
        if not 0 <= i < len(self._index):
            raise IndexError(f"block {i} out of range: segment has {len(self._index)} blocks")
        start = self._index[i].position
        end = (
            self._index[i + 1].position if i + 1 < len(self._index) else self._footer.index_position
        )
        return start, end

    def decode_block(self, i: int) -> list[Record]:
        """Decompress and decode block ``i``.

        Raises:
            IndexError: ``i`` is not a block number (an argument error).
            SegmentError: the block is corrupt, truncated, too large or unsupported.
        """
        raw, start = self._raw_block(i)
        entry = self._index[i]
        records: list[Record] = _decode.decode_records(
            raw, entry.offset, entry.timestamp, i > 0, self._key, start
        )
        if records:
            self._check_block(i, len(records), records[0][0], records[-1][0], start)
        else:
            self._check_block(i, 0, 0, 0, start)
        return records

    def decode_block_columns(self, i: int) -> BlockColumns:
        """Decompress and decode block ``i`` into Arrow columns (needs ``pyarrow``).

        The same records, checks and errors as :meth:`decode_block`, without a Python object
        per record (:func:`streamhouse_beam.segment.decode.decode_columns`).

        Raises:
            IndexError: ``i`` is not a block number (an argument error).
            SegmentError: the block is corrupt, truncated, too large or unsupported.
        """
        from streamhouse_beam.segment.columns import BlockColumns

        raw, start = self._raw_block(i)
        entry = self._index[i]
        block = BlockColumns(
            _decode.decode_columns(raw, entry.offset, entry.timestamp, i > 0, self._key, start)
        )
        offsets = block.offset_list
        n = len(offsets)
        self._check_block(i, n, offsets[0] if n else 0, offsets[-1] if n else 0, start)
        return block

    def _raw_block(self, i: int) -> tuple[Buffer, int]:
        """The decompressed bytes of block ``i`` and its file position."""
        start, end = self.block_range(i)
        stored = self._read(start, end)
        raw = _decode.decompress_block(
            stored,
            self._header.compression,
            max_bytes=self._max_block_bytes,
            key=self._key,
            position=start,
        )
        return raw, start

    def _check_block(self, i: int, count: int, first: int, last: int, start: int) -> None:
        """Check block ``i``'s decoded records (``count``, first and last offset) against the index."""
        entry = self._index[i]
        key = self._key
        if not count:
            raise CorruptSegmentError(f"block {i} holds no records", key=key, position=start)
        if first < entry.offset:
            raise CorruptSegmentError(
                f"block {i} starts at offset {first}, below its index entry {entry.offset}",
                key=key,
                position=start,
            )
        if i + 1 < len(self._index):
            limit = self._index[i + 1].offset
            if last >= limit:
                raise CorruptSegmentError(
                    f"block {i} ends at offset {last}, not below block {i + 1}'s first offset "
                    f"{limit}",
                    key=key,
                    position=start,
                )
        else:
            limit = self._header.end_offset + 1
            if last != self._header.end_offset:
                raise CorruptSegmentError(
                    f"last block ends at offset {last} but the header's end_offset is "
                    f"{self._header.end_offset}",
                    key=key,
                    position=start,
                )
        # Offsets strictly increase, so a block cannot hold more records than its offset span;
        # an O(1) check that catches repeated offsets (e.g. a block of zero bytes).
        if count > limit - entry.offset:
            raise CorruptSegmentError(
                f"block {i} holds {count} records but its offsets span only "
                f"{entry.offset}..{limit - 1}",
                key=key,
                position=start,
            )

    def records(self, from_offset: int | None = None) -> Iterator[Record]:
        """Yield ``(offset, timestamp, key, value)`` from ``from_offset`` (or the start) to the end.

        Only the block containing ``from_offset`` and the following ones are decoded; records
        below ``from_offset`` in that block are dropped. Like StreamHouse, an offset in a gap
        starts at the next existing record and one above ``end_offset`` yields nothing.
        After a full iteration from the start the decoded count is checked against the
        header's ``record_count``.
        """
        if not self._index:
            return
        if from_offset is not None and from_offset > self._header.end_offset:
            return
        first = 0 if from_offset is None else self.block_for_offset(from_offset)
        total = 0
        for i in range(first, len(self._index)):
            block = self.decode_block(i)
            if i == first and from_offset is not None and block[0][0] < from_offset:
                block = [r for r in block if r[0] >= from_offset]
            total += len(block)
            yield from block
        if from_offset is None or (first == 0 and from_offset <= self._header.base_offset):
            self._check_total(total)

    def read_from_offset(self, offset: int) -> list[Record]:
        """Return every record with offset >= ``offset`` (StreamHouse's ``read_from_offset``)."""
        return list(self.records(offset))

    def read_all(self) -> list[Record]:
        """Return every record of the segment, checking the count against the header."""
        out: list[Record] = []
        for i in range(len(self._index)):
            out += self.decode_block(i)
        self._check_total(len(out))
        return out

    # ----------------------------------------------------------------------------- internals

    def _check_total(self, total: int) -> None:
        if total != self._header.record_count:
            raise CorruptSegmentError(
                f"decoded {total} records but the header's record_count is "
                f"{self._header.record_count}",
                key=self._key,
                position=24,
            )

    def _read(self, start: int, end: int) -> Buffer:
        if self._view is not None:
            return self._view[start:end]
        assert self._fetch is not None
        return _fetch_exact(self._fetch, start, end, self._key)

    def __repr__(self) -> str:
        h = self._header
        return (
            f"SegmentReader(key={self._key!r}, size={self._size}, compression={h.compression.label}, "
            f"offsets={h.base_offset}..{h.end_offset}, records={h.record_count}, "
            f"blocks={len(self._index)}, crc_verified={self.crc_verified})"
        )


def _peek_footer_crc(view: memoryview, footer_pos: int) -> int:
    """Read the stored CRC before validating the footer (StreamHouse checks it first)."""
    return int.from_bytes(view[footer_pos + 8 : footer_pos + 12], "big")


def _fetch_exact(fetch: FetchRange, start: int, end: int, key: str | None) -> Buffer:
    """Fetch ``[start, end)`` and insist on getting exactly that many bytes."""
    data = fetch(start, end)
    if len(data) != end - start:
        raise TruncatedSegmentError(
            f"asked for bytes [{start}, {end}) of the segment, got {len(data)} bytes",
            key=key,
            position=start + len(data),
        )
    return data
