"""Block decompression and record decoding: the hot path of every read.

:func:`decode_records` turns one *decompressed* block into record tuples. It is the pure-Python
:func:`decode_records_py` unless the optional C accelerator
``streamhouse_beam.segment._speedups`` is importable, which implements exactly the same
contract (below); set ``STREAMHOUSE_BEAM_PURE_PYTHON=1`` to force the pure-Python path.

Contract of ``decode_records(data, first_offset, first_timestamp, legacy, key, position)``
(both implementations):

- ``data``: ``bytes``, ``bytearray`` or ``memoryview`` (C-contiguous, 1-byte items) holding
  the concatenated records of one block, decoded until the end of ``data``.
- ``first_offset``, ``first_timestamp``: the block's index entry, ints in ``[0, 2**64)``. The
  running offset/timestamp start at these and each record adds its zigzag-decoded delta with
  wrapping u64 arithmetic (``(x + delta) mod 2**64``).
- ``legacy``: true for blocks ``i >= 1``. Then the *first* record's offset is
  ``first_offset`` when its offset delta is 0, else ``(first_offset - 1 + delta) mod 2**64``
  (the rule of StreamHouse's writer before 2026-02-06; identical to the current rule for current files).
  Its timestamp is always ``first_timestamp + delta``. Later records are unaffected.
- Returns ``list[tuple[int, int, bytes | None, bytes]]``: ``(offset, timestamp, key, value)``
  per record in block order; ``key`` is ``None`` when ``key_len == 0``; ``key`` and ``value``
  are new ``bytes`` objects (never views). Empty ``data`` returns ``[]``.
- ``key`` (``str | None``) and ``position`` (``int``, file position of the block) only feed
  errors; both end up on the raised exception as ``.key`` / ``.position``
  (``SegmentError(message, key=key, position=position)``).
- Errors (from ``streamhouse_beam.errors``); nothing else ever escapes. Records are decoded
  in order and the first problem met raises; the fields of a record are examined in the
  order offset delta, timestamp delta, key length, key, value length, value:

  - ``CorruptSegmentError`` when a varint's first 10 bytes all carry the continuation bit
    (checked before running out of data, so 10 such bytes at the very end are "corrupt", 9
    are "truncated"). Message: ``"varint longer than 10 bytes at block byte {s}"``, ``s`` the
    in-block position of the varint's first byte.
  - ``TruncatedSegmentError`` when ``data`` ends inside a record. Message:
    ``"record at block byte {r} is truncated: {field} needs bytes up to block byte {need},
    block has {n}"`` with ``r`` the in-block position of the record's first byte, ``n =
    len(data)``, ``field`` one of ``offset delta``, ``timestamp delta``, ``key length``,
    ``key``, ``value length``, ``value``; for a varint field ``need = n + 1``, for ``key`` /
    ``value`` ``need`` = the field's first in-block byte + its declared length (an exact
    Python int, possibly far beyond ``n``).

  The exception's ``str()`` is the message followed by `` (segment '{key}', byte
  {position})`` as :class:`~streamhouse_beam.errors.SegmentError` formats it. A 10-byte
  varint's bits above bit 63 are dropped (as StreamHouse's decoder does); that applies to
  deltas and lengths alike.
"""

from __future__ import annotations

import array
import itertools
import operator
from collections.abc import Callable

import lz4.block

from streamhouse_beam._accel import accelerator
from streamhouse_beam.errors import (
    CorruptSegmentError,
    SegmentLimitError,
    TruncatedSegmentError,
    UnsupportedSegmentError,
)
from streamhouse_beam.segment.format import LZ4_SIZE_STRUCT, U64_MASK, Compression

__all__ = [
    "ColumnBuffers",
    "Record",
    "decode_columns",
    "decode_columns_py",
    "decode_records",
    "decode_records_py",
    "decompress_block",
    "records_to_buffers",
    "speedups_active",
]

Record = tuple[int, int, "bytes | None", bytes]
Buffer = bytes | bytearray | memoryview

_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)
_THIRD = operator.itemgetter(2)
_FOURTH = operator.itemgetter(3)

# zigzag decoding of every one-byte varint, so the common case is a tuple lookup.
_ZIGZAG1 = tuple((b >> 1) ^ -(b & 1) for b in range(128))


def _read_uvarint(data: bytes, i: int) -> tuple[int, int]:
    """Read an unsigned LEB128 at ``i``; return ``(value, next index)``.

    Raises ``IndexError`` at the end of ``data`` and ``OverflowError`` past 10 bytes; callers
    turn both into segment errors with the record's position.
    """
    b = data[i]
    if b < 0x80:
        return b, i + 1
    result = b & 0x7F
    shift = 7
    i += 1
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & U64_MASK, i
        shift += 7
        if shift >= 70:
            raise OverflowError


def _decode_record_slow(data: bytes, pos: int) -> tuple[int, int, bytes | None, bytes, int]:
    """Decode one record of any shape at ``pos``: ``(off_delta, ts_delta, key, value, next)``.

    Raises ``IndexError``/``OverflowError`` like :func:`_read_uvarint`, and ``EOFError`` with
    the field name when a key or value runs past the end.
    """
    u, i = _read_uvarint(data, pos)
    od = (u >> 1) ^ -(u & 1)
    u, i = _read_uvarint(data, i)
    td = (u >> 1) ^ -(u & 1)
    kl, i = _read_uvarint(data, i)
    if kl:
        j = i + kl
        if j > len(data):
            raise EOFError("key", j)
        k: bytes | None = data[i:j]
        i = j
    else:
        k = None
    vl, i = _read_uvarint(data, i)
    j = i + vl
    if j > len(data):
        raise EOFError("value", j)
    return od, td, k, data[i:j], j


def _record_error(data: bytes, pos: int, key: str | None, position: int) -> Exception:
    """Work out precisely why the record at ``pos`` cannot be decoded and build the error."""
    n = len(data)
    i = pos
    prev = 0
    for field in ("offset delta", "timestamp delta", "key length", "key", "value length", "value"):
        if field in ("key", "value"):
            length = prev
            if i + length > n:
                return TruncatedSegmentError(
                    f"record at block byte {pos} is truncated: {field} needs bytes up to block "
                    f"byte {i + length}, block has {n}",
                    key=key,
                    position=position,
                )
            i += length
            continue
        start = i
        while i < n and i - start < 10 and data[i] & 0x80:
            i += 1
        if i - start >= 10:
            return CorruptSegmentError(
                f"varint longer than 10 bytes at block byte {start}", key=key, position=position
            )
        if i >= n:
            return TruncatedSegmentError(
                f"record at block byte {pos} is truncated: {field} needs bytes up to block "
                f"byte {i + 1}, block has {n}",
                key=key,
                position=position,
            )
        prev = 0
        shift = 0
        for b in data[start : i + 1]:
            prev |= (b & 0x7F) << shift
            shift += 7
        prev &= U64_MASK
        i += 1
    # The record decodes after all: the failure was elsewhere (should not happen).
    return CorruptSegmentError(
        f"record at block byte {pos} cannot be decoded", key=key, position=position
    )


def decode_records_py(
    data: Buffer,
    first_offset: int,
    first_timestamp: int,
    legacy: bool,
    key: str | None,
    position: int,
) -> list[tuple[int, int, bytes | None, bytes]]:
    """Decode one decompressed block into ``(offset, timestamp, key, value)`` tuples.

    Pure-Python implementation of the contract in this module's docstring.

    Args:
        data: the decompressed block.
        first_offset: the block's index-entry offset.
        first_timestamp: the block's index-entry timestamp.
        legacy: apply the pre-2026-02-06 first-record rule (blocks ``i >= 1``).
        key: object key, for errors only.
        position: file position of the block, for errors only.

    Returns:
        The records of the block, in order.

    Raises:
        CorruptSegmentError: a varint longer than 10 bytes.
        TruncatedSegmentError: the block ends inside a record.
    """
    d = data if type(data) is bytes else bytes(data)
    n = len(d)
    out: list[tuple[int, int, bytes | None, bytes]] = []
    if not n:
        return out
    append = out.append
    zz = _ZIGZAG1
    mask = U64_MASK
    read_uvarint = _read_uvarint
    off = first_offset
    ts = first_timestamp
    pos = 0
    try:
        # The first record goes through the general path: it carries the legacy rule.
        od, td, k, v, pos = _decode_record_slow(d, 0)
        # Legacy rule (writers before 2026-02-06): a non-zero first delta counts from the previous block's last offset.
        off = (off - 1 + od) & mask if legacy and od else (off + od) & mask
        ts = (ts + td) & mask
        append((off, ts, k, v))
        # Every field inline, one-byte varints first: a call per record (or per varint in
        # the common shapes) would cost more than the decoding itself.
        while pos < n:
            a = d[pos]
            if a < 0x80:
                off = (off + zz[a]) & mask
                i = pos + 1
            else:
                u, i = read_uvarint(d, pos)
                off = (off + ((u >> 1) ^ -(u & 1))) & mask
            b = d[i]
            if b < 0x80:
                ts = (ts + zz[b]) & mask
                i += 1
            else:
                # Timestamps more than 63 ms apart take two bytes: common enough to inline.
                b2 = d[i + 1]
                if b2 < 0x80:
                    u = (b & 0x7F) | (b2 << 7)
                    i += 2
                else:
                    u, i = read_uvarint(d, i)
                ts = (ts + ((u >> 1) ^ -(u & 1))) & mask
            c = d[i]
            if c < 0x80:
                i += 1
            else:
                c, i = read_uvarint(d, i)
            if c:
                j = i + c
                k = d[i:j]
            else:
                k = None
                j = i
            vl = d[j]
            if vl < 0x80:
                j += 1
            else:
                vl2 = d[j + 1]
                if vl2 < 0x80:
                    vl = (vl & 0x7F) | (vl2 << 7)
                    j += 2
                else:
                    vl, j = read_uvarint(d, j)
            pos = j + vl
            append((off, ts, k, d[j:pos]))
    except (IndexError, OverflowError, EOFError):
        raise _record_error(d, pos, key, position) from None
    if pos != n:
        # Only the last record can run past the end: the loop stops as soon as one does.
        del out[-1]
        last = _last_record_start(d, len(out))
        raise _record_error(d, last, key, position)
    return out


def _last_record_start(d: bytes, count: int) -> int:
    """Return the block position of the record after the first ``count`` well-formed ones."""
    pos = 0
    for _ in range(count):
        pos = _decode_record_slow(d, pos)[4]
    return pos


def decompress_block(
    stored: Buffer,
    compression: Compression,
    *,
    max_bytes: int,
    key: str | None,
    position: int,
) -> bytes | memoryview | bytearray:
    """Return the encoded records of one stored block.

    Args:
        stored: the block's bytes exactly as in the file.
        compression: the segment's compression.
        max_bytes: largest accepted declared uncompressed size (LZ4); checked before
            allocating.
        key: object key, for errors.
        position: file position of the block, for errors.

    Returns:
        ``stored`` itself for compression none (no copy), else the decompressed bytes.

    Raises:
        TruncatedSegmentError: an LZ4 block shorter than its 4-byte size prefix.
        SegmentLimitError: the declared uncompressed size is above ``max_bytes``.
        CorruptSegmentError: LZ4 data that does not decode to exactly the declared size.
        UnsupportedSegmentError: Zstd (StreamHouse defines no Zstd framing).
    """
    if compression == Compression.NONE:
        return stored
    if compression == Compression.LZ4:
        if len(stored) < LZ4_SIZE_STRUCT.size:
            raise TruncatedSegmentError(
                f"LZ4 block of {len(stored)} bytes is shorter than its 4-byte size prefix",
                key=key,
                position=position,
            )
        (size,) = LZ4_SIZE_STRUCT.unpack_from(stored, 0)
        if size > max_bytes:
            raise SegmentLimitError(
                f"LZ4 block declares {size} uncompressed bytes, above the limit of {max_bytes} "
                "(raise max_block_bytes if this segment is trusted)",
                key=key,
                position=position,
            )
        if size == 0:
            raise CorruptSegmentError(
                "LZ4 block declares 0 uncompressed bytes; StreamHouse never writes an empty block",
                key=key,
                position=position,
            )
        body = memoryview(stored)[LZ4_SIZE_STRUCT.size :]
        try:
            out: bytes = lz4.block.decompress(body, uncompressed_size=size)
        except (lz4.block.LZ4BlockError, ValueError, MemoryError) as exc:
            raise CorruptSegmentError(
                f"LZ4 block does not decode to its declared {size} bytes: {exc}",
                key=key,
                position=position,
            ) from exc
        if len(out) != size:
            raise CorruptSegmentError(
                f"LZ4 block decodes to {len(out)} bytes but declares {size}",
                key=key,
                position=position,
            )
        return out
    raise UnsupportedSegmentError(
        f"compression {compression.label} is not supported (StreamHouse cannot write it either)",
        key=key,
        position=position,
    )


DecodeFn = Callable[
    [Buffer, int, int, bool, "str | None", int], "list[tuple[int, int, bytes | None, bytes]]"
]

decode_records: DecodeFn = (
    accelerator("streamhouse_beam.segment._speedups", "decode_records") or decode_records_py
)


def speedups_active() -> bool:
    """Return whether :data:`decode_records` is the C accelerator."""
    return decode_records is not decode_records_py


# ------------------------------------------------------------------------------ column decoding

#: ``(count, offsets, timestamps, key validity or None, key null count, key offsets, key data,
#: value offsets, value data, large, max timestamp or None)``: see :func:`decode_columns_py`.
ColumnBuffers = tuple[
    int, bytes, bytes, "bytes | None", int, bytes, bytes, bytes, bytes, bool, "int | None"
]

_INT32_MAX = 2**31 - 1


def records_to_buffers(records: list[Record]) -> ColumnBuffers:
    """The Arrow column buffers of decoded records, as :func:`decode_columns_py` returns them.

    Args:
        records: ``(offset, timestamp, key or None, value)`` tuples (u64 offsets/timestamps).

    Returns:
        The buffers; see :func:`decode_columns_py`.
    """
    n = len(records)
    offsets = array.array("Q", map(_FIRST, records))
    timestamps = array.array("Q", map(_SECOND, records))
    keys = list(map(_THIRD, records))
    values = list(map(_FOURTH, records))
    key_data = b"".join(filter(None, keys))
    value_data = b"".join(values)
    large = len(key_data) > _INT32_MAX or len(value_data) > _INT32_MAX
    code = "q" if large else "i"
    key_offsets = array.array(
        code, itertools.accumulate((0 if k is None else len(k) for k in keys), initial=0)
    )
    value_offsets = array.array(code, itertools.accumulate(map(len, values), initial=0))
    nulls = keys.count(None)
    validity: bytes | None = None
    if nulls:
        bitmap = bytearray((n + 7) // 8)
        for i, k in enumerate(keys):
            if k is not None:
                bitmap[i >> 3] |= 1 << (i & 7)
        validity = bytes(bitmap)
    return (
        n,
        offsets.tobytes(),
        timestamps.tobytes(),
        validity,
        nulls,
        key_offsets.tobytes(),
        key_data,
        value_offsets.tobytes(),
        value_data,
        large,
        max(timestamps) if n else None,
    )


def decode_columns_py(
    data: Buffer,
    first_offset: int,
    first_timestamp: int,
    legacy: bool,
    key: str | None,
    position: int,
) -> ColumnBuffers:
    """Decode one decompressed block into the raw buffers of Arrow columns.

    The columnar twin of :func:`decode_records_py`: same arguments, same records, same errors
    (it decodes with :func:`decode_records_py`), but the result is one buffer per column
    instead of a tuple per record, which is what the C accelerator's ``decode_columns``
    returns without creating any per-record Python object. Buffers are native-endian (Arrow's
    little-endian on every platform Arrow supports):

    - ``count``: number of records;
    - ``offsets``, ``timestamps``: ``count`` u64 each;
    - key validity: LSB-first bitmap (bit set = key present, padding bits 0), ``None`` when
      every record has a key; then the number of absent keys;
    - key offsets + key data, value offsets + value data: Arrow binary layout, ``count + 1``
      int32 offsets (int64 when ``large``);
    - ``large``: the block holds more than ``2**31 - 1`` key or value bytes;
    - the largest timestamp, ``None`` for an empty block.

    Raises:
        CorruptSegmentError: a varint longer than 10 bytes.
        TruncatedSegmentError: the block ends inside a record.
    """
    return records_to_buffers(
        decode_records_py(data, first_offset, first_timestamp, legacy, key, position)
    )


DecodeColumnsFn = Callable[[Buffer, int, int, bool, "str | None", int], ColumnBuffers]

# A stale build may predate decode_columns: then only records are fast.
decode_columns: DecodeColumnsFn = (
    accelerator("streamhouse_beam.segment._speedups", "decode_columns") or decode_columns_py
)
