"""The C accelerator decodes exactly like the pure-Python decoder: same records, same errors.

``streamhouse_beam.segment._speedups`` is optional; these tests are skipped when it was not
built (no compiler), and then nothing uses it. When it is present, every fixture block, every
truncation of small blocks, every single-byte corruption of a small block and hypothesis-made
blocks (well-formed and arbitrary bytes) must give identical results, or identical exception
class, message, ``key`` and ``position``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURE_SEGMENTS
from streamhouse_beam.errors import SegmentError
from streamhouse_beam.segment import SegmentReader, decode_records_py, decompress_block
from streamhouse_beam.segment.writer import encode_uvarint, encode_zigzag

_speedups = pytest.importorskip("streamhouse_beam.segment._speedups")
decode_records_c = _speedups.decode_records

U64 = 2**64 - 1
CASES = sorted(p.stem for p in FIXTURE_SEGMENTS.glob("*.seg"))


def _outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except SegmentError as exc:
        return "error", (type(exc), str(exc), exc.key, exc.position)


def _assert_same(data: Any, first_offset: int, first_ts: int, legacy: bool) -> tuple[str, Any]:
    args = (data, first_offset, first_ts, legacy, "topic/seg", 4242)
    py = _outcome(decode_records_py, *args)
    c = _outcome(decode_records_c, *args)
    assert c == py
    return py


def _blocks(case: str) -> list[tuple[bytes, int, int, bool]]:
    data = (FIXTURE_SEGMENTS / f"{case}.seg").read_bytes()
    reader = SegmentReader(data, key=case)
    out = []
    for i, entry in enumerate(reader.index):
        start, end = reader.block_range(i)
        raw = decompress_block(
            data[start:end], reader.compression, max_bytes=2**30, key=case, position=start
        )
        out.append((bytes(raw), entry.offset, entry.timestamp, i > 0))
    return out


@pytest.mark.parametrize("case", CASES)
def test_every_fixture_block_decodes_identically(case: str) -> None:
    for raw, first_offset, first_ts, legacy in _blocks(case):
        kind, records = _assert_same(raw, first_offset, first_ts, legacy)
        assert kind == "ok" and records
        # The other legacy setting and buffer types must agree too.
        _assert_same(raw, first_offset, first_ts, not legacy)
        _assert_same(memoryview(raw), first_offset, first_ts, legacy)
        _assert_same(bytearray(raw), first_offset, first_ts, legacy)


@pytest.mark.parametrize("case", ["single_none", "keys_empty_absent_none", "gapped_offsets_none"])
def test_every_truncation_of_a_small_block_raises_the_same_error(case: str) -> None:
    raw, first_offset, first_ts, legacy = _blocks(case)[0]
    for n in range(len(raw)):
        _assert_same(raw[:n], first_offset, first_ts, legacy)


@pytest.mark.parametrize("case", ["single_none", "keys_empty_absent_none"])
def test_every_byte_flip_of_a_small_block_gives_the_same_outcome(case: str) -> None:
    raw, first_offset, first_ts, legacy = _blocks(case)[0]
    for i in range(len(raw)):
        for value in (0x00, 0x7F, 0x80, 0xFF, raw[i] ^ 0x01):
            flipped = raw[:i] + bytes([value]) + raw[i + 1 :]
            _assert_same(flipped, first_offset, first_ts, legacy)


def test_non_contiguous_memoryview_decodes_like_bytes() -> None:
    raw, first_offset, first_ts, legacy = _blocks("keys_empty_absent_none")[0]
    strided = memoryview(bytes(b for x in raw for b in (x, 0)))[::2]
    assert not strided.contiguous
    assert _assert_same(strided, first_offset, first_ts, legacy) == _assert_same(
        raw, first_offset, first_ts, legacy
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 9,  # truncated varint
        b"\x80" * 10,  # ten continuation bytes: corrupt even at the end
        b"\xff" * 9 + b"\x7f" + b"\x00\x00\x00",  # 10-byte varint, high bits dropped
        b"\x00\x00\x05ab",  # key runs past the end
        b"\x00\x00\x00\x05abc",  # value runs past the end
        b"\x00\x00" + b"\xff" * 9 + b"\x01",  # key length 2**64-1: need beyond 2**64
        b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00",  # second record, offset +1
    ],
)
def test_edge_blocks_agree(data: bytes) -> None:
    for legacy in (False, True):
        for first in (0, 1, U64):
            _assert_same(data, first, U64 - first, legacy)


def test_offsets_and_timestamps_wrap_at_u64() -> None:
    block = b"\x00\x00\x00\x00" + b"\x02\x02\x00\x00"
    kind, records = _assert_same(block, U64, U64, False)
    assert kind == "ok"
    assert [(r[0], r[1]) for r in records] == [(U64, U64), (0, 0)]


def _encode(records: list[tuple[int, int, bytes | None, bytes]]) -> bytes:
    out = bytearray()
    for od, td, key, value in records:
        out += encode_zigzag(od & U64) + encode_zigzag(td & U64)
        k = key or b""
        out += encode_uvarint(len(k)) + k + encode_uvarint(len(value)) + value
    return bytes(out)


_deltas = st.one_of(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1))
_record = st.tuples(
    _deltas,
    _deltas,
    st.one_of(st.none(), st.binary(min_size=1, max_size=40)),
    st.binary(max_size=300),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(_record, max_size=30),
    first_offset=st.integers(0, U64),
    first_ts=st.integers(0, U64),
    legacy=st.booleans(),
    cut=st.integers(0, 2**16),
)
def test_random_well_formed_blocks_and_their_truncations_agree(
    records: list[tuple[int, int, bytes | None, bytes]],
    first_offset: int,
    first_ts: int,
    legacy: bool,
    cut: int,
) -> None:
    data = _encode(records)
    kind, _ = _assert_same(data, first_offset, first_ts, legacy)
    assert kind == "ok"
    if data:
        _assert_same(data[: cut % len(data)], first_offset, first_ts, legacy)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200), first=st.integers(0, U64), legacy=st.booleans())
def test_arbitrary_bytes_agree(data: bytes, first: int, legacy: bool) -> None:
    _assert_same(data, first, first, legacy)


def test_records_to_columns_lays_out_arrow_buffers() -> None:
    records = [(1, U64, b"k1", b"v1"), (2, 5, None, b""), (U64, 0, b"", b"value")]
    offsets, timestamps, validity, nulls, key_offs, key_data, val_offs, val_data = (
        _speedups.records_to_columns(records, False)
    )
    assert struct.unpack("<3Q", offsets) == (1, 2, U64)
    assert struct.unpack("<3Q", timestamps) == (U64, 5, 0)
    assert nulls == 1 and validity[0] & 0b111 == 0b101
    assert struct.unpack("<4i", key_offs) == (0, 2, 2, 2) and key_data == b"k1"
    assert struct.unpack("<4i", val_offs) == (0, 2, 2, 7) and val_data == b"v1value"
    large = _speedups.records_to_columns(records, True)
    assert struct.unpack("<4q", large[6]) == (0, 2, 2, 7)


def test_records_to_columns_refuses_what_is_not_a_record_list() -> None:
    with pytest.raises(TypeError, match="records"):
        _speedups.records_to_columns((1, 2), False)
    with pytest.raises(TypeError, match=r"records\[1\]"):
        _speedups.records_to_columns([(1, 2, None, b""), (1, 2, "str", b"")], False)
