"""``streamhouse-beam read``: run a Beam pipeline that reads topics into JSON lines.

Each record becomes one line::

    {"topic": "t", "partition": 0, "offset": 5, "timestamp": 1767225600005,
     "key": "<base64>" | null, "value": "<base64>"}

``--format`` chooses how key and value are written: ``base64`` (the default: any bytes, no
loss), ``text`` (UTF-8 strings) or ``json`` (the value parsed as JSON and embedded, the key as
text); a record that is not valid UTF-8 / JSON then fails the read naming its offset.

Before the pipeline starts, the metadata store is opened and every topic looked up (a missing
one is reported with the topics that do exist); on the in-process runner the storage root is
checked too. Extra arguments are passed to Beam as pipeline options. Without ``--runner`` a
bounded read runs on FnApiRunner (in this process, one worker) and a tailing read on the Prism
binary ``make runners`` caches (FnApiRunner when there is none); ``--runner=PrismRunner`` without
``--prism_location`` uses the cached binary too, and fails with ``RunnerNotInstalledError``
naming ``make runners`` when there is none. FnApiRunner and Prism (whose default LOOPBACK
environment runs the DoFns in this process) are the in-process runners: on them the lines go
to standard output (``--output -``, the default) or to a
temporary file beside ``--output`` that replaces it only when the read succeeds (a tailing read
without ``--stop`` or ``--max-records`` runs until interrupted, and an interrupt is its normal
end), and progress is shown on stderr when it is a terminal; other runners write ``--output``
with ``WriteToText`` (one shard), which needs ``--stop`` and, on Flink, batch mode.
``--metrics-out`` writes the ``streamhouse`` counters of the finished pipeline as one JSON
object.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from streamhouse_beam.positions import START_TEXTS, STOP_TEXTS
from streamhouse_beam.settings import DEFAULT_MAX_POLL_RECORDS, PollSettings, SourceSettings

__all__ = ["build_read", "register"]

#: ``--format`` choices: how key and value bytes are written into the JSON line.
FORMATS = ("base64", "text", "json")


def register(subparsers: Any) -> None:
    """Add the ``read`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "read",
        help="read topics with an Apache Beam pipeline into JSON lines",
        description=(
            "Read StreamHouse topics with ReadFromStreamHouse and write one JSON line per record: "
            '{"topic", "partition", "offset", "timestamp", "key", "value"}. Key and value are '
            "base64 unless --format says otherwise (key null when the record has none). "
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
        help="file:///dir, s3://bucket (s3:// alone: each segment's bucket), gs://bucket; "
        f"default {SourceSettings.storage_url}",
    )
    parser.add_argument("--organization", default=None, metavar="ID", help="organization id")
    parser.add_argument(
        "--topic", required=True, action="append", metavar="T", help="topic (repeatable)"
    )
    # Options left out take the read's defaults (streamhouse_beam.settings): None here is
    # "not given", and only what is given is passed on.
    parser.add_argument(
        "--start",
        default=None,
        metavar="POS",
        help=f"{' | '.join(START_TEXTS)} (default {SourceSettings.start.describe()})",
    )
    parser.add_argument(
        "--stop",
        default=None,
        metavar="POS",
        help=f"{' | '.join(STOP_TEXTS)} (default: none, tail the topics)",
    )
    parser.add_argument(
        "--max-records", type=int, default=None, metavar="N", help="stop after N records"
    )
    parser.add_argument(
        "--max-poll-records",
        type=int,
        default=None,
        metavar="N",
        help=f"records per poll (default {DEFAULT_MAX_POLL_RECORDS} when --max-poll-bytes is "
        "not given either)",
    )
    parser.add_argument(
        "--max-poll-bytes",
        type=int,
        default=None,
        metavar="B",
        help="key and value bytes per poll: a poll ends with the record that reaches B (with "
        "--max-poll-records too, at whichever comes first; default: no byte limit)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        metavar="S",
        help=f"seconds between polls of a caught-up partition (default {PollSettings.poll_interval:g})",
    )
    parser.add_argument(
        "--output",
        default="-",
        metavar="PATH",
        help="JSON-lines output file, replaced only when the read succeeds; - (the default) "
        "is standard output",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="base64",
        help="how key and value are written: base64 (default, any bytes), text (UTF-8 "
        "strings) or json (the value parsed as JSON, the key as text)",
    )
    parser.add_argument(
        "--metrics-out", default=None, metavar="PATH", help="write counters as JSON here"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress or summary on stderr (warnings stay)"
    )
    parser.set_defaults(func=_run, accepts_extra_args=True)


def build_read(args: argparse.Namespace) -> Any:
    """The ``ReadFromStreamHouse`` the arguments describe; what they leave out is its default."""
    from streamhouse_beam.beam._transforms import ReadFromStreamHouse
    from streamhouse_beam.positions import StartPosition, StopPosition

    given: dict[str, Any] = {
        "storage_url": args.storage_url,
        "organization_id": args.organization,
        "start": None if args.start is None else StartPosition.parse(args.start, name="--start"),
        "stop": None if args.stop is None else StopPosition.parse(args.stop, name="--stop"),
        "max_records": args.max_records,
        "max_poll_records": args.max_poll_records,
        "max_poll_bytes": args.max_poll_bytes,
        "poll_interval": args.poll_interval,
    }
    return ReadFromStreamHouse(
        args.topic,
        metadata_url=args.metadata_url,
        **{name: value for name, value in given.items() if value is not None},
    )


def _text(record: Any, what: str, data: bytes) -> str:
    from streamhouse_beam.errors import DecodeError

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"not UTF-8 ({exc.reason} at byte {exc.start}); use --format base64",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            raw=data,
            part=what,
        ) from None


def _json_value(record: Any) -> Any:
    from streamhouse_beam.errors import DecodeError

    text = _text(record, "value", record.value)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "use --format text or base64",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            raw=record.value,
        ) from None


def to_json_line(record: Any, fmt: str = "base64") -> str:
    """The JSON line of one record, key and value written as ``fmt`` says (see :data:`FORMATS`).

    Raises:
        DecodeError: ``text``/``json`` and the key or value is not UTF-8 (or the value not JSON).
    """
    key = record.key
    if fmt == "base64":
        key_out = None if key is None else base64.b64encode(key).decode("ascii")
        value: Any = base64.b64encode(record.value).decode("ascii")
    elif fmt in ("text", "json"):
        key_out = None if key is None else _text(record, "key", key)
        value = _text(record, "value", record.value) if fmt == "text" else _json_value(record)
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return json.dumps(
        {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": key_out,
            "value": value,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


class _LaunchView:
    """One partition as the metadata shows it at launch, to plan a bounded read's size."""

    def __init__(self, meta: Any, topic: str, info: Any) -> None:
        self._meta = meta
        self._topic = topic
        self._info = info

    def earliest_offset(self) -> int:
        return int(self._info.earliest_offset)

    def readable_end(self) -> int:
        return int(self._info.high_watermark)

    def offset_for_timestamp(self, timestamp_ms: int) -> int:
        # Never asked: a timestamp's offset is in the segments' records, so a read with a
        # timestamp position is not planned (its size stays unknown).
        raise LookupError(f"timestamp {timestamp_ms} is not planned at launch")

    def committed_offset(self, group_id: str) -> int | None:
        committed = self._meta.committed_offset(group_id, self._topic, self._info.partition)
        return None if committed is None else int(committed)


def _check_before_running(args: argparse.Namespace, read: Any, in_process: bool) -> int | None:
    """Check what can be checked before the pipeline starts; return the records it will read.

    The metadata store opens and every topic exists (a missing one names the topics that do);
    on the in-process runner, whose workers are this process, the storage root exists too.

    Returns:
        The number of records a bounded read will emit, planned from the metadata (capped by
        ``--max-records``), or ``None`` when it cannot be known in advance (timestamps).
    """
    from streamhouse_beam.metadata import open_metadata
    from streamhouse_beam.records import TopicPartition

    start, stop = read.start, read.stop
    with open_metadata(args.metadata_url, args.organization) as meta:
        # A topic that does not exist raises here, naming the topics that do.
        infos = {topic: meta.partitions(topic) for topic in args.topic}
        if in_process and args.storage_url is not None:
            from streamhouse_beam.storage import open_store

            with open_store(args.storage_url) as store:
                store.check_root()
        if stop is None or "timestamp" in (start.kind, stop.kind):
            return args.max_records  # type: ignore[no-any-return]
        total = 0
        for topic, partitions in infos.items():
            for info in partitions:
                tp = TopicPartition(topic, info.partition)
                view = _LaunchView(meta, topic, info)
                first = start.resolve(tp, view)
                last = stop.resolve(tp, view, first).offset
                if last is None:
                    return args.max_records  # type: ignore[no-any-return]
                total += last - first
        if args.max_records is not None:
            total = min(total, args.max_records)
        return total


def _mode_for(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def _output_file(path: str, tailing: bool) -> Iterator[str]:
    """The path the in-process sink writes: ``-`` as is, else a temporary file beside ``path``.

    The temporary file replaces ``path`` when the block ends normally (and when a tailing read,
    which runs until interrupted, is interrupted); on any failure it is removed, so an existing
    output is never truncated by a failed read and no empty file is left behind.
    """
    if path == "-":
        yield path
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        # mkstemp makes the file private; give the output the mode a plain open() would have
        # given it (or the mode of the file it replaces).
        os.chmod(tmp, _mode_for(path))
        yield tmp
    except KeyboardInterrupt:
        if tailing:
            os.replace(tmp, path)
        raise
    else:
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


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

    from streamhouse_beam.beam._runner_checks import is_flink

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


def _beam_args(extra: list[str], *, tailing: bool) -> list[str]:
    """The pipeline options: ``extra`` with the default runner, and the cached Prism for Prism.

    A tailing read runs on Prism when ``make runners`` has built it: Prism waits out each
    partition's poll interval itself and runs partitions side by side. Otherwise, and for
    bounded reads (which start at once in this process), the default is FnApiRunner.

    Raises:
        RunnerNotInstalledError: ``--runner=PrismRunner`` without ``--prism_location`` and
            no Prism in the runner cache.
    """
    from streamhouse_beam.beam._local_runner import local_pipeline_args, prism_available

    default = "PrismRunner" if tailing and prism_available() else "FnApiRunner"
    return local_pipeline_args(extra, default_runner=default)


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import (
        PipelineOptions,
        PortableOptions,
        StandardOptions,
    )

    from streamhouse_beam.beam._local_runner import is_prism

    options = PipelineOptions(_beam_args(extra, tailing=args.stop is None))
    runner_name = options.view_as(StandardOptions).runner
    fn_api = runner_name in ("FnApiRunner", "DirectRunner")
    # Prism runs the DoFns in this process (LOOPBACK, its default environment), so the
    # in-process sink works there too; other runners' workers write with WriteToText.
    in_process = fn_api or (
        is_prism(runner_name)
        and (options.view_as(PortableOptions).environment_type or "LOOPBACK").upper() == "LOOPBACK"
    )
    if not in_process and args.output == "-":
        raise ValueError(
            f"--output - (standard output) needs the in-process runner; --runner {runner_name} "
            "writes a file: give --output PATH"
        )
    read = build_read(args)
    stop = read.stop
    total = _check_before_running(args, read, in_process)
    if fn_api:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    else:
        pipeline = beam.Pipeline(options=options)
        if not in_process:
            _check_single_file_write(pipeline, stop, runner_name)
    if stop is None and args.max_records is None and not args.quiet:
        print(
            f"streamhouse-beam read: no --stop or --max-records: tailing on {runner_name} "
            "until interrupted",
            file=sys.stderr,
        )
    from streamhouse_beam.cli._jsonl import AppendJsonLines, Progress

    fmt = args.format
    lines = pipeline | "Read" >> read | "ToJson" >> beam.Map(to_json_line, fmt)
    tailing = stop is None and args.max_records is None
    with _output_file(args.output, tailing) if in_process else contextlib.nullcontext() as sink:
        if sink is not None:
            lines | "Write" >> beam.ParDo(AppendJsonLines(sink))
        else:
            lines | "Write" >> beam.io.WriteToText(
                args.output, shard_name_template="", num_shards=1
            )
        Progress.reset(args.quiet, total)
        try:
            result = pipeline.run()
            result.wait_until_finish()
        finally:
            Progress.finish()
    counters = _counters(result)
    if not args.quiet:
        where = "standard output" if args.output == "-" else args.output
        print(
            f"streamhouse-beam read: done, {counters.get('records_read', 0)} records -> {where}",
            file=sys.stderr,
        )
    if args.metrics_out:
        with open(args.metrics_out, "w", encoding="utf-8") as out:
            json.dump(counters, out, indent=2, sort_keys=True)
            out.write("\n")
    return 0
