"""Streaming: count records per key in fixed event-time windows while tailing a topic.

The read has no stop position, so it tails every partition: records appended to the topic
while the pipeline runs are read as they become visible. Each record's event time is its
StreamHouse timestamp, and each partition's watermark follows its records (and advances to
"now minus --max-delay" while the partition is idle), so windows close as the topic moves on.
One line per window and key is written: ``window_start<TAB>key<TAB>count``::

    python examples/windowed_counts.py \\
        --metadata-url sqlite:////data/streamhouse/metadata.db \\
        --storage-url file:///data/streamhouse/segments \\
        --topic clicks --window-seconds 60 --output /tmp/counts/clicks

It runs until cancelled, or until ``--max-records`` records were read (handy for trials and
tests). Any other argument is a Beam pipeline option; ``--streaming`` is always set. Without
``--runner`` it runs on Prism, from the binary ``make runners`` caches (no download; a
``RunnerNotInstalledError`` says what to do when it is missing): Prism writes each window once
the watermark passes it, while the pipeline tails. FnApiRunner (``--runner=FnApiRunner``)
writes nothing until the read ends, so only with ``--max-records``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import FixedWindows

from streamhouse_beam import ReadFromStreamHouse, StartPosition, local_pipeline_args


class FormatCount(beam.DoFn):  # type: ignore[misc]
    """``(key, count)`` in a window -> ``window_start<TAB>key<TAB>count``."""

    def process(
        self, element: tuple[str, int], window: Any = beam.DoFn.WindowParam
    ) -> Iterator[str]:
        key, count = element
        start = datetime.datetime.fromtimestamp(
            window.start.micros / 1_000_000, tz=datetime.timezone.utc
        )
        yield f"{start:%Y-%m-%dT%H:%M:%SZ}\t{key}\t{count}"


def key_of(record: Any) -> str:
    """The record key as text (``<none>`` for records without a key)."""
    if record.key is None:
        return "<none>"
    return str(record.key.decode("utf-8", "backslashreplace"))


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata-url", required=True, help="sqlite:/// or postgresql:// URL")
    parser.add_argument("--storage-url", default=None, help="file:///dir, s3://bucket, gs://bucket")
    parser.add_argument("--organization", default=None, help="organization id")
    parser.add_argument("--topic", required=True, action="append", help="topic (repeatable)")
    parser.add_argument("--from-latest", action="store_true", help="skip what is already there")
    parser.add_argument("--window-seconds", type=int, default=60)
    parser.add_argument("--max-delay", type=float, default=60.0, help="idle watermark lag, s")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--max-records", type=int, default=None, help="stop after N records")
    parser.add_argument("--output", required=True, help="output path prefix")
    return parser.parse_known_args(argv)


def build(pipeline: beam.Pipeline, args: argparse.Namespace) -> None:
    """Add the windowed count to ``pipeline``."""
    _ = (
        pipeline
        | "Tail"
        >> ReadFromStreamHouse(
            args.topic,
            metadata_url=args.metadata_url,
            storage_url=args.storage_url,
            organization_id=args.organization,
            start=StartPosition.latest() if args.from_latest else StartPosition.earliest(),
            max_records=args.max_records,
            poll_interval=args.poll_interval,
            max_delay_seconds=args.max_delay,
        )
        | "Key" >> beam.Map(lambda record: (key_of(record), 1))
        | "Window" >> beam.WindowInto(FixedWindows(args.window_seconds))
        | "Count" >> beam.CombinePerKey(sum)
        | "Format" >> beam.ParDo(FormatCount())
        | "Write" >> beam.io.WriteToText(args.output, file_name_suffix=".tsv", num_shards=1)
    )


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = parse_args(argv)
    # Prism fires each window as the watermark passes it; FnApiRunner runs the stages after
    # the read only once the read ends, which a tailing read never does.
    runner_args = local_pipeline_args(beam_args, default_runner="PrismRunner")
    options = PipelineOptions([*runner_args, "--streaming"])
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
