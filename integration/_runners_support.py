"""Shared pieces of the real-runner tests: fetching the runners, a toy SDF, output collection.

The toy splittable DoFn separates runner infrastructure problems from connector problems: if
it fails on a runner, the runner set-up is broken, not ``ReadFromStreamHouse``.

:class:`CollectToFile` hands elements back to the test through a local file that the test can
also watch while a streaming pipeline runs. It appends with one ``write`` per line on an
``O_APPEND`` descriptor, so it works from the pytest process (``LOOPBACK``) and from several
SDK worker processes on the same machine (``EXTERNAL``, see ``test_flink_cluster.py``) alike.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider

from streamhouse_beam.testing import runners

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
FETCH_RUNNERS = REPO_ROOT / ".ci" / "fetch-runners"

_fetch_lock = threading.Lock()
_fetched = False


def ensure_runners() -> None:
    """Run ``.ci/fetch-runners`` once per session when a runner is missing from the cache.

    ``make test`` has already run it; this keeps ``pytest integration/...`` working on its own.
    A failure to fetch fails the test with the script's output, never skips it.
    """
    global _fetched
    with _fetch_lock:
        if _fetched:
            return
        try:
            runners.flink_job_server()
            runners.prism_binary()
        except runners.RunnerNotInstalledError:
            proc = subprocess.run(
                ["bash", str(FETCH_RUNNERS)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                pytest.fail(
                    f".ci/fetch-runners failed with exit code {proc.returncode}:\n"
                    f"{proc.stdout}\n{proc.stderr}"
                )
        _fetched = True


class _CountingProvider(RestrictionProvider):  # type: ignore[misc]
    def initial_restriction(self, element: int) -> OffsetRange:
        return OffsetRange(0, element)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: int, restriction: OffsetRange) -> int:
        return int(restriction.size())


class CountUpTo(beam.DoFn):  # type: ignore[misc]
    """For an element ``n``, emits ``(n, 0) ... (n, n - 1)``, one claimed offset each.

    Args:
        defer_every: self-checkpoint (``defer_remainder``) after this many claims in one
            ``process`` call; ``None`` claims the whole restriction in one call.
    """

    def __init__(self, defer_every: int | None = None) -> None:
        super().__init__()
        self.defer_every = defer_every

    def process(
        self,
        element: int,
        tracker: Any = beam.DoFn.RestrictionParam(_CountingProvider()),
    ) -> Iterator[tuple[int, int]]:
        position = tracker.current_restriction().start
        claimed = 0
        while tracker.try_claim(position):
            yield (element, position)
            position += 1
            claimed += 1
            if claimed == self.defer_every:
                tracker.defer_remainder()
                return


def toy_sdf_expected(sizes: list[int]) -> list[tuple[int, int]]:
    """What :class:`CountUpTo` emits for ``sizes``."""
    return [(n, i) for n in sizes for i in range(n)]


def run_toy_sdf(sizes: list[int], pipeline_args: list[str]) -> None:
    """Run :class:`CountUpTo` over ``sizes`` on a runner; assert every offset comes once."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    with beam.Pipeline(options=PipelineOptions(pipeline_args)) as p:
        out = p | beam.Create(sizes) | beam.ParDo(CountUpTo())
        assert_that(out, equal_to(toy_sdf_expected(sizes)))


class CollectToFile(beam.DoFn):  # type: ignore[misc]
    """Appends each element as one JSON line to a local file, from any process on this machine.

    Each line is a single ``write`` on an ``O_APPEND`` descriptor: the kernel places every
    write at the end of the file atomically, so lines from concurrent threads or worker
    processes never interleave or overwrite each other.

    Args:
        path: the file; the test reads it with :func:`read_collected`.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, element: Any) -> Iterator[Any]:
        line = (json.dumps(_jsonable(element), sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
        finally:
            os.close(fd)
        if written != len(line):
            raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
        yield element


def _jsonable(element: Any) -> Any:
    if hasattr(element, "_asdict"):
        return {k: _jsonable(v) for k, v in element._asdict().items()}
    if isinstance(element, bytes):
        return element.hex()
    if isinstance(element, (tuple, list)):
        return [_jsonable(v) for v in element]
    if isinstance(element, dict):
        return {str(k): _jsonable(v) for k, v in element.items()}
    return element


def read_collected(path: pathlib.Path) -> list[Any]:
    """The JSON lines :class:`CollectToFile` wrote (empty when nothing was written yet)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    # A line being appended right now may lack its newline yet: it is read next time.
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line]


class Topic:
    """A StreamHouse topic in a SQLite metadata store and a local segment directory.

    Args:
        root: directory for ``metadata.db`` and ``segments/``.
        name: the topic.
        partitions: its partition count.
        records_per_partition: records appended (and flushed) to each partition at once.
        segment_max_records: small, so every partition spans several segments.
    """

    def __init__(
        self,
        root: pathlib.Path,
        *,
        name: str = "orders",
        partitions: int = 3,
        records_per_partition: int = 30,
        segment_max_records: int = 7,
    ) -> None:
        from streamhouse_beam.testing.local import LocalStreamHouse

        self.name = name
        self.partitions = partitions
        self.metadata_url = f"sqlite:///{root}/metadata.db"
        self.storage_url = f"file://{root}/segments"
        self.house = LocalStreamHouse(
            self.metadata_url, self.storage_url, segment_max_records=segment_max_records
        )
        self.house.create_schema()
        self.house.create_topic(name, partitions)
        self.organization_id = self.house.organization_id
        self.expected: list[tuple[str, int, int, str | None, str, int]] = []
        self.append(records_per_partition)

    def append(self, per_partition: int) -> None:
        """Append ``per_partition`` keyed records to every partition and make them readable."""
        for partition in range(self.partitions):
            start = self.house.next_offset(self.name, partition)
            records = [
                (f"k{offset % 4}", f"{self.name}/{partition}/{offset}")
                for offset in range(start, start + per_partition)
            ]
            offsets = self.house.append(self.name, partition, records, flush=True)
            for offset, (key, value) in zip(offsets, records, strict=True):
                timestamp = self.house.clock_start_ms + offset * self.house.clock_step_ms
                self.expected.append((self.name, partition, offset, key, value, timestamp))

    def end_offsets(self) -> dict[int, int]:
        """The next offset to be written in each partition."""
        return {p: self.house.next_offset(self.name, p) for p in range(self.partitions)}

    def committed(self, group: str) -> dict[int, int | None]:
        """The offsets committed for ``group``, per partition."""
        store = self.house.metadata()
        return {p: store.committed_offset(group, self.name, p) for p in range(self.partitions)}

    def read_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of ``ReadFromStreamHouse`` for this topic."""
        kwargs: dict[str, Any] = {
            "metadata_url": self.metadata_url,
            "storage_url": self.storage_url,
            "organization_id": self.organization_id,
            "max_poll_records": 4,
            "poll_interval": 0.2,
        }
        kwargs.update(overrides)
        return kwargs


def record_tuple(record: Any) -> tuple[str, int, int, str | None, str, int]:
    """A StreamHouseRecord as the tuple :attr:`Topic.expected` holds."""
    key = None if record.key is None else record.key.decode()
    return (
        record.topic,
        record.partition,
        record.offset,
        key,
        record.value.decode(),
        record.timestamp,
    )


class EventTimeMatchesRecord(beam.DoFn):  # type: ignore[misc]
    """Emits ``record_tuple(record)`` when the element's event time is the record's timestamp."""

    def process(self, record: Any, ts: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        if ts.micros != record.timestamp * 1000:
            raise AssertionError(
                f"event time {ts} is not the record timestamp {record.timestamp} ms of "
                f"{record.topic}/{record.partition}@{record.offset}"
            )
        yield record_tuple(record)


def wait_for(predicate: Any, *, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``predicate()`` until true; fail the test naming ``what`` after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_for_collected(out: pathlib.Path, count: int, *, timeout: float, what: str) -> None:
    """Wait until ``out`` holds ``count`` :class:`CollectToFile` lines; ``what`` names them."""
    wait_for(
        lambda: len(read_collected(out)) >= count,
        timeout=timeout,
        what=f"{what} (got {len(read_collected(out))})",
    )


def wait_for_commits(topic: Topic, group: str, offsets: dict[int, int], timeout: float) -> None:
    """Wait until ``group`` has committed ``offsets`` (partition -> next offset) on ``topic``."""
    wait_for(
        lambda: topic.committed(group) == offsets,
        timeout=timeout,
        what=f"commits {offsets} (have {topic.committed(group)})",
    )


def _as_tuples(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in rows)


def run_bounded_read(topic: Topic, pipeline_args: list[str], **read_overrides: Any) -> None:
    """Read ``topic`` up to its latest offsets on a runner; assert the exact output."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from streamhouse_beam.beam import ReadFromStreamHouse
    from streamhouse_beam.positions import StopPosition

    kwargs = topic.read_kwargs(stop=StopPosition.latest(), **read_overrides)
    with beam.Pipeline(options=PipelineOptions(pipeline_args)) as p:
        out = p | ReadFromStreamHouse(topic.name, **kwargs) | beam.ParDo(EventTimeMatchesRecord())
        assert_that(out, equal_to(list(topic.expected)))


def run_streaming_read(
    topic: Topic,
    pipeline_args: list[str],
    out: pathlib.Path,
    *,
    append_per_partition: int = 5,
    while_running: Any = None,
    timeout: float = 180.0,
    **read_overrides: Any,
) -> None:
    """Tail ``topic`` on a runner, append records while it runs, and stop via ``max_records``.

    The pipeline's ``max_records`` is what the topic holds plus what is appended, so it can
    only finish by reading the appended records. ``while_running()``, when given, runs after
    the initial records were read and before the append (e.g. to wait for committed offsets).
    Asserts every record was emitted exactly once with its event time.
    """
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.runner import PipelineState

    from streamhouse_beam.beam import ReadFromStreamHouse

    initial = len(topic.expected)
    total = initial + append_per_partition * topic.partitions
    p = beam.Pipeline(options=PipelineOptions([*pipeline_args, "--streaming"]))
    _ = (
        p
        | ReadFromStreamHouse(topic.name, **topic.read_kwargs(max_records=total, **read_overrides))
        | beam.ParDo(EventTimeMatchesRecord())
        | beam.ParDo(CollectToFile(str(out)))
    )
    result = p.run()
    try:
        wait_for_collected(out, initial, timeout=timeout, what=f"the first {initial} records")
        if while_running is not None:
            while_running()
        topic.append(append_per_partition)
        result.wait_until_finish(duration=int(timeout * 1000))
    finally:
        if not PipelineState.is_terminal(result.state):
            result.cancel()
    assert result.state == PipelineState.DONE, f"pipeline ended in state {result.state}"
    got = _as_tuples(read_collected(out))
    assert len(got) == total, f"{len(got)} records emitted, {total} expected"
    assert got == sorted(topic.expected)


def run_cli_read(topic: Topic, tmp_path: pathlib.Path, beam_args: list[str]) -> dict[str, Any]:
    """Run ``streamhouse-beam read`` (the console script) with Beam options; check its output.

    Asserts the JSON lines equal the topic's records and returns the ``--metrics-out`` JSON.
    """
    import base64
    import sys

    output = tmp_path / "cli-out.jsonl"
    metrics = tmp_path / "cli-metrics.json"
    script = pathlib.Path(sys.executable).with_name("streamhouse-beam")
    proc = subprocess.run(
        [
            str(script),
            "read",
            "--metadata-url",
            topic.metadata_url,
            "--storage-url",
            topic.storage_url,
            "--organization",
            topic.organization_id,
            "--topic",
            topic.name,
            "--stop",
            "latest",
            "--output",
            str(output),
            "--metrics-out",
            str(metrics),
            *beam_args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, f"streamhouse-beam read failed:\n{proc.stderr[-4000:]}"
    got = []
    for line in output.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        key = None if doc["key"] is None else base64.b64decode(doc["key"]).decode()
        value = base64.b64decode(doc["value"]).decode()
        got.append((doc["topic"], doc["partition"], doc["offset"], key, value, doc["timestamp"]))
    assert sorted(got) == sorted(topic.expected)
    result: dict[str, Any] = json.loads(metrics.read_text(encoding="utf-8"))
    return result
