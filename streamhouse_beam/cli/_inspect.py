"""``streamhouse-beam inspect PATH``: show what a segment file holds.

Human-readable by default (header, index, record count, first and last records); with
``--json`` exactly one JSON document on stdout::

    {"header": {"magic", "version", "compression", "base_offset", "end_offset",
                "record_count", "block_count"},
     "index": [{"offset", "position", "timestamp"}, ...],
     "records": [{"offset", "timestamp", "key": base64 | null, "value": base64}, ...]}

Everything is decoded before anything is printed, so a corrupt file prints nothing on stdout;
the dispatcher in ``streamhouse_beam.cli`` turns the error into one stderr line and exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import pathlib
import sys
from typing import Any

from streamhouse_beam.segment import SegmentReader

__all__ = ["register"]

_SHOWN = 3  # records shown at each end of the human summary
_PREVIEW = 48  # bytes of a key/value shown in the human summary


def register(subparsers: Any) -> None:
    """Add the ``inspect`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "inspect",
        help="decode one segment file and print its header, index and records",
        description="Decode one StreamHouse segment file (.seg) and show what it holds.",
    )
    parser.add_argument("path", metavar="PATH", help="segment file to inspect")
    parser.add_argument(
        "--from-offset",
        type=_u64,
        default=None,
        metavar="N",
        help="only records with offset >= N (decodes from the block that holds N)",
    )
    parser.add_argument(
        "--no-verify-crc",
        dest="verify_crc",
        action="store_false",
        help="skip the CRC-32 check (to look at a damaged file)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=_run)


def _u64(text: str) -> int:
    value = int(text)
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"offset must be in [0, 2**64), got {text}")
    return value


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    path = pathlib.Path(args.path)
    data = path.read_bytes()
    reader = SegmentReader(data, key=str(path), verify_crc=args.verify_crc)
    if args.from_offset is None:
        records = reader.read_all()
    else:
        records = reader.read_from_offset(args.from_offset)
    if args.json:
        json.dump(_as_json(reader, records), sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        sys.stdout.write(_summary(path, reader, records, args.from_offset))
    return 0


def _as_json(
    reader: SegmentReader, records: list[tuple[int, int, bytes | None, bytes]]
) -> dict[str, Any]:
    h = reader.header
    b64 = base64.b64encode
    return {
        "header": {
            "magic": h.magic.decode("ascii"),
            "version": h.version,
            "compression": h.compression.label,
            "base_offset": h.base_offset,
            "end_offset": h.end_offset,
            "record_count": h.record_count,
            "block_count": h.block_count,
        },
        "index": [
            {"offset": e.offset, "position": e.position, "timestamp": e.timestamp}
            for e in reader.index
        ],
        "records": [
            {
                "offset": offset,
                "timestamp": ts,
                "key": None if key is None else b64(key).decode("ascii"),
                "value": b64(value).decode("ascii"),
            }
            for offset, ts, key, value in records
        ],
    }


def _preview(data: bytes | None) -> str:
    if data is None:
        return "(no key)"
    shown = repr(data[:_PREVIEW])
    return f"{shown}... ({len(data)} bytes)" if len(data) > _PREVIEW else shown


def _summary(
    path: pathlib.Path,
    reader: SegmentReader,
    records: list[tuple[int, int, bytes | None, bytes]],
    from_offset: int | None,
) -> str:
    h = reader.header
    lines = [
        f"segment      {path} ({reader.size} bytes)",
        f"format       {h.magic.decode('ascii')} version {h.version}, compression {h.compression.label}",
        f"offsets      {h.base_offset}..{h.end_offset} (inclusive)",
        f"records      {h.record_count} in {h.block_count} block(s)",
        f"crc32        {reader.footer.crc32:#010x} "
        + ("(verified)" if reader.crc_verified else "(not verified)"),
        f"index at     byte {reader.footer.index_position}",
        "",
        f"{'block':>5}  {'first offset':>20}  {'position':>12}  {'bytes':>10}  first timestamp",
    ]
    for i, entry in enumerate(reader.index):
        start, end = reader.block_range(i)
        lines.append(
            f"{i:>5}  {entry.offset:>20}  {entry.position:>12}  {end - start:>10}  {entry.timestamp}"
        )
    lines.append("")
    scope = "" if from_offset is None else f" with offset >= {from_offset}"
    lines.append(f"{len(records)} record(s){scope}")
    if len(records) <= 2 * _SHOWN:
        shown: list[tuple[int, int, bytes | None, bytes] | None] = list(records)
    else:
        shown = [*records[:_SHOWN], None, *records[-_SHOWN:]]
    for rec in shown:
        if rec is None:
            lines.append(f"  ... {len(records) - 2 * _SHOWN} more ...")
            continue
        offset, ts, key, value = rec
        lines.append(
            f"  offset {offset}  timestamp {ts}  key {_preview(key)}  value {_preview(value)}"
        )
    return "\n".join(lines) + "\n"
