"""Decode an Avro topic written with StreamHouse's schema-registry framing.

Producers that use the schema registry prefix each value with ``0x00`` and the schema id
(big-endian int32) and append the Avro datum. ``SchemaRegistryDecoder`` fetches
each id's schema from the registry once per worker, caches it, and decodes every value into a
dict. Values that cannot be decoded (an unknown id, a corrupt datum, an unframed value) are
sent to a dead-letter file with the reason and the raw bytes instead of failing the job::

    python examples/avro_registry.py \\
        --metadata-url postgresql://streamhouse@db/streamhouse \\
        --storage-url s3://streamhouse-data \\
        --registry-url http://streamhouse:8080 \\
        --topic payments --output /tmp/payments/decoded

``--registry-mount ''`` targets the standalone ``schema-registry`` binary (routes at the root);
``--registry-header 'Authorization: Bearer …'`` adds a header. The read is bounded (up to the
latest offsets) unless ``--tail`` is given. Other arguments are Beam pipeline options. Without
``--runner`` the pipeline runs on FnApiRunner; ``--runner=PrismRunner`` uses the Prism binary
``make runners`` caches.
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

from streamhouse_beam import (
    ReadFromStreamHouse,
    SchemaRegistryDecoder,
    StopPosition,
    local_pipeline_args,
)


def decoded_line(record: Any) -> str:
    """A decoded record as JSON: position, timestamp, key and the Avro value as an object."""
    return json.dumps(
        {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": None if record.key is None else record.key.decode("utf-8", "replace"),
            "value": record.value,
        },
        sort_keys=True,
        default=str,  # Avro logical types (decimal, uuid, dates) as text
    )


def dead_letter_line(dead: Any) -> str:
    """An undecodable record as JSON, with the reason and the raw value in base64."""
    return json.dumps(
        {
            "topic": dead.topic,
            "partition": dead.partition,
            "offset": dead.offset,
            "reason": dead.reason,
            "value_base64": base64.b64encode(dead.value).decode("ascii"),
        },
        sort_keys=True,
    )


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata-url", required=True, help="sqlite:/// or postgresql:// URL")
    parser.add_argument("--storage-url", default=None, help="file:///dir, s3://bucket, gs://bucket")
    parser.add_argument("--organization", default=None, help="organization id")
    parser.add_argument("--topic", required=True, action="append", help="topic (repeatable)")
    parser.add_argument("--registry-url", required=True, help="e.g. http://streamhouse:8080")
    parser.add_argument("--registry-mount", default="/schemas", help="'' for the standalone one")
    parser.add_argument(
        "--registry-header", action="append", default=[], help="'Name: value' (repeatable)"
    )
    parser.add_argument("--tail", action="store_true", help="keep reading new records")
    parser.add_argument("--max-records", type=int, default=None, help="stop after N records")
    parser.add_argument("--output", required=True, help="output path prefix")
    return parser.parse_known_args(argv)


def build(pipeline: beam.Pipeline, args: argparse.Namespace) -> None:
    """Add the decoding read and its two outputs to ``pipeline``."""
    headers = {}
    for header in args.registry_header:
        name, sep, value = header.partition(":")
        if not sep:
            raise ValueError(f"--registry-header must be 'Name: value', got {header!r}")
        headers[name.strip()] = value.strip()
    decoder = SchemaRegistryDecoder(args.registry_url, mount=args.registry_mount, headers=headers)
    result = pipeline | "Read" >> ReadFromStreamHouse(
        args.topic,
        metadata_url=args.metadata_url,
        storage_url=args.storage_url,
        organization_id=args.organization,
        stop=None if args.tail else StopPosition.latest(),
        max_records=args.max_records,
        value_decoder=decoder,
        dead_letter=True,
    )
    _ = (
        result.records
        | "Decoded" >> beam.Map(decoded_line)
        | "WriteDecoded"
        >> beam.io.WriteToText(args.output, file_name_suffix=".jsonl", num_shards=1)
    )
    _ = (
        result.dead_letter
        | "DeadLetter" >> beam.Map(dead_letter_line)
        | "WriteDeadLetter"
        >> beam.io.WriteToText(
            args.output + "-dead-letter", file_name_suffix=".jsonl", num_shards=1
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
