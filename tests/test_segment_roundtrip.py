"""Writer -> reader round trips over random records (hypothesis), block boundaries and the pre-2026-02-06
block layout.

Small ``block_size_target`` values make many blocks out of few bytes, so boundary cases are
cheap; one example per run carries a multi-MiB value.
"""

from __future__ import annotations

import os

import lz4.block
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import examples
from streamhouse_beam.segment import (
    BLOCK_SIZE_TARGET,
    Compression,
    SegmentReader,
    SegmentWriter,
    decode_records_py,
    decompress_block,
    write_segment,
)
from streamhouse_beam.segment.format import U64_MASK

Rec = tuple[int, int, "bytes | None", bytes]

u64 = st.integers(min_value=0, max_value=U64_MASK)
keys = st.one_of(st.none(), st.just(b""), st.binary(min_size=1, max_size=40))
values = st.one_of(st.just(b""), st.binary(max_size=300))
gaps = st.one_of(
    st.just(1),
    st.integers(min_value=1, max_value=200),
    st.integers(min_value=1, max_value=1 << 40),
    st.integers(min_value=1, max_value=U64_MASK),
)


@st.composite
def record_lists(draw: st.DrawFn, max_records: int = 60) -> list[Rec]:
    """Strictly increasing u64 offsets with random gaps; timestamps anywhere in u64."""
    n = draw(st.integers(min_value=1, max_value=max_records))
    offset = draw(st.one_of(u64, st.integers(min_value=0, max_value=1000)))
    out: list[Rec] = []
    ts_mode = draw(st.sampled_from(["any", "walk"]))
    ts = draw(u64)
    for _ in range(n):
        if offset > U64_MASK:
            break
        if ts_mode == "any":
            ts = draw(u64)
        else:
            ts = (ts + draw(st.integers(min_value=-1000, max_value=1000))) & U64_MASK
        out.append((offset, ts, draw(keys), draw(values)))
        offset += draw(gaps)
    return out


def _as_read(records: list[Rec]) -> list[Rec]:
    """What StreamHouse reads back: an empty key is no key."""
    return [(o, t, k if k else None, v) for o, t, k, v in records]


def _check_every_start(reader: SegmentReader, expected: list[Rec]) -> None:
    for i, rec in enumerate(expected):
        assert reader.read_from_offset(rec[0]) == expected[i:]
        if rec[0] > 0 and (i == 0 or expected[i - 1][0] < rec[0] - 1):
            # Inside the gap before this record (or below base_offset).
            assert reader.read_from_offset(rec[0] - 1) == expected[i:]
    if expected[-1][0] < U64_MASK:
        assert reader.read_from_offset(expected[-1][0] + 1) == []


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=record_lists(),
    compression=st.sampled_from([Compression.NONE, Compression.LZ4]),
    target=st.sampled_from([1, 7, 64, 500, BLOCK_SIZE_TARGET]),
)
def test_random_records_round_trip_from_every_start_offset(
    records: list[Rec], compression: Compression, target: int
) -> None:
    data = write_segment(records, compression, block_size_target=target)
    reader = SegmentReader(data)
    expected = _as_read(records)
    assert reader.read_all() == expected
    assert reader.header.base_offset == records[0][0]
    assert reader.header.end_offset == records[-1][0]
    assert reader.header.record_count == len(records)
    _check_every_start(reader, expected)


big_values = st.builds(
    lambda pattern, size: (pattern * (size // len(pattern) + 1))[:size],
    st.binary(min_size=1, max_size=64),
    st.integers(min_value=1 << 20, max_value=3 << 20),
)


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.one_of(big_values, values), min_size=1, max_size=5),
    compression=st.sampled_from([Compression.NONE, Compression.LZ4]),
    start=st.one_of(st.just(0), u64),
)
def test_multi_mib_values_round_trip_across_block_boundaries(
    sizes: list[bytes], compression: Compression, start: int
) -> None:
    records = [
        (offset, offset * 7 & U64_MASK, b"k%d" % i if i % 2 else None, value)
        for i, (offset, value) in enumerate(
            zip(range(start, start + len(sizes)), sizes, strict=True)
        )
        if offset <= U64_MASK
    ]
    reader = SegmentReader(write_segment(records, compression))
    assert reader.read_all() == records
    _check_every_start(reader, records)


@settings(max_examples=examples(60), deadline=None)
@given(records=record_lists(max_records=40), target=st.sampled_from([1, 13, 200]))
def test_legacy_block_boundaries_decode_to_the_same_records(
    records: list[Rec], target: int
) -> None:
    legacy = write_segment(
        records, Compression.LZ4, block_size_target=target, legacy_block_boundaries=True
    )
    current = write_segment(records, Compression.LZ4, block_size_target=target)
    expected = _as_read(records)
    reader = SegmentReader(legacy)
    assert reader.read_all() == expected
    assert SegmentReader(current).read_all() == expected
    _check_every_start(reader, expected)


def test_legacy_layout_puts_block_boundaries_where_old_writers_did() -> None:
    # 3000 records of 1000-byte values: a block closes once it holds the 1 MiB target, so
    # blocks start at offsets 0, 1044, 2088 in both layouts.
    records = [(i, 1_700_000_000_000 + i, None, bytes(1000)) for i in range(3000)]
    legacy = SegmentReader(write_segment(records, Compression.LZ4, legacy_block_boundaries=True))
    current = SegmentReader(write_segment(records, Compression.LZ4))
    assert [e.offset for e in current.index] == [0, 1044, 2088]
    # The old writer stored "previous block's last offset + 1" and its last timestamp.
    assert [(e.offset, e.timestamp) for e in legacy.index] == [
        (0, 1_700_000_000_000),
        (1044, 1_700_000_001_043),
        (2088, 1_700_000_002_087),
    ]
    # Its block 1 starts with offset delta 1 (zigzag 2), not 0.
    start, end = legacy.block_range(1)
    raw = lz4.block.decompress(_bytes_of(legacy, start, end))
    assert raw[0] == 2
    assert legacy.read_all() == current.read_all() == records
    # Without the legacy first-record rule every offset of block >= 1 would read one too high.
    wrong = decode_records_py(raw, 1044, 1_700_000_001_043, False, None, start)
    assert wrong[0][0] == 1045


def _bytes_of(reader: SegmentReader, start: int, end: int) -> bytes:
    return bytes(reader._read(start, end))


def test_legacy_rule_keeps_a_gap_at_a_block_boundary() -> None:
    records = [(10, 5, b"a", b"x" * 30), (11, 6, b"b", b"y" * 30), (5000, 4, b"c", b"z")]
    data = write_segment(
        records, Compression.NONE, block_size_target=40, legacy_block_boundaries=True
    )
    reader = SegmentReader(data)
    assert [e.offset for e in reader.index] == [10, 12]
    assert reader.read_all() == records
    assert reader.read_from_offset(12) == records[2:]


def test_blocks_are_cut_before_the_record_that_finds_the_buffer_full() -> None:
    # Each record encodes to 4 + 10 = 14 bytes; target 28 -> 2 records fit, the 3rd starts a block.
    records = [(i, i, None, b"v" * 10) for i in range(7)]
    reader = SegmentReader(write_segment(records, Compression.NONE, block_size_target=28))
    assert [e.offset for e in reader.index] == [0, 2, 4, 6]
    reader = SegmentReader(write_segment(records, Compression.NONE, block_size_target=29))
    assert [e.offset for e in reader.index] == [0, 3, 6]


def test_one_huge_value_makes_one_big_block_and_the_next_record_a_new_one() -> None:
    big = os.urandom(1 << 15) * 96  # 3 MiB, compressible
    records = [(0, 1, b"k", b"small"), (1, 2, b"k", big), (2, 3, None, b"after")]
    for compression in (Compression.NONE, Compression.LZ4):
        reader = SegmentReader(write_segment(records, compression))
        assert [e.offset for e in reader.index] == [0, 2]
        assert reader.read_all() == records
        assert reader.read_from_offset(2) == records[2:]


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.LZ4])
def test_multi_mib_values_and_empty_values_round_trip(compression: Compression) -> None:
    records = [
        (0, 0, None, b""),
        (1, 0, b"", os.urandom(2 << 20)),
        (2, U64_MASK, b"\x00", b""),
        (U64_MASK, 0, b"\xff" * 300, os.urandom(5 << 20)),
    ]
    reader = SegmentReader(write_segment(records, compression, block_size_target=1 << 20))
    assert reader.read_all() == _as_read(records)
    assert [e.offset for e in reader.index] == [0, 2]
    assert reader.read_from_offset(U64_MASK) == _as_read(records)[3:]


def test_wrapping_deltas_at_the_ends_of_u64() -> None:
    records = [
        (0, U64_MASK, None, b"a"),
        (1 << 63, 0, None, b"b"),  # offset delta 2**63: a 10-byte zigzag varint
        (U64_MASK - 1, U64_MASK, None, b"c"),
        (U64_MASK, 1, None, b"d"),
    ]
    data = write_segment(records, Compression.NONE)
    assert SegmentReader(data).read_all() == records


def test_decoder_accepts_bytes_bytearray_and_memoryview() -> None:
    records = [(7, 9, b"key", b"value"), (8, 3, None, b"")]
    data = write_segment(records, Compression.NONE)
    reader = SegmentReader(data)
    start, end = reader.block_range(0)
    for raw in (data[start:end], bytearray(data[start:end]), memoryview(data)[start:end]):
        got = decode_records_py(raw, 7, 9, False, None, start)
        assert got == records
        assert all(type(v) is bytes for _, _, _, v in got)
    assert decode_records_py(b"", 0, 0, False, None, 0) == []


def test_range_reader_fetches_only_the_blocks_it_decodes() -> None:
    records = [(i, i, None, bytes(100)) for i in range(50)]
    data = write_segment(records, Compression.LZ4, block_size_target=500)
    calls: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        calls.append((start, end))
        return data[start:end]

    reader = SegmentReader.from_ranges(len(data), fetch)
    assert len(calls) == 3  # header, footer, index
    assert not reader.crc_verified
    calls.clear()
    last_block = reader.block_count - 1
    target = reader.index[last_block].offset + 1
    assert reader.read_from_offset(target) == records[target:]
    assert calls == [reader.block_range(last_block)]
    calls.clear()
    assert reader.read_from_offset(10**6) == []
    assert calls == []


def test_block_for_offset_is_the_last_entry_not_above_the_offset() -> None:
    records = [(i * 10, i, None, bytes(20)) for i in range(20)]
    reader = SegmentReader(write_segment(records, Compression.NONE, block_size_target=60))
    firsts = [e.offset for e in reader.index]
    assert reader.block_for_offset(0) == 0
    for i, first in enumerate(firsts):
        assert reader.block_for_offset(first) == i
        assert reader.block_for_offset(first + 5) == i
    assert reader.block_for_offset(10**9) == len(firsts) - 1


def test_empty_writer_produces_a_readable_empty_segment() -> None:
    data = SegmentWriter(Compression.NONE).finish()
    reader = SegmentReader(data)
    assert reader.block_count == 0
    assert reader.read_all() == []
    assert reader.read_from_offset(0) == []


def test_writer_rejects_bad_arguments() -> None:
    writer = SegmentWriter(Compression.NONE)
    writer.append(5, 0, None, b"")
    with pytest.raises(ValueError, match="offset 5"):
        writer.append(5, 0, None, b"")
    with pytest.raises(ValueError, match="u64"):
        writer.append(1 << 64, 0, None, b"")
    with pytest.raises(ValueError, match="timestamp"):
        writer.append(6, -1, None, b"")
    with pytest.raises(TypeError, match="value"):
        writer.append(6, 0, None, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compression"):
        SegmentWriter(Compression.ZSTD)
    with pytest.raises(ValueError, match="block_size_target"):
        SegmentWriter(block_size_target=0)
    writer.finish()
    with pytest.raises(ValueError, match="finish"):
        writer.append(6, 0, None, b"")


def test_decompress_block_returns_uncompressed_blocks_without_copying() -> None:
    data = memoryview(b"\x00\x00\x00\x01x")
    out = decompress_block(data, Compression.NONE, max_bytes=1, key=None, position=64)
    assert out is data
