"""ReadFromStreamHouse on Beam's Prism runner, built from the Go module proxy by fetch-runners.

Prism splits splittable DoFns on its own initiative, so these tests exercise the restriction
splitting logic in a way FnApiRunner never does.
"""

from __future__ import annotations

import logging
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _runners_support import (
    Topic,
    ensure_runners,
    run_bounded_read,
    run_cli_read,
    run_streaming_read,
    run_toy_sdf,
    wait_for_commits,
)

from streamhouse_beam.testing import runners

pytestmark = [pytest.mark.slow, pytest.mark.runner]


@pytest.fixture(scope="module", autouse=True)
def _runners_fetched() -> None:
    ensure_runners()


def test_prism_runs_a_toy_splittable_dofn() -> None:
    run_toy_sdf([3, 5, 7, 1000], runners.prism_pipeline_args())


def test_prism_reads_a_bounded_multi_partition_topic_exactly(tmp_path: pathlib.Path) -> None:
    # Large partitions with tiny batches leave Prism room to split ranges mid-read.
    topic = Topic(tmp_path, partitions=3, records_per_partition=200, segment_max_records=25)
    run_bounded_read(topic, runners.prism_pipeline_args(), max_poll_records=7)


def test_prism_streaming_read_picks_up_appended_records_until_max_records(
    tmp_path: pathlib.Path,
) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    run_streaming_read(topic, runners.prism_pipeline_args(), tmp_path / "out.jsonl")


def test_prism_finalized_bundles_commit_offsets_through_the_group(tmp_path: pathlib.Path) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    group = "prism-group"
    run_bounded_read(topic, runners.prism_pipeline_args(), commit_offsets_group=group)
    assert topic.committed(group) == topic.end_offsets()


def test_cli_read_runs_on_prism(tmp_path: pathlib.Path) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=15)
    counters = run_cli_read(
        topic,
        tmp_path,
        ["--runner", "PrismRunner", f"--prism_location={runners.prism_binary()}"],
    )
    assert counters["records_read"] == len(topic.expected)


def test_cli_read_on_a_plain_prism_runner_finds_the_cached_binary(tmp_path: pathlib.Path) -> None:
    """No --prism_location: Beam alone would download Prism (and fail offline)."""
    topic = Topic(tmp_path, partitions=2, records_per_partition=15)
    counters = run_cli_read(topic, tmp_path, ["--runner=PrismRunner"])
    assert counters["records_read"] == len(topic.expected)


def test_prism_splits_a_partition_range_while_its_read_stalls_and_output_stays_exact(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prism asks for a dynamic split when a bundle stops making progress.

    The DoFn reads a batch before claiming it, so a slow read is exactly when a split can
    take part of the range. LOOPBACK runs the SDK harness in this process, so the first read
    of partition 0 is slowed here and the tracker's answers are recorded.
    """
    from streamhouse_beam import partition_reader
    from streamhouse_beam.beam.restriction import PartitionRestrictionTracker

    topic = Topic(tmp_path, partitions=2, records_per_partition=400, segment_max_records=50)
    splits: list[tuple[float, Any]] = []
    original_split = PartitionRestrictionTracker.try_split
    original_read = partition_reader.PartitionReader.read
    stalled = threading.Event()

    def recording_split(self: Any, fraction: float) -> Any:
        result = original_split(self, fraction)
        splits.append((fraction, result))
        return result

    def stalling_read(self: Any, start: int, stop: int | None, max_records: int) -> Any:
        if start == 0 and not stalled.is_set():
            stalled.set()
            time.sleep(8)  # long enough for Prism to see a bundle without progress
        return original_read(self, start, stop, max_records)

    monkeypatch.setattr(PartitionRestrictionTracker, "try_split", recording_split)
    monkeypatch.setattr(partition_reader.PartitionReader, "read", stalling_read)
    run_bounded_read(topic, runners.prism_pipeline_args(), max_poll_records=400)
    dynamic = [(f, r) for f, r in splits if f > 0 and r is not None]
    assert dynamic, f"Prism made no successful dynamic split (split calls: {splits})"


class _ErrorLog(logging.Handler):
    """Keeps every ERROR record logged in this process (LOOPBACK: the SDK harness's too)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [
            f"{r.name}: {r.getMessage()}"[:500] for r in self.records if r.levelno >= logging.ERROR
        ]


@pytest.fixture()
def error_log() -> Iterator[_ErrorLog]:
    handler = _ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.mark.parametrize("group", [None, "logs-group"])
def test_prism_bounded_read_logs_no_errors(
    tmp_path: pathlib.Path, error_log: _ErrorLog, group: str | None
) -> None:
    """No "Bundle is not in a finalizable state": only a committing read asks for finalization."""
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    run_bounded_read(topic, runners.prism_pipeline_args(), commit_offsets_group=group)
    if group is not None:
        assert topic.committed(group) == topic.end_offsets()
    assert error_log.lines() == []


@pytest.mark.parametrize("group", [None, "logs-group"])
def test_prism_tailing_read_logs_no_errors_while_it_idles(
    tmp_path: pathlib.Path, error_log: _ErrorLog, group: str | None
) -> None:
    """Seconds of idle polls (each a bundle on Prism), then appended records, and no ERROR."""
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    run_streaming_read(
        topic,
        runners.prism_pipeline_args(),
        tmp_path / "out.jsonl",
        while_running=lambda: time.sleep(5),
        commit_offsets_group=group,
    )
    if group is not None:
        wait_for_commits(topic, group, topic.end_offsets(), timeout=30)
    assert error_log.lines() == []
