"""``streamhouse-beam topics --metadata-url URL``: what a StreamHouse metadata store holds.

For every topic of the organization: each partition's earliest offset (the smallest segment
base offset), high watermark (the readable end, exclusive), segment count and total segment
bytes. Human-readable table by default; with ``--json`` exactly one JSON document on stdout::

    {"organization": "<id>",
     "topics": [{"name": "<topic>",
                 "partitions": [{"partition", "earliest_offset", "high_watermark",
                                 "segments", "bytes"}, ...]}, ...]}

Everything is read before anything is printed, so a failure prints nothing on stdout; the
dispatcher in ``streamhouse_beam.cli`` turns the error into one stderr line and exit status 1. The URL is
never printed with its password.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from streamhouse_beam.metadata import open_metadata

__all__ = ["register"]

_COLUMNS = ("TOPIC", "PARTITION", "EARLIEST", "HIGH_WATERMARK", "SEGMENTS", "BYTES")


def register(subparsers: Any) -> None:
    """Add the ``topics`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "topics",
        help="list topics and partitions of a StreamHouse metadata store",
        description=(
            "List the topics of one organization in a StreamHouse metadata store, with each "
            "partition's earliest offset, high watermark, segment count and bytes."
        ),
    )
    parser.add_argument(
        "--metadata-url",
        required=True,
        metavar="URL",
        help="sqlite:////abs/metadata.db (sqlite:///rel/metadata.db: relative, as in "
        "SQLAlchemy) or postgresql://user:password@host:port/db",
    )
    parser.add_argument(
        "--organization",
        default=None,
        metavar="ID",
        help="organization id (default: the store's only organization)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=_run)


def _collect(url: str, organization: str | None) -> dict[str, Any]:
    with open_metadata(url, organization) as meta:
        topics = []
        for topic in meta.list_topics():
            parts = [
                {
                    "partition": p.partition,
                    "earliest_offset": p.earliest_offset,
                    "high_watermark": p.high_watermark,
                    "segments": p.segment_count,
                    "bytes": p.size_bytes,
                }
                for p in meta.partitions(topic.name)
            ]
            topics.append({"name": topic.name, "partitions": parts})
        return {"organization": meta.organization_id, "topics": topics}


def _printable(name: str) -> str:
    # Topic names are arbitrary strings; keep control characters from reaching the terminal.
    return name if name.isprintable() else ascii(name)


def _table(doc: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = [_COLUMNS]
    for topic in doc["topics"]:
        name = _printable(topic["name"])
        if not topic["partitions"]:
            rows.append((name, "-", "-", "-", "-", "-"))
        for p in topic["partitions"]:
            rows.append(
                (
                    name,
                    str(p["partition"]),
                    str(p["earliest_offset"]),
                    str(p["high_watermark"]),
                    str(p["segments"]),
                    str(p["bytes"]),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = [f"organization {_printable(doc['organization'])}"]
    if not doc["topics"]:
        lines.append("(no topics)")
        return "\n".join(lines) + "\n"
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    doc = _collect(args.metadata_url, args.organization)
    if args.json:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(_table(doc))
    return 0
