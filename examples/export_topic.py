"""Export a StreamHouse topic up to its latest offsets to JSON lines or Parquet files.

A bounded read: every partition is read from ``--start`` (default: earliest) to the offsets
that were readable when the pipeline planned the read, then the pipeline ends. Each record
becomes one row ``topic, partition, offset, timestamp (ms), key, value``; keys and values are
written as UTF-8 text when they decode, else as base64 (JSON lines) or bytes (Parquet)::

    python examples/export_topic.py \\
        --metadata-url sqlite:////data/streamhouse/metadata.db \\
        --storage-url file:///data/streamhouse/segments \\
        --topic orders --format parquet --output /tmp/export/orders

Any other argument is a Beam pipeline option (``--runner=PrismRunner``, ``--runner=DataflowRunner
--project=... --region=... --temp_location=gs://...`` and so on); without ``--runner`` the
pipeline runs in this process on FnApiRunner. ``--runner=PrismRunner`` uses the Prism binary
``make runners`` caches unless ``--prism_location`` is given.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from streamhouse_beam import ReadFromStreamHouse, StartPosition, StopPosition, local_pipeline_args


def _text_or_base64(data: bytes | None) -> tuple[str | None, bool]:
    if data is None:
        return None, False
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def to_json_line(record: Any) -> str:
    """One record as a JSON object; ``*_base64`` flags say which fields were not UTF-8."""
    key, key_b64 = _text_or_base64(record.key)
    value, value_b64 = _text_or_base64(record.value)
    doc: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": key,
        "value": value,
    }
    if key_b64:
        doc["key_base64"] = True
    if value_b64:
        doc["value_base64"] = True
    return json.dumps(doc, ensure_ascii=False, sort_keys=True)


def to_parquet_row(record: Any) -> dict[str, Any]:
    """One record as a dict matching :func:`parquet_schema`."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key,
        "value": record.value,
    }


def parquet_schema() -> Any:
    """The Parquet schema of the export (pyarrow is imported only when Parquet is asked for)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("topic", pa.string()),
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            ("timestamp", pa.timestamp("ms", tz="UTC")),
            ("key", pa.binary()),
            ("value", pa.binary()),
        ]
    )


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata-url", required=True, help="sqlite:/// or postgresql:// URL")
    parser.add_argument("--storage-url", default=None, help="file:///dir, s3://bucket, gs://bucket")
    parser.add_argument("--organization", default=None, help="organization id")
    parser.add_argument("--topic", required=True, action="append", help="topic (repeatable)")
    parser.add_argument(
        "--start-timestamp",
        type=int,
        default=None,
        help="start at the first record at or after this time (ms); default: earliest",
    )
    parser.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
    parser.add_argument("--output", required=True, help="output path prefix")
    parser.add_argument("--shards", type=int, default=1, help="number of output files")
    return parser.parse_known_args(argv)


def build(pipeline: beam.Pipeline, args: argparse.Namespace) -> None:
    """Add the export to ``pipeline``."""
    start = (
        StartPosition.earliest()
        if args.start_timestamp is None
        else StartPosition.timestamp(args.start_timestamp)
    )
    records = pipeline | "Read" >> ReadFromStreamHouse(
        args.topic,
        metadata_url=args.metadata_url,
        storage_url=args.storage_url,
        organization_id=args.organization,
        start=start,
        stop=StopPosition.latest(),
    )
    if args.format == "jsonl":
        _ = (
            records
            | "ToJson" >> beam.Map(to_json_line)
            | "Write"
            >> beam.io.WriteToText(args.output, file_name_suffix=".jsonl", num_shards=args.shards)
        )
    else:
        _ = (
            records
            | "ToRow" >> beam.Map(to_parquet_row)
            | "Write"
            >> beam.io.WriteToParquet(
                args.output,
                parquet_schema(),
                file_name_suffix=".parquet",
                num_shards=args.shards,
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = parse_args(argv)
    options = PipelineOptions(local_pipeline_args(beam_args, default_runner="FnApiRunner"))
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
