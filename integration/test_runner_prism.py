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

import apache_beam as beam
import pytest
from _runners_support import (
    CollectToFile,
    Topic,
    ensure_runners,
    read_collected,
    run_bounded_read,
    run_cli_read,
    run_streaming_read,
    run_toy_sdf,
    wait_for_commits,
)
from apache_beam.transforms.window import FixedWindows

from streamhouse_beam.testing import runners

pytestmark = [pytest.mark.slow, pytest.mark.runner]

#: How long a stalled read waits for Prism's dynamic split before it gives up (Prism asks
#: within seconds; the margin is for two loaded cores).
SPLIT_WAIT_SECONDS = 120


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


def _stalled_read_split_answers(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, **read_overrides: Any
) -> list[tuple[float, Any]]:
    """Run a bounded read on Prism whose first read stalls until Prism asks for a dynamic split.

    Prism asks for a dynamic split when a bundle stops making progress. The DoFn reads a batch
    before claiming it, so a slow read is exactly when a split can take part of the range.
    LOOPBACK runs the SDK harness in this process, so the first read of a partition is held
    here until the tracker has been asked for a split at a fraction above 0 (or
    SPLIT_WAIT_SECONDS pass); the output must be exact.

    Returns:
        Every ``(fraction, answer)`` of the tracker's ``try_split``.
    """
    from streamhouse_beam import partition_reader
    from streamhouse_beam.beam._restriction import PartitionRestrictionTracker

    topic = Topic(tmp_path, partitions=2, records_per_partition=400, segment_max_records=50)
    splits: list[tuple[float, Any]] = []
    original_split = PartitionRestrictionTracker.try_split
    original_read = partition_reader.PartitionReader.read
    stalled = threading.Event()
    split_asked = threading.Event()

    def recording_split(self: Any, fraction: float) -> Any:
        result = original_split(self, fraction)
        splits.append((fraction, result))
        if fraction > 0:
            split_asked.set()
        return result

    def stalling_read(self: Any, start: int, stop: int | None, *limits: Any) -> Any:
        if start == 0 and not stalled.is_set():
            stalled.set()
            # Hold the bundle without progress until Prism has asked for a split: no guess at
            # how long Prism takes to notice. Past the wait the read goes on.
            split_asked.wait(SPLIT_WAIT_SECONDS)
        return original_read(self, start, stop, *limits)

    monkeypatch.setattr(PartitionRestrictionTracker, "try_split", recording_split)
    monkeypatch.setattr(partition_reader.PartitionReader, "read", stalling_read)
    run_bounded_read(topic, runners.prism_pipeline_args(), max_poll_records=400, **read_overrides)
    assert stalled.is_set(), "the read never reached the stalled first read"
    assert split_asked.is_set(), (
        f"Prism asked for no dynamic split within {SPLIT_WAIT_SECONDS} s of a stalled read "
        f"(split calls: {splits})"
    )
    if "commit_offsets_group" in read_overrides:
        group = read_overrides["commit_offsets_group"]
        assert topic.committed(group) == topic.end_offsets()
    return splits


def test_prism_splits_a_partition_range_while_its_read_stalls_and_output_stays_exact(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    splits = _stalled_read_split_answers(tmp_path, monkeypatch)
    assert [(f, r) for f, r in splits if f > 0 and r is not None], splits


def test_prism_gets_no_dynamic_split_of_a_committing_read_and_it_commits_the_ends(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A split's second range would be read next to the first and could commit past offsets
    # the first has not read yet: a committing read takes checkpoints only.
    splits = _stalled_read_split_answers(tmp_path, monkeypatch, commit_offsets_group="stalled")
    assert [(f, r) for f, r in splits if f > 0 and r is not None] == []


# ------------------------------------------------------------------ event-time policies
#
# Prism drops records behind the watermark from windows without allowed lateness, so these
# show what each policy keeps. The watermark of a partition only moves between bundles: with
# one record per process() call (max_poll_records=1) every record meets the watermark of all
# those before it.

WINDOW_SECONDS = 10


class _WindowCounts(beam.DoFn):  # type: ignore[misc]
    """``(key, count)`` in a window -> ``[window start in seconds after base, count]``."""

    def __init__(self, base_ms: int) -> None:
        self.base_ms = base_ms

    def process(self, element: Any, window: Any = beam.DoFn.WindowParam) -> Iterator[Any]:
        yield [window.start.micros // 1000 - self.base_ms, element[1]]


def _count_windows(records: Any, base_ms: int, window_seconds: int = WINDOW_SECONDS) -> Any:
    return (
        records
        | "One" >> beam.Map(lambda _: ("n", 1))
        | "Window" >> beam.WindowInto(FixedWindows(window_seconds))
        | "Count" >> beam.CombinePerKey(sum)
        | "Start" >> beam.ParDo(_WindowCounts(base_ms))
    )


def _house(tmp: pathlib.Path) -> Any:
    from streamhouse_beam.testing.local import LocalStreamHouse

    house = LocalStreamHouse(
        f"sqlite:///{tmp}/metadata.db", f"file://{tmp}/segments", segment_max_records=4
    )
    house.create_schema()
    house.create_topic("t", 1)
    return house


def _prism_bounded_counts(tmp: pathlib.Path, policy: Any) -> dict[int, int]:
    from apache_beam.options.pipeline_options import PipelineOptions

    from streamhouse_beam import ReadFromStreamHouse, StopPosition
    from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS as base

    out = tmp / f"counts-{policy.kind}-{policy.max_out_of_orderness}.jsonl"
    with beam.Pipeline(options=PipelineOptions(runners.prism_pipeline_args())) as p:
        records = p | ReadFromStreamHouse(
            "t",
            metadata_url=f"sqlite:///{tmp}/metadata.db",
            storage_url=f"file://{tmp}/segments",
            stop=StopPosition.latest(),
            max_poll_records=1,
            event_time=policy,
        )
        _count_windows(records, base) | beam.ParDo(CollectToFile(str(out)))
    counts = {start // 1000: n for start, n in read_collected(out)}
    assert len(counts) == len(read_collected(out)), "a window fired twice"
    return counts


def test_prism_bounded_read_keeps_records_within_the_out_of_orderness_bound(
    tmp_path: pathlib.Path,
) -> None:
    from streamhouse_beam import EventTimePolicy
    from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS as base

    house = _house(tmp_path)
    seconds = [0, 1, 40, 35, 41, 2]  # 35: 5 s behind 40; 2: 39 s behind 41
    house.append("t", 0, [f"v{s}" for s in seconds], timestamps=[base + 1000 * s for s in seconds])
    house.flush()
    # Record time: both older records are late and dropped.
    assert _prism_bounded_counts(tmp_path, EventTimePolicy.record_time()) == {0: 2, 40: 2}
    # A 10 s bound keeps 35 and still drops 2, which is beyond it.
    assert _prism_bounded_counts(tmp_path, EventTimePolicy.bounded_out_of_orderness(10)) == {
        0: 2,
        30: 1,
        40: 2,
    }


def _tail_with_windows(
    tmp: pathlib.Path,
    policy: Any,
    append: Any,
    phases: list[list[int]],
    base_ms: int,
    ready: list[Any],
    *,
    window_seconds: int = WINDOW_SECONDS,
    **read: Any,
) -> tuple[list[Any], list[list[Any]]]:
    """Tail topic ``t`` on Prism counting FixedWindows; ``append(seconds)`` adds a phase's records.

    The first phase is there before the pipeline starts. Before each later phase is appended,
    the read must have emitted every record so far and ``ready[i](windows)`` must hold for the
    windows fired so far; a few quiet seconds later those windows are recorded (anything that
    fires wrongly meanwhile shows). Returns the final windows and those recorded per phase.
    """
    from _runners_support import wait_for
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.runner import PipelineState

    from streamhouse_beam import ReadFromStreamHouse

    out, seen = tmp / "windows.jsonl", tmp / "offsets.jsonl"
    total = sum(len(phase) for phase in phases)
    append(phases[0])
    p = beam.Pipeline(options=PipelineOptions([*runners.prism_pipeline_args(), "--streaming"]))
    records = p | ReadFromStreamHouse(
        "t",
        metadata_url=f"sqlite:///{tmp}/metadata.db",
        storage_url=f"file://{tmp}/segments",
        max_records=total,
        poll_interval=0.2,
        event_time=policy,
        **read,
    )
    _ = (
        records
        | "Offsets" >> beam.Map(lambda r: r.offset)
        | "Seen" >> beam.ParDo(CollectToFile(str(seen)))
    )
    _ = _count_windows(records, base_ms, window_seconds) | beam.ParDo(CollectToFile(str(out)))
    result = p.run()
    fired: list[list[Any]] = []
    try:
        emitted = 0
        for i, phase in enumerate(phases[1:]):
            emitted += len(phases[i])
            wait_for(
                lambda n=emitted: len(read_collected(seen)) >= n,
                timeout=120,
                what=f"{emitted} records read",
            )
            wait_for(
                lambda check=ready[i]: check(read_collected(out)),
                timeout=60,
                what=f"the windows before phase {i + 2} (have {read_collected(out)})",
            )
            time.sleep(3)
            fired.append(read_collected(out))
            append(phase)
        result.wait_until_finish(duration=180_000)
    finally:
        if not PipelineState.is_terminal(result.state):
            result.cancel()
    assert result.state == PipelineState.DONE, f"pipeline ended in state {result.state}"
    return read_collected(out), fired


def _in_seconds(windows: list[Any]) -> dict[int, int]:
    counts = {start // 1000: n for start, n in windows}
    assert len(counts) == len(windows), f"a window fired twice: {windows}"
    return counts


#: Seconds after the base of each phase's records. Phase 1 is out of order by at most 4 s;
#: phase 2's 30 s record moves a 5 s-bounded watermark to 25 s, closing [0, 10) and [10, 20)
#: while 26 (4 s behind 30) stays on time; phase 3's 4 is 26 s behind, so it is dropped, and
#: 50 closes [20, 30) and [30, 40) while the read still tails.
PHASES = [[0, 1, 12, 8, 13, 9], [30, 26], [4, 50]]


@pytest.mark.parametrize("source", ["record", "value"])
def test_prism_tailing_read_fires_windows_and_keeps_records_within_the_bound(
    tmp_path: pathlib.Path, source: str
) -> None:
    """Bounded out-of-orderness of record times, and a timestamp function over the values.

    The base is the wall clock (so the idle advance, an hour behind now here, never passes a
    record) rounded down to a window.
    """
    import json

    from streamhouse_beam import EventTimePolicy

    house = _house(tmp_path)
    base = int(time.time() // WINDOW_SECONDS * WINDOW_SECONDS * 1000) - 60_000

    def append(seconds: list[int]) -> None:
        if source == "record":
            house.append(
                "t", 0, [f"v{s}" for s in seconds], timestamps=[base + 1000 * s for s in seconds]
            )
        else:  # record times in order (server time), event times in the values
            house.append("t", 0, [json.dumps({"at": base + 1000 * s}) for s in seconds])
        house.flush()

    if source == "record":
        policy, read = EventTimePolicy.bounded_out_of_orderness(5), {}
    else:
        policy = EventTimePolicy.from_record(lambda r: r.value["at"], 5)
        read = {"value_decoder": "json"}
    final, fired = _tail_with_windows(
        tmp_path,
        policy,
        append,
        PHASES,
        base,
        [lambda windows: True, lambda windows: len(windows) >= 2],
        max_delay_seconds=3600,
        **read,
    )
    # Nothing could close before phase 2: the watermark was 13 - 5 = 8 s.
    assert _in_seconds(fired[0]) == {}
    # Phase 2 closed [0, 10) and [10, 20) while tailing, each with its out-of-order records.
    assert _in_seconds(fired[1]) == {0: 4, 10: 2}
    # 4 (26 s late) was dropped; 26 (within the bound) was counted; the rest fired at the end.
    assert _in_seconds(final) == {0: 4, 10: 2, 20: 1, 30: 1, 50: 1}


def test_prism_tailing_read_in_processing_time_drops_nothing(tmp_path: pathlib.Path) -> None:
    """Record times in reverse, hours old: processing time windows them by the read's clock."""
    from streamhouse_beam import EventTimePolicy
    from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS

    house = _house(tmp_path)
    counter = iter(range(1000))

    def append(seconds: list[int]) -> None:
        n = len(seconds)
        house.append(
            "t",
            0,
            [f"v{next(counter)}" for _ in range(n)],
            timestamps=[DEFAULT_CLOCK_START_MS + 1000 * (n - i) for i in range(n)],
        )
        house.flush()

    started = time.time()
    final, fired = _tail_with_windows(
        tmp_path,
        EventTimePolicy.processing_time(),
        append,
        [[0] * 5, [0] * 4],
        0,
        [lambda windows: sum(n for _, n in windows) >= 5],
        window_seconds=2,
    )
    ended = time.time()
    # The watermark is the clock: the first records' window closed while the read tailed.
    assert sum(n for _, n in fired[0]) == 5
    assert sum(n for _, n in final) == 9
    for start_ms, _ in final:
        assert started - 2 <= start_ms / 1000 <= ended


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
        # Prism may report the job done while it still finalizes the last bundles (a loaded
        # machine showed 8 of 12 committed at that moment): the commits follow shortly.
        wait_for_commits(topic, group, topic.end_offsets(), timeout=30)
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
