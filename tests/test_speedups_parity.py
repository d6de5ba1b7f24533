"""The C accelerator decodes exactly like the pure-Python decoder: same records, same errors.

``streamhouse_beam.segment._speedups`` is optional; these tests are skipped when it was not
built (no compiler), and then nothing uses it. When it is present, every fixture block, every
truncation of small blocks, every single-byte corruption of a small block and hypothesis-made
blocks (well-formed and arbitrary bytes) must give identical results, or identical exception
class, message, ``key`` and ``position``.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import examples
from streamhouse_beam.segment import decode_records_py
from streamhouse_beam.segment.writer import encode_uvarint, encode_zigzag
from tests.decoder_agreement import U64, DecoderAgreement, outcome

_speedups = pytest.importorskip("streamhouse_beam.segment._speedups")
decode_records_c = _speedups.decode_records


def _assert_same(data: Any, first_offset: int, first_ts: int, legacy: bool) -> tuple[str, Any]:
    args = (data, first_offset, first_ts, legacy, "topic/seg", 4242)
    py = outcome(decode_records_py, *args)
    c = outcome(decode_records_c, *args)
    assert c == py
    return py


class TestCDecoderAgreement(DecoderAgreement):
    """The C decode_records against decode_records_py on the shared inputs."""

    assert_same = staticmethod(_assert_same)

    @staticmethod
    def count(result: Any) -> int:
        return len(result)


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


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


@settings(max_examples=examples(500), deadline=None)
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
