"""``streamhouse-beam inspect`` run as a real process on golden and damaged segments."""

from __future__ import annotations

import base64
import json
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from streamhouse_beam.segment import Compression, SegmentReader, write_segment

CLI = REPO_ROOT / ".venv" / "bin" / "streamhouse-beam"
COMMAND = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "streamhouse_beam.cli"]


def _inspect(*args: str | pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "inspect", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _expected_records(meta: dict[str, object]) -> list[dict[str, object]]:
    out = []
    for r in meta["records"]:  # type: ignore[attr-defined]
        if "value" in r:
            value = r["value"]
        else:
            rep = r["value_repeat"]
            pattern = base64.b64decode(rep["pattern"])
            full = (pattern * (rep["length"] // len(pattern) + 1))[: rep["length"]]
            value = base64.b64encode(full).decode()
        out.append(
            {"offset": r["offset"], "timestamp": r["timestamp"], "key": r["key"], "value": value}
        )
    return out


@pytest.mark.parametrize("name", ["gapped_multiblock_lz4", "keys_empty_absent_none"])
def test_json_output_is_exactly_the_documented_document(
    fixture_segments_dir: pathlib.Path, name: str
) -> None:
    meta = json.loads((fixture_segments_dir / f"{name}.json").read_text())
    result = _inspect(fixture_segments_dir / f"{name}.seg", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert list(doc) == ["header", "index", "records"]
    assert doc["header"] == {
        "magic": "STRM",
        "version": 1,
        "compression": meta["compression"],
        "base_offset": meta["header"]["base_offset"],
        "end_offset": meta["header"]["end_offset"],
        "record_count": meta["header"]["record_count"],
        "block_count": meta["header"]["block_count"],
    }
    assert doc["index"] == [
        {"offset": e["offset"], "position": e["file_position"], "timestamp": e["timestamp"]}
        for e in meta["index"]
    ]
    assert doc["records"] == _expected_records(meta)


def test_json_from_offset_keeps_only_later_records(fixture_segments_dir: pathlib.Path) -> None:
    meta = json.loads((fixture_segments_dir / "gapped_multiblock_lz4.json").read_text())
    probe = next(p for p in meta["read_from_offset"] if "gap" in p["why"])
    result = _inspect(
        fixture_segments_dir / "gapped_multiblock_lz4.seg",
        "--json",
        "--from-offset",
        probe["start_offset"],
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    first = probe["first_record_index"]
    assert doc["records"] == _expected_records(meta)[first : first + probe["count"]]


def test_u64_offsets_survive_json_exactly(fixture_segments_dir: pathlib.Path) -> None:
    result = _inspect(fixture_segments_dir / "gapped_offsets_lz4.seg", "--json")
    assert result.returncode == 0, result.stderr
    offsets = [r["offset"] for r in json.loads(result.stdout)["records"]]
    assert offsets[-1] == 18446744073709551615


def test_human_summary_shows_header_index_and_first_and_last_records(
    fixture_segments_dir: pathlib.Path,
) -> None:
    result = _inspect(fixture_segments_dir / "small_1000_lz4.seg")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "compression lz4" in out
    assert "records      1000 in 1 block(s)" in out
    assert "(verified)" in out
    assert "1000 record(s)" in out
    reader = SegmentReader((fixture_segments_dir / "small_1000_lz4.seg").read_bytes())
    records = reader.read_all()
    assert f"offset {records[0][0]} " in out
    assert f"offset {records[-1][0]} " in out
    assert "... 994 more ..." in out


def test_human_summary_with_from_offset_counts_only_later_records(
    fixture_segments_dir: pathlib.Path,
) -> None:
    result = _inspect(fixture_segments_dir / "gapped_multiblock_lz4.seg", "--from-offset", "502910")
    assert result.returncode == 0, result.stderr
    assert "37 record(s) with offset >= 502910" in result.stdout
    assert "offset 1002912 " in result.stdout


def test_negative_from_offset_is_a_usage_error(fixture_segments_dir: pathlib.Path) -> None:
    result = _inspect(fixture_segments_dir / "single_none.seg", "--from-offset", "-1")
    assert result.returncode == 2
    assert "offset must be in" in result.stderr


def test_corrupt_file_exits_1_with_one_line_naming_the_problem(tmp_path: pathlib.Path) -> None:
    data = bytearray(write_segment([(5, 6, b"k", b"v")], Compression.LZ4))
    data[70] ^= 0xFF
    path = tmp_path / "broken.seg"
    path.write_bytes(bytes(data))
    result = _inspect(path, "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ChecksumMismatchError" in lines[0]
    assert str(path) in lines[0]
    assert "byte" in lines[0]
    assert "Traceback" not in result.stderr


def test_no_verify_crc_reads_past_a_damaged_checksum(tmp_path: pathlib.Path) -> None:
    data = bytearray(write_segment([(5, 6, b"k", b"v")], Compression.NONE))
    data[-24] ^= 0xFF  # the stored CRC itself
    path = tmp_path / "crc.seg"
    path.write_bytes(bytes(data))
    assert _inspect(path).returncode == 1
    result = _inspect(path, "--no-verify-crc", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"] == [
        {"offset": 5, "timestamp": 6, "key": "aw==", "value": "dg=="}
    ]
    assert "(not verified)" in _inspect(path, "--no-verify-crc").stdout


def test_zstd_segment_is_reported_as_unsupported(tmp_path: pathlib.Path) -> None:
    import struct
    import zlib

    data = bytearray(write_segment([(1, 2, None, b"x")], Compression.LZ4))
    data[7] = int(Compression.ZSTD)
    struct.pack_into(">I", data, len(data) - 24, zlib.crc32(data[:-32]))
    path = tmp_path / "zstd.seg"
    path.write_bytes(bytes(data))
    result = _inspect(path)
    assert result.returncode == 1
    assert "UnsupportedSegmentError" in result.stderr
    assert "zstd" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_file_exits_1_without_traceback(tmp_path: pathlib.Path) -> None:
    result = _inspect(tmp_path / "nope.seg")
    assert result.returncode == 1
    assert "nope.seg" in result.stderr
    assert "Traceback" not in result.stderr
