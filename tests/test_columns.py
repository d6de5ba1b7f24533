"""Columnar block decoding: ``decode_columns`` (C and pure Python) and ``BlockColumns``.

The columnar decoder must give exactly the records of ``decode_records`` (every golden fixture
block, legacy layout, hypothesis-made segments), the C and pure-Python implementations must
return identical buffers, and damaged blocks must raise the same named errors (class,
message, key, position) as the record decoder.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURE_SEGMENTS, examples
from streamhouse_beam.segment import SegmentReader, decode_records_py
from streamhouse_beam.segment import decode as decode_mod
from streamhouse_beam.segment.columns import (
    BATCH_SCHEMA,
    LARGE_BATCH_SCHEMA,
    BlockColumns,
    assemble_batch,
    batch_max_timestamp,
    batch_offsets,
    empty_batch,
)
from streamhouse_beam.segment.decode import (
    decode_columns,
    decode_columns_py,
    records_to_buffers,
)
from streamhouse_beam.segment.format import FOOTER_SIZE, Compression
from streamhouse_beam.segment.writer import write_segment
from tests.decoder_agreement import (
    CASES,
    U64,
    DecoderAgreement,
    fixture_blocks,
    outcome,
    segment_blocks,
)

try:
    from streamhouse_beam.segment import _speedups  # type: ignore[attr-defined,unused-ignore]

    decode_columns_c: Callable[..., Any] | None = _speedups.decode_columns
except (ImportError, AttributeError):  # no compiler: only the pure-Python decoder exists
    decode_columns_c = None

Rec = tuple[int, int, "bytes | None", bytes]


def _assert_same(data: Any, first_offset: int, first_ts: int, legacy: bool) -> tuple[str, Any]:
    """decode_columns (C and Python) agree with each other and with decode_records_py."""
    args = (data, first_offset, first_ts, legacy, "topic/seg", 4242)
    records = outcome(decode_records_py, *args)
    py = outcome(decode_columns_py, *args)
    if records[0] == "ok":
        assert py == ("ok", records_to_buffers(records[1]))
    else:
        assert py == records
    if decode_columns_c is not None:
        assert outcome(decode_columns_c, *args) == py
    return py


class TestDecodeColumnsAgreement(DecoderAgreement):
    """decode_columns (C and pure Python) against decode_records_py on the shared inputs."""

    assert_same = staticmethod(_assert_same)

    @staticmethod
    def count(result: Any) -> int:
        return int(result[0])


def _rows(block: BlockColumns) -> list[Rec]:
    return list(
        zip(
            block.offsets.to_pylist(),
            block.timestamps.to_pylist(),
            block.keys.to_pylist(),
            block.values.to_pylist(),
            strict=True,
        )
    )


def _check_reader(reader: SegmentReader) -> list[Rec]:
    """Every block of ``reader`` decodes to the same records both ways; returns them all."""
    out: list[Rec] = []
    for i in range(reader.block_count):
        records = reader.decode_block(i)
        block = reader.decode_block_columns(i)
        for array in (block.offsets, block.timestamps, block.keys, block.values):
            array.validate(full=True)
        assert _rows(block) == records
        assert len(block) == block.count == len(records)
        assert list(block.offset_list) == [r[0] for r in records]
        assert block.max_timestamp == max(r[1] for r in records)
        assert block.value_bytes(0, len(records)) == sum(len(r[3]) for r in records)
        assert block.key_bytes(0, len(records)) == sum(len(r[2] or b"") for r in records)
        out += records
    return out


# ------------------------------------------------------------------------------ fixtures


@pytest.mark.parametrize("case", CASES)
def test_segment_reader_columns_equal_records_for_every_fixture(case: str) -> None:
    data = (FIXTURE_SEGMENTS / f"{case}.seg").read_bytes()
    whole = _check_reader(SegmentReader(data, key=case))
    assert whole == SegmentReader(data, key=case).read_all()
    # The range-read path (blocks fetched on demand) decodes the same columns.
    ranged = SegmentReader.from_ranges(len(data), lambda s, e: data[s:e], key=case)
    assert _check_reader(ranged) == whole


def test_gapped_fixture_offsets_are_searchable_in_the_offset_view() -> None:
    data = (FIXTURE_SEGMENTS / "gapped_offsets_lz4.seg").read_bytes()
    reader = SegmentReader(data)
    block = reader.decode_block_columns(0)
    offsets = [r[0] for r in reader.decode_block(0)]
    assert offsets != list(range(offsets[0], offsets[0] + len(offsets)))  # really gapped
    assert max(offsets) > 2**63  # and beyond int64
    assert list(block.offset_list) == offsets


# ---------------------------------------------------------------------- generated segments

u64 = st.integers(min_value=0, max_value=U64)
keys = st.one_of(st.none(), st.just(b""), st.binary(min_size=1, max_size=40))
values = st.one_of(st.just(b""), st.binary(max_size=300))


@st.composite
def record_lists(draw: st.DrawFn, max_records: int = 50) -> list[Rec]:
    """Strictly increasing u64 offsets with random gaps; timestamps anywhere in u64."""
    n = draw(st.integers(min_value=1, max_value=max_records))
    offset = draw(st.one_of(u64, st.integers(min_value=0, max_value=1000)))
    out: list[Rec] = []
    for _ in range(n):
        if offset > U64:
            break
        out.append((offset, draw(u64), draw(keys), draw(values)))
        offset += draw(st.one_of(st.just(1), st.integers(min_value=1, max_value=U64)))
    return out


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=record_lists(),
    compression=st.sampled_from([Compression.NONE, Compression.LZ4]),
    target=st.sampled_from([1, 40, 500, 1 << 20]),
    legacy=st.booleans(),
)
def test_generated_segments_decode_identically_in_columns(
    records: list[Rec], compression: Compression, target: int, legacy: bool
) -> None:
    data = write_segment(
        records, compression, block_size_target=target, legacy_block_boundaries=legacy
    )
    reader = SegmentReader(data)
    expected = [(o, t, k if k else None, v) for o, t, k, v in records]
    assert _check_reader(reader) == expected
    for raw, first_offset, first_ts, legacy_block in segment_blocks(data):
        _assert_same(raw, first_offset, first_ts, legacy_block)


def test_legacy_layout_decodes_to_the_same_columns_as_the_current_one() -> None:
    records: list[Rec] = [(10 + 3 * i, 1000 - i, b"k%d" % i, b"v" * i) for i in range(60)]
    current = SegmentReader(write_segment(records, Compression.NONE, block_size_target=50))
    legacy = SegmentReader(
        write_segment(records, Compression.NONE, block_size_target=50, legacy_block_boundaries=True)
    )
    assert legacy.block_count > 3
    assert _check_reader(legacy) == _check_reader(current) == records


# -------------------------------------------------------------------------------- errors


@settings(max_examples=examples(300), deadline=None)
@given(data=st.binary(max_size=64), first=u64, legacy=st.booleans())
def test_arbitrary_bytes_give_the_same_outcome(data: bytes, first: int, legacy: bool) -> None:
    _assert_same(data, first, U64 - first, legacy)


def test_wrong_argument_count_is_a_type_error() -> None:
    if decode_columns_c is None:
        pytest.skip("the C accelerator is not built")
    with pytest.raises(TypeError, match="6 positional arguments"):
        decode_columns_c(b"", 0, 0, False, None)


def _damaged_segments(case: str) -> list[tuple[str, bytes]]:
    """The fixture with one byte of its first block changed and the CRC recomputed."""
    out = []
    data = (FIXTURE_SEGMENTS / f"{case}.seg").read_bytes()
    start, end = SegmentReader(data).block_range(0)
    for pos in range(start, end):
        for value in (0x80, 0xFF, data[pos] ^ 0x01):
            body = bytearray(data)
            body[pos] = value
            footer = len(body) - FOOTER_SIZE
            body[footer + 8 : footer + 12] = zlib.crc32(body[:footer]).to_bytes(4, "big")
            out.append((f"{case}@{pos}={value}", bytes(body)))
    return out


@pytest.mark.parametrize(
    "case",
    [
        "single_none",
        "keys_empty_absent_none",
        # 41,000 damaged copies, about 20 s: only in the full run.
        pytest.param("gapped_offsets_none", marks=pytest.mark.slow),
    ],
)
def test_damaged_blocks_raise_the_same_errors_through_the_segment_reader(case: str) -> None:
    failures = 0
    for name, data in _damaged_segments(case):
        reader = SegmentReader(data, key=name)
        records = outcome(reader.decode_block, 0)
        columns = outcome(reader.decode_block_columns, 0)
        if records[0] == "ok":
            assert columns[0] == "ok" and _rows(columns[1]) == records[1], name
        else:
            failures += 1
            assert columns == records, name
    assert failures > 10  # the damage really breaks blocks


# ------------------------------------------------------------------ pure-Python fallback


def test_decode_columns_is_the_c_accelerator_when_built() -> None:
    if decode_columns_c is None:
        assert decode_columns is decode_columns_py
    elif decode_mod.speedups_active():
        assert decode_columns is decode_columns_c


def test_pure_python_fallback_builds_equal_arrow_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (FIXTURE_SEGMENTS / "keys_empty_absent_lz4.seg").read_bytes()
    fast = SegmentReader(data).decode_block_columns(0)
    monkeypatch.setattr(decode_mod, "decode_columns", decode_columns_py)
    slow = SegmentReader(data).decode_block_columns(0)
    for a, b in [
        (fast.offsets, slow.offsets),
        (fast.timestamps, slow.timestamps),
        (fast.keys, slow.keys),
        (fast.values, slow.values),
    ]:
        assert a.equals(b) and a.type == b.type and a.null_count == b.null_count


# -------------------------------------------------------------------------- batch assembly


def _block(records: list[Rec]) -> BlockColumns:
    return BlockColumns(records_to_buffers(records))


BLOCK_A = _block([(o, 100 + o, None if o % 3 == 0 else b"k%d" % o, b"v" * o) for o in range(10)])
BLOCK_B = _block([(o, 50, b"", b"w%d" % o) for o in (20, 25, 2**64 - 1)])


def _tuples(batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
    return list(zip(*(batch.column(i).to_pylist() for i in range(6)), strict=True))


def test_assemble_batch_slices_one_block_and_concatenates_several() -> None:
    one = assemble_batch("t", 2, [(BLOCK_A, 3, 4)])
    assert one.schema == BATCH_SCHEMA
    assert one.column("offset").offset == 3  # a zero-copy slice of the block
    assert _tuples(one) == [("t", 2, *r) for r in _rows(BLOCK_A)[3:7]]
    two = assemble_batch("t", 2, [(BLOCK_A, 8, 2), (BLOCK_B, 0, 3), (BLOCK_A, 0, 0)])
    two.validate(full=True)
    assert _tuples(two) == [("t", 2, *r) for r in _rows(BLOCK_A)[8:] + _rows(BLOCK_B)]
    assert list(batch_offsets(two)) == [8, 9, 20, 25, 2**64 - 1]
    assert list(batch_offsets(one)) == [3, 4, 5, 6]
    assert batch_max_timestamp(two) == 109


def test_assemble_batch_of_nothing_is_the_empty_schema_batch() -> None:
    for batch in (assemble_batch("t", 0, []), assemble_batch("t", 0, [(BLOCK_A, 2, 0)])):
        assert batch.num_rows == 0 and batch.schema == BATCH_SCHEMA
    assert empty_batch().num_rows == 0
    assert batch_max_timestamp(empty_batch()) is None
    assert list(batch_offsets(empty_batch())) == []


def test_batches_past_the_binary_limit_use_large_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamhouse_beam.segment import columns

    monkeypatch.setattr(columns, "BINARY_LIMIT", 20)
    small = assemble_batch("t", 0, [(BLOCK_A, 0, 3)])  # 0+1+2 value bytes
    assert small.schema == BATCH_SCHEMA
    big = assemble_batch("t", 0, [(BLOCK_A, 0, 10)])  # 45 value bytes
    assert big.schema == LARGE_BATCH_SCHEMA
    big.validate(full=True)
    assert _tuples(big) == [("t", 0, *r) for r in _rows(BLOCK_A)]


def test_a_large_block_slices_back_to_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_mod, "_INT32_MAX", 10)
    records: list[Rec] = [(o, o, b"key", b"value-%d" % o) for o in range(5)]
    buffers = records_to_buffers(records)
    assert buffers[9] is True  # large: 64-bit binary offsets
    block = BlockColumns(buffers)
    assert block.values.type == pa.large_binary()
    assert block.value_bytes(1, 3) == 14 and block.key_bytes(0, 5) == 15
    batch = assemble_batch("t", 0, [(block, 1, 2)])
    assert batch.schema == BATCH_SCHEMA
    assert _tuples(batch) == [("t", 0, *r) for r in records[1:3]]
    mixed = assemble_batch("t", 0, [(BLOCK_A, 9, 1), (block, 0, 5)])
    assert mixed.schema == BATCH_SCHEMA
    assert _tuples(mixed) == [("t", 0, *r) for r in _rows(BLOCK_A)[9:] + records]


def test_concurrent_decodes_in_threads_give_the_same_buffers() -> None:
    # The C decoder releases the GIL while it parses and copies: threads must not interfere.
    from concurrent.futures import ThreadPoolExecutor

    blocks = [
        b
        for case in ("multiblock_records_none", "gapped_offsets_lz4")
        for b in fixture_blocks(case)
    ]
    expected = [decode_columns(raw, o, t, legacy, "k", 0) for raw, o, t, legacy in blocks]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda b: decode_columns(b[0], b[1], b[2], b[3], "k", 0), blocks))
            assert got == expected
