"""Resume where the last run stopped, using offsets committed to a StreamHouse consumer group.

Each run reads every partition from the group's committed offset (the next offset to read;
partitions the group has never committed start at ``--fallback``, earliest by default) up to
the latest readable offsets, appends the records to a new output file, and — once each bundle
is durably committed by the runner — commits the next offset to read back to the group. Run it
on a schedule and every record is exported once, the way a Kafka consumer group would::

    python examples/resume_from_committed.py \\
        --metadata-url sqlite:////data/streamhouse/metadata.db \\
        --storage-url file:///data/streamhouse/segments \\
        --topic orders --group nightly-export --output /tmp/orders/run-$(date +%s)

Commits go to StreamHouse's ``consumer_offsets`` table, so StreamHouse's own consumers and
tools see the group's progress. Commits never move a group backwards. Other arguments are Beam
pipeline options. Without ``--runner`` the pipeline runs on FnApiRunner; ``--runner=PrismRunner``
uses the Prism binary ``make runners`` caches.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from streamhouse_beam import ReadFromStreamHouse, StartPosition, StopPosition, local_pipeline_args


def to_line(record: Any) -> str:
    """A record as JSON (value as UTF-8 text, replacing undecodable bytes)."""
    return json.dumps(
        {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "value": record.value.decode("utf-8", "replace"),
        },
        sort_keys=True,
    )


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata-url", required=True, help="sqlite:/// or postgresql:// URL")
    parser.add_argument("--storage-url", default=None, help="file:///dir, s3://bucket, gs://bucket")
    parser.add_argument("--organization", default=None, help="organization id")
    parser.add_argument("--topic", required=True, action="append", help="topic (repeatable)")
    parser.add_argument("--group", required=True, help="consumer group to resume and commit")
    parser.add_argument(
        "--fallback",
        choices=("earliest", "latest"),
        default="earliest",
        help="where partitions without a committed offset start",
    )
    parser.add_argument("--output", required=True, help="output path prefix of this run")
    return parser.parse_known_args(argv)


def build(pipeline: beam.Pipeline, args: argparse.Namespace) -> None:
    """Add the resuming, committing read to ``pipeline``."""
    _ = (
        pipeline
        | "Read"
        >> ReadFromStreamHouse(
            args.topic,
            metadata_url=args.metadata_url,
            storage_url=args.storage_url,
            organization_id=args.organization,
            start=StartPosition.committed(args.group, fallback=args.fallback),
            stop=StopPosition.latest(),
            commit_offsets_group=args.group,
        )
        | "ToJson" >> beam.Map(to_line)
        | "Write" >> beam.io.WriteToText(args.output, file_name_suffix=".jsonl", num_shards=1)
    )


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = parse_args(argv)
    options = PipelineOptions(local_pipeline_args(beam_args, default_runner="FnApiRunner"))
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
