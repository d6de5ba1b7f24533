"""Golden vectors: every segment StreamHouse's own writer produced decodes to its JSON record list.

The fixtures live in tests/fixtures/segments (see tests/fixtures/README.md). Uncompressed ones are
also reproduced byte for byte by our writer; LZ4 ones with identical framing and decompressed
content (the compressed bytes come from a different LZ4 implementation).
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import zlib
from typing import Any

import lz4.block
import pytest

from conftest import FIXTURE_SEGMENTS
from streamhouse_beam.segment import (
    Compression,
    IndexEntry,
    SegmentReader,
    SegmentWriter,
    decode_records_py,
    decompress_block,
    parse_footer,
    parse_header,
    parse_index,
    write_segment,
)
from streamhouse_beam.segment.format import FOOTER_SIZE

Rec = tuple[int, int, "bytes | None", bytes]

CASES = sorted(p.stem for p in FIXTURE_SEGMENTS.glob("*.seg"))


def _value(rec: dict[str, Any]) -> bytes:
    if "value" in rec:
        return base64.b64decode(rec["value"])
    rep = rec["value_repeat"]
    pattern = base64.b64decode(rep["pattern"])
    length = rep["length"]
    value = (pattern * (length // len(pattern) + 1))[:length]
    assert len(value) == rec["value_len"]
    assert hashlib.sha256(value).hexdigest() == rec["value_sha256"]
    return value


def _load(fixture_dir: pathlib.Path, name: str) -> tuple[dict[str, Any], bytes]:
    meta = json.loads((fixture_dir / f"{name}.json").read_text())
    data = (fixture_dir / meta["segment_file"]).read_bytes()
    return meta, data


def _expected(meta: dict[str, Any]) -> list[Rec]:
    return [
        (
            r["offset"],
            r["timestamp"],
            None if r["key"] is None else base64.b64decode(r["key"]),
            _value(r),
        )
        for r in meta["records"]
    ]


def _as_written(meta: dict[str, Any]) -> list[Rec]:
    """The records as they were appended (empty keys as b"", not None)."""
    out = []
    for r, (offset, ts, key, value) in zip(meta["records"], _expected(meta), strict=True):
        out.append((offset, ts, b"" if r.get("key_written") == "" else key, value))
    return out


def test_every_fixture_is_covered(fixture_segments_dir: pathlib.Path) -> None:
    assert len(CASES) >= 18
    for name in CASES:
        assert (fixture_segments_dir / f"{name}.json").is_file()


@pytest.mark.parametrize("name", CASES)
def test_fixture_file_is_the_one_the_json_describes(
    fixture_segments_dir: pathlib.Path, name: str
) -> None:
    meta, data = _load(fixture_segments_dir, name)
    assert meta["name"] == name
    assert len(data) == meta["segment_size"]
    assert hashlib.sha256(data).hexdigest() == meta["segment_sha256"]


@pytest.mark.parametrize("name", CASES)
def test_fixture_decodes_to_its_records(fixture_segments_dir: pathlib.Path, name: str) -> None:
    meta, data = _load(fixture_segments_dir, name)
    reader = SegmentReader(data, key=name)
    assert reader.crc_verified
    assert reader.read_all() == _expected(meta)


@pytest.mark.parametrize("name", CASES)
def test_fixture_header_footer_and_index_match(
    fixture_segments_dir: pathlib.Path, name: str
) -> None:
    meta, data = _load(fixture_segments_dir, name)
    reader = SegmentReader(data, key=name)
    h = meta["header"]
    assert reader.header.magic == h["magic"].encode()
    assert reader.header.version == h["version"]
    assert int(reader.header.compression) == h["compression"]
    assert reader.header.compression.label == meta["compression"]
    assert reader.header.base_offset == h["base_offset"]
    assert reader.header.end_offset == h["end_offset"]
    assert reader.header.record_count == h["record_count"] == len(meta["records"])
    assert reader.header.block_count == h["block_count"]
    f = meta["footer"]
    assert reader.footer.index_position == f["index_position"]
    assert reader.footer.crc32 == f["crc32"] == zlib.crc32(data[:-FOOTER_SIZE])
    assert reader.footer.magic == f["magic"].encode()
    assert reader.index == [
        IndexEntry(e["offset"], e["file_position"], e["timestamp"]) for e in meta["index"]
    ]
    # The standalone parsers agree with the reader (the range-read path uses them).
    assert parse_header(data[:64]) == reader.header
    assert parse_footer(data[-FOOTER_SIZE:], len(data)) == reader.footer
    assert (
        parse_index(
            data[f["index_position"] : len(data) - FOOTER_SIZE],
            index_position=f["index_position"],
            index_end=len(data) - FOOTER_SIZE,
            block_count_hint=h["block_count"],
            base=f["index_position"],
        )
        == reader.index
    )


@pytest.mark.parametrize("name", CASES)
def test_fixture_blocks_match_their_description(
    fixture_segments_dir: pathlib.Path, name: str
) -> None:
    meta, data = _load(fixture_segments_dir, name)
    reader = SegmentReader(data, key=name)
    expected = _expected(meta)
    seen = 0
    for block in meta["blocks"]:
        i = block["block"]
        start, end = reader.block_range(i)
        assert start == block["file_position"]
        assert end - start == block["stored_size"]
        raw = decompress_block(
            data[start:end], reader.compression, max_bytes=1 << 30, key=name, position=start
        )
        assert len(raw) == block["uncompressed_size"]
        records = reader.decode_block(i)
        assert len(records) == block["record_count"]
        assert records[0][:2] == (block["first_offset"], block["first_timestamp"])
        assert records == expected[seen : seen + len(records)]
        seen += len(records)
    assert seen == len(expected)


@pytest.mark.parametrize("name", CASES)
def test_fixture_read_from_offset_probes(fixture_segments_dir: pathlib.Path, name: str) -> None:
    meta, data = _load(fixture_segments_dir, name)
    reader = SegmentReader(data, key=name)
    expected = _expected(meta)
    assert meta["read_from_offset"]
    for probe in meta["read_from_offset"]:
        got = reader.read_from_offset(probe["start_offset"])
        first = probe["first_record_index"]
        want = [] if first is None else expected[first : first + probe["count"]]
        assert got == want, probe["why"]
    # StreamHouse's own check: reading from each block's first offset agrees with read_all.
    for entry in reader.index:
        got = reader.read_from_offset(entry.offset)
        assert got == [r for r in expected if r[0] >= entry.offset]


@pytest.mark.parametrize("name", CASES)
def test_fixture_range_reads_match_whole_reads(
    fixture_segments_dir: pathlib.Path, name: str
) -> None:
    meta, data = _load(fixture_segments_dir, name)
    fetched: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        fetched.append((start, end))
        return data[start:end]

    reader = SegmentReader.from_ranges(len(data), fetch, key=name)
    assert not reader.crc_verified
    whole = SegmentReader(data, key=name)
    assert (reader.header, reader.footer, reader.index) == (whole.header, whole.footer, whole.index)
    last = reader.index[-1].offset
    fetched.clear()
    assert reader.read_from_offset(last) == whole.read_from_offset(last)
    assert fetched == [reader.block_range(reader.block_count - 1)]
    assert reader.read_all() == _expected(meta)


@pytest.mark.parametrize("name", CASES)
def test_fixture_pure_python_decoder_matches(fixture_segments_dir: pathlib.Path, name: str) -> None:
    meta, data = _load(fixture_segments_dir, name)
    reader = SegmentReader(data, key=name)
    out: list[Rec] = []
    for i, entry in enumerate(reader.index):
        start, end = reader.block_range(i)
        raw = decompress_block(
            memoryview(data)[start:end],
            reader.compression,
            max_bytes=1 << 30,
            key=name,
            position=start,
        )
        out += decode_records_py(raw, entry.offset, entry.timestamp, i > 0, name, start)
    assert out == _expected(meta)
    assert all(type(k) is bytes or k is None for _, _, k, _ in out)
    assert all(type(v) is bytes for _, _, _, v in out)


@pytest.mark.parametrize("name", [c for c in CASES if c.endswith("_none")])
def test_writer_reproduces_uncompressed_fixture_byte_for_byte(
    fixture_segments_dir: pathlib.Path, name: str
) -> None:
    meta, data = _load(fixture_segments_dir, name)
    assert write_segment(_as_written(meta), Compression.NONE) == data


@pytest.mark.parametrize("name", [c for c in CASES if c.endswith("_lz4")])
def test_writer_reproduces_lz4_framing_and_content(
    fixture_segments_dir: pathlib.Path, name: str
) -> None:
    meta, data = _load(fixture_segments_dir, name)
    ours = write_segment(_as_written(meta), Compression.LZ4)
    theirs_reader = SegmentReader(data)
    ours_reader = SegmentReader(ours)
    assert ours_reader.header == theirs_reader.header
    assert ours_reader.block_count == theirs_reader.block_count
    for i, (a, b) in enumerate(zip(theirs_reader.index, ours_reader.index, strict=True)):
        assert (a.offset, a.timestamp) == (b.offset, b.timestamp)
        ts, te = theirs_reader.block_range(i)
        os_, oe = ours_reader.block_range(i)
        # Same 4-byte LE size prefix, same decompressed bytes.
        assert data[ts : ts + 4] == ours[os_ : os_ + 4]
        assert lz4.block.decompress(data[ts:te]) == lz4.block.decompress(ours[os_:oe])
    assert ours_reader.read_all() == _expected(meta)


@pytest.mark.parametrize("name", CASES)
def test_writer_properties_track_appended_records(
    fixture_segments_dir: pathlib.Path, name: str
) -> None:
    meta, _ = _load(fixture_segments_dir, name)
    records = _as_written(meta)
    writer = SegmentWriter(Compression.from_label(meta["compression"]))
    for r in records:
        writer.append(*r)
    assert writer.base_offset == meta["header"]["base_offset"]
    assert writer.end_offset == meta["header"]["end_offset"]
    assert writer.record_count == len(records)
    assert writer.min_timestamp == records[0][1]
    assert writer.max_timestamp == records[-1][1]
    assert writer.estimated_size > 0
    if meta["compression"] == "none":
        assert writer.estimated_size == meta["segment_size"]
    writer.finish()


# A two-record segment derived by hand, field by field, from the layout in segment/format.py:
# the writer must produce exactly these bytes.
WORKED_EXAMPLE_DUMP = """
0000: 53 54 52 4d 00 01 00 00 00 00 00 00 00 00 00 64
0010: 00 00 00 00 00 00 00 65 00 00 00 02 00 00 00 01
0020: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0030: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0040: 00 00 02 6b 31 05 68 65 6c 6c 6f 02 f4 03 00 06
0050: 77 6f 72 6c 64 21 00 00 00 01 00 00 00 00 00 00
0060: 00 64 00 00 00 00 00 00 00 40 00 00 01 8b cf e5
0070: 68 00 00 00 00 00 00 00 00 56 80 d3 53 d8 53 54
0080: 52 4d 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0090: 00 00
"""


def _dump_bytes(dump: str) -> bytes:
    return bytes.fromhex("".join(line.split(":", 1)[1] for line in dump.strip().splitlines()))


def test_worked_example_of_the_spec_is_written_byte_for_byte() -> None:
    expected = _dump_bytes(WORKED_EXAMPLE_DUMP)
    assert len(expected) == 146
    records = [
        (100, 1_700_000_000_000, b"k1", b"hello"),
        (101, 1_700_000_000_250, None, b"world!"),
    ]
    assert write_segment(records, Compression.NONE) == expected
    reader = SegmentReader(expected)
    assert reader.read_all() == records
    assert reader.footer.crc32 == 0x80D353D8
    assert reader.footer.index_position == 86


def test_worked_example_with_lz4_has_the_spec_layout() -> None:
    records = [
        (100, 1_700_000_000_000, b"k1", b"hello"),
        (101, 1_700_000_000_250, None, b"world!"),
    ]
    data = write_segment(records, Compression.LZ4)
    assert data[6:8] == b"\x00\x01"
    assert data[64:68] == (22).to_bytes(4, "little")
    # 22 literals with no 4-byte repeat: token F0, extra length 07, the bytes.
    assert data[68:70] == b"\xf0\x07"
    assert SegmentReader(data).footer.index_position == 92
    assert SegmentReader(data).read_all() == records
