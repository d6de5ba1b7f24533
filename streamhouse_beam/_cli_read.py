"""``streamhouse-beam read``: run a Beam pipeline that reads topics into a JSON-lines file.

Each record becomes one line::

    {"topic": "t", "partition": 0, "offset": 5, "timestamp": 1767225600005,
     "key": "<base64>" | null, "value": "<base64>"}

The pipeline runs on FnApiRunner (in this process, one worker) unless a ``--runner`` is among
the extra arguments, which are passed to Beam as pipeline options. On the in-process runner the
lines are appended to ``--output`` as records arrive (a tailing read without ``--stop`` or
``--max-records`` runs until interrupted) and progress is printed on stderr; other runners write
``--output`` with ``WriteToText`` (one shard), which needs ``--stop`` and, on Flink, batch
mode. ``--metrics-out`` writes the ``streamhouse`` counters of the finished pipeline as one
JSON object.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``read`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "read",
        help="read topics with an Apache Beam pipeline into a JSON-lines file",
        description=(
            "Read StreamHouse topics with ReadFromStreamHouse and write one JSON line per record. "
            "Arguments this command does not know are passed to Beam as pipeline options "
            "(e.g. --runner=PrismRunner)."
        ),
    )
    parser.add_argument(
        "--metadata-url", required=True, metavar="URL", help="sqlite:/// or postgresql:// URL"
    )
    parser.add_argument(
        "--storage-url",
        default=None,
        metavar="URL",
        help="file:///dir, s3://bucket (s3:// alone: each segment's bucket), gs://bucket; default s3://",
    )
    parser.add_argument("--organization", default=None, metavar="ID", help="organization id")
    parser.add_argument(
        "--topic", required=True, action="append", metavar="T", help="topic (repeatable)"
    )
    parser.add_argument(
        "--start",
        default="earliest",
        metavar="POS",
        help="earliest | latest | offset:N | timestamp:MS | committed:GROUP (default earliest)",
    )
    parser.add_argument(
        "--stop",
        default=None,
        metavar="POS",
        help="latest | offset:N | timestamp:MS (default: none, tail the topics)",
    )
    parser.add_argument(
        "--max-records", type=int, default=None, metavar="N", help="stop after N records"
    )
    parser.add_argument(
        "--max-poll-records", type=int, default=5000, metavar="N", help="records per poll"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=1.0, metavar="S", help="seconds between polls"
    )
    parser.add_argument("--output", required=True, metavar="PATH", help="JSON-lines output file")
    parser.add_argument(
        "--metrics-out", default=None, metavar="PATH", help="write counters as JSON here"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=_run, accepts_extra_args=True)


def _offsets_for_all(
    metadata_url: str, organization: str | None, topics: list[str], offset: int
) -> Any:
    from streamhouse_beam.metadata import open_metadata

    with open_metadata(metadata_url, organization) as meta:
        return {
            (topic, info.partition): offset for topic in topics for info in meta.partitions(topic)
        }


def _parse_start(text: str, args: argparse.Namespace) -> Any:
    from streamhouse_beam.positions import StartPosition

    kind, _, arg = text.partition(":")
    if text == "earliest":
        return StartPosition.earliest()
    if text == "latest":
        return StartPosition.latest()
    if kind == "committed" and arg:
        return StartPosition.committed(arg)
    if kind in ("offset", "timestamp") and arg.isdigit():
        if kind == "timestamp":
            return StartPosition.timestamp(int(arg))
        return StartPosition.offsets(
            _offsets_for_all(args.metadata_url, args.organization, args.topic, int(arg))
        )
    raise ValueError(
        f"--start {text!r} is not earliest, latest, offset:N, timestamp:MS or committed:GROUP"
    )


def _parse_stop(text: str | None, args: argparse.Namespace) -> Any:
    from streamhouse_beam.positions import StopPosition

    if text is None:
        return None
    kind, _, arg = text.partition(":")
    if text == "latest":
        return StopPosition.latest()
    if kind in ("offset", "timestamp") and arg.isdigit():
        if kind == "timestamp":
            return StopPosition.timestamp(int(arg))
        return StopPosition.offsets(
            _offsets_for_all(args.metadata_url, args.organization, args.topic, int(arg))
        )
    raise ValueError(f"--stop {text!r} is not latest, offset:N or timestamp:MS")


def to_json_line(record: Any) -> str:
    """The JSON line of one record (key and value base64, key null when absent)."""
    key = record.key
    return json.dumps(
        {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": None if key is None else base64.b64encode(key).decode("ascii"),
            "value": base64.b64encode(record.value).decode("ascii"),
        },
        separators=(",", ":"),
    )


def _counters(result: Any) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace("streamhouse"))[
        "counters"
    ]:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + int(value or 0)
    return dict(sorted(totals.items()))


def _check_single_file_write(pipeline: Any, stop: Any, runner_name: str) -> None:
    """Refuse what Beam's one-file ``WriteToText`` cannot do on ``runner_name``.

    Raises:
        ValueError: a tailing read (Beam writes an unbounded input only in windows, to many
            files), or streaming mode on Flink (where Beam's one-shard write of a bounded
            input fails: docs/flink.md, "WriteToText and other sinks in streaming mode").
    """
    from apache_beam.options.pipeline_options import StandardOptions

    from streamhouse_beam.beam.runner_checks import is_flink

    if stop is None:
        raise ValueError(
            f"--runner {runner_name} writes --output with Beam's WriteToText, which needs a "
            "bounded read: give --stop (latest, offset:N or timestamp:MS)"
        )
    if pipeline.options.view_as(StandardOptions).streaming and is_flink(pipeline):
        raise ValueError(
            "--streaming on Flink: Beam's one-file WriteToText fails there for a bounded read "
            "(see docs/flink.md); drop --streaming, a read with --stop runs in batch mode"
        )


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from streamhouse_beam.beam.transforms import ReadFromStreamHouse

    start = _parse_start(args.start, args)
    stop = _parse_stop(args.stop, args)
    read = ReadFromStreamHouse(
        args.topic,
        metadata_url=args.metadata_url,
        storage_url=args.storage_url,
        organization_id=args.organization,
        start=start,
        stop=stop,
        max_records=args.max_records,
        max_poll_records=args.max_poll_records,
        poll_interval=args.poll_interval,
    )
    options = PipelineOptions(extra)
    runner_name = options.view_as(StandardOptions).runner
    in_process = runner_name in (None, "FnApiRunner", "DirectRunner")
    if in_process:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    else:
        pipeline = beam.Pipeline(options=options)
        _check_single_file_write(pipeline, stop, runner_name)
    if stop is None and args.max_records is None and not args.quiet:
        print(
            "streamhouse-beam read: no --stop or --max-records: tailing until interrupted",
            file=sys.stderr,
        )
    from streamhouse_beam.beam.jsonl import AppendJsonLines, Progress

    Progress.reset(args.quiet)
    lines = pipeline | "Read" >> read | "ToJson" >> beam.Map(to_json_line)
    if in_process:
        open(args.output, "w").close()  # truncate; the sink appends
        lines | "Write" >> beam.ParDo(AppendJsonLines(args.output))
    else:
        lines | "Write" >> beam.io.WriteToText(args.output, shard_name_template="", num_shards=1)
    result = pipeline.run()
    result.wait_until_finish()
    counters = _counters(result)
    if not args.quiet:
        print(
            f"streamhouse-beam read: done, {counters.get('records_read', 0)} records -> {args.output}",
            file=sys.stderr,
        )
    if args.metrics_out:
        with open(args.metrics_out, "w", encoding="utf-8") as out:
            json.dump(counters, out, indent=2, sort_keys=True)
            out.write("\n")
    return 0
