"""Decode throughput: our segment reader against fastavro over the same records, in one run.

Builds ~1M records (16-byte keys, ~100-byte JSON-like values, timestamps a few ms apart) in a
temporary directory, writes them once as a StreamHouse LZ4 segment (our writer) and once as an
Avro object container file (fastavro, schema ``{offset long, timestamp long, key [null,
bytes], value bytes}``) with codec ``null`` and with codec ``deflate``. Each reader then turns
its file into a list of all records; every timing is the median of ``--repeat`` runs.

The segment side is timed with the pure-Python decoder (``decode_records_py``) and, when the
optional C accelerator is built, with it too. Ratios are fastavro time / our time (higher is
better for us). Results are printed and written to ``benchmarks/results/decode.md``.

Usage: ``python benchmarks/bench_decode.py [--records N] [--repeat 3] [--no-write]``
"""

from __future__ import annotations

import argparse
import gc
import io
import pathlib
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import fastavro

from streamhouse_beam.segment import Compression, SegmentReader, SegmentWriter
from streamhouse_beam.segment import decode as _decode

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "decode.md"
SCHEMA = {
    "type": "record",
    "name": "StreamHouseRecord",
    "fields": [
        {"name": "offset", "type": "long"},
        {"name": "timestamp", "type": "long"},
        {"name": "key", "type": ["null", "bytes"]},
        {"name": "value", "type": "bytes"},
    ],
}
_EVENTS = [b"click", b"view", b"purchase", b"search", b"signup", b"logout"]
_PAGES = [b"/home", b"/product", b"/cart", b"/search", b"/help", b"/checkout"]


def make_records(n: int, seed: int = 7) -> list[tuple[int, int, bytes, bytes]]:
    """``n`` records: contiguous offsets, 16-byte keys, 90-110-byte JSON-like values."""
    rng = random.Random(seed)
    ts = 1_700_000_000_000
    out = []
    for offset in range(n):
        ts += rng.randint(0, 3)
        key = b"user-%011d" % rng.randrange(10**11)
        head = b'{"event":"%s","user":%d,"page":"%s/%d","ok":true,"pad":"' % (
            rng.choice(_EVENTS),
            rng.randrange(100_000),
            rng.choice(_PAGES),
            rng.randrange(1000),
        )
        size = rng.randint(90, 110)
        value = head + b"x" * max(0, size - len(head) - 2) + b'"}'
        out.append((offset, ts, key, value))
    return out


def write_segment_file(records: list[tuple[int, int, bytes, bytes]], path: pathlib.Path) -> None:
    writer = SegmentWriter(Compression.LZ4)
    for rec in records:
        writer.append(*rec)
    path.write_bytes(writer.finish())


def write_avro_file(
    records: list[tuple[int, int, bytes, bytes]], path: pathlib.Path, codec: str
) -> None:
    schema = fastavro.parse_schema(SCHEMA)
    with path.open("wb") as fh:
        fastavro.writer(
            fh,
            schema,
            ({"offset": o, "timestamp": t, "key": k, "value": v} for o, t, k, v in records),
            codec=codec,
        )


def read_segment(path: pathlib.Path) -> int:
    return len(SegmentReader(path.read_bytes(), key=str(path)).read_all())


def read_avro(path: pathlib.Path) -> int:
    with path.open("rb") as fh:
        return len(list(fastavro.reader(io.BufferedReader(fh))))


def _read_segment_with(decoder: Any, path: pathlib.Path) -> int:
    saved = _decode.decode_records
    _decode.decode_records = decoder
    try:
        return read_segment(path)
    finally:
        _decode.decode_records = saved


def run(n: int, repeat: int) -> tuple[list[tuple[str, float, int]], dict[str, str]]:
    records = make_records(n)
    with tempfile.TemporaryDirectory(prefix="streamhouse-bench-") as tmp:
        root = pathlib.Path(tmp)
        seg = root / "records.seg"
        write_segment_file(records, seg)
        avro_files = {}
        for codec in ("null", "deflate"):
            avro_files[codec] = root / f"records-{codec}.avro"
            write_avro_file(records, avro_files[codec], codec)
        # Same content on both sides, checked once outside the timings.
        got = SegmentReader(seg.read_bytes()).read_all()
        assert got == records, "segment round trip differs"
        for path in avro_files.values():
            with path.open("rb") as fh:
                avro: list[Any] = list(fastavro.reader(fh))
            assert [(r["offset"], r["timestamp"], r["key"], r["value"]) for r in avro] == records
            del avro
        del got, records

        readers: list[tuple[str, Callable[[], int], int]] = [
            (
                "streamhouse segment, LZ4, pure-Python decoder",
                lambda: _read_segment_with(_decode.decode_records_py, seg),
                seg.stat().st_size,
            )
        ]
        if _decode.speedups_active():
            accelerated = _decode.decode_records
            readers.append(
                (
                    "streamhouse segment, LZ4, C accelerator",
                    lambda: _read_segment_with(accelerated, seg),
                    seg.stat().st_size,
                )
            )
        for codec, path in avro_files.items():
            readers.append(
                (
                    f"fastavro.reader, Avro codec {codec}",
                    lambda p=path: read_avro(p),  # type: ignore[misc]
                    path.stat().st_size,
                )
            )
        # Round-robin: each repetition times every reader once, so load from other processes
        # on a shared machine hits all of them alike.
        times: dict[str, list[float]] = {name: [] for name, _, _ in readers}
        for _ in range(repeat):
            for name, fn, _ in readers:
                gc.collect()
                start = time.perf_counter()
                count = fn()
                times[name].append(time.perf_counter() - start)
                if count != n:
                    raise SystemExit(f"{name}: read {count} records, expected {n}")
        rows = [(name, statistics.median(times[name]), size) for name, _, size in readers]
    env = {
        "python": sys.version.split()[0],
        "fastavro": fastavro.__version__,
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "fastavro_reader": fastavro.reader.__module__,
    }
    return rows, env


_NOTES = [
    "## Profile and what was tried",
    "",
    "cProfile of `SegmentReader.read_all()` over 1M such records: ~81% of the time in the "
    "per-record loop of `decode_records_py`, ~2% in `lz4.block.decompress` (115 blocks), ~4% "
    "in `list.append`, the rest building/extending the result list. CRC-32 and slicing the "
    "blocks out of the buffer do not register, so the only lever is the bytecode count per "
    "record. Loop variants, CPU ns per record (min of 15 interleaved runs over 200k records; "
    "shapes: A = this benchmark, B = values 200-1000 B (2-byte length), C = timestamps "
    "100-5000 ms apart (2-byte delta), D = C with 200-1000 B values and no key):",
    "",
    "| variant | A | B | C | D |",
    "|---|---:|---:|---:|---:|",
    "| fast path when the offset delta, timestamp delta and key length are all one byte, "
    "else a per-record function call | 355 | 415 | 747 | 826 |",
    "| **every field inline, one-byte varints first, 2-byte timestamp delta and value length "
    "inline, a call only for longer varints (kept)** | 359 | 421 | 399 | 452 |",
    "| both: the all-one-byte test first, then the per-field path | 363 | 410 | 445 | 493 |",
    "",
    "Dropped earlier: `(a | b | c) < 0x80` in place of three comparisons (no gain); skipping "
    "the u64 wrap mask while offsets stay inside a safe window (2x slower: the window "
    "excludes small offsets, the common case); one varint-reader call per field (several "
    "times slower). The first record of each block goes through the general decoder since it "
    "carries the pre-2026-02-06 first-record rule. Truncation costs nothing per record: an `IndexError` "
    "while reading the fixed fields, or the end position overshooting the block after the "
    "loop, becomes a `TruncatedSegmentError` naming the record's block byte.",
    "",
]


def report(rows: list[tuple[str, float, int]], env: dict[str, str], n: int, repeat: int) -> str:
    ours = rows[0][1]
    lines = [
        "# Decode benchmark: StreamHouse segment reader vs fastavro",
        "",
        f"{n:,} records (contiguous offsets, 16-byte keys, 90-110-byte JSON-like values, "
        f"timestamps 0-3 ms apart), each file read into a list of all records; median of "
        f"{repeat} runs (round-robin), same process, same data. Python {env['python']}, fastavro "
        f"{env['fastavro']} (reader from `{env['fastavro_reader']}`), {env['machine']}.",
        "",
        "| reader | file bytes | seconds | records/s | fastavro-null time / this |",
        "|---|---:|---:|---:|---:|",
    ]
    avro_null = next(t for name, t, _ in rows if name.endswith("codec null"))
    for name, seconds, size in rows:
        lines.append(
            f"| {name} | {size:,} | {seconds:.3f} | {n / seconds:,.0f} | {avro_null / seconds:.2f}x |"
        )
    avro_deflate = next(t for name, t, _ in rows if name.endswith("codec deflate"))
    lines += [
        "",
        f"Pure-Python segment decoding is **{avro_null / ours:.2f}x** as fast as fastavro over an "
        f"uncompressed Avro file (codec null) and **{avro_deflate / ours:.2f}x** over a deflate "
        "one (the goal was >= 1.5x against the plain reader; the headline compares with codec "
        "null, the faster baseline).",
        "",
        "Reproduce: `.venv/bin/python benchmarks/bench_decode.py` (data is built in a temporary "
        "directory and removed afterwards).",
        "",
        *_NOTES,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not write results/decode.md")
    args = parser.parse_args(argv)
    rows, env = run(args.records, args.repeat)
    text = report(rows, env, args.records, args.repeat)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
