"""ReadFromStreamHouse on Beam's FlinkRunner with an embedded Flink (``--flink_master=[local]``).

The job server comes from ``.ci/fetch-runners`` (``flink-job-server.env`` in the cache records
the Flink/Beam pairing); the SDK harness is this process (LOOPBACK). Each pipeline starts its
own job server JVM, so each test takes 10-20 s.
"""

from __future__ import annotations

import pathlib
import socket
import subprocess
from collections.abc import Iterator

import apache_beam as beam
import pytest
from _runners_support import (
    CollectToFile,
    CountUpTo,
    EventTimeMatchesRecord,
    Topic,
    ensure_runners,
    read_collected,
    run_bounded_read,
    run_cli_read,
    run_streaming_read,
    run_toy_sdf,
    toy_sdf_expected,
    wait_for,
    wait_for_collected,
    wait_for_commits,
)
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import window

from streamhouse_beam import StopPosition, UnsupportedOnRunnerError
from streamhouse_beam.beam import ReadFromStreamHouse
from streamhouse_beam.testing import runners

pytestmark = [pytest.mark.slow, pytest.mark.runner]


@pytest.fixture(scope="module", autouse=True)
def _runners_fetched() -> None:
    ensure_runners()


def test_flink_runs_a_toy_splittable_dofn() -> None:
    run_toy_sdf([3, 5, 7], runners.flink_pipeline_args())


def test_flink_reads_a_bounded_multi_partition_topic_exactly(tmp_path: pathlib.Path) -> None:
    topic = Topic(tmp_path, partitions=3, records_per_partition=30)
    run_bounded_read(topic, runners.flink_pipeline_args(parallelism=2))


def test_flink_streaming_read_picks_up_appended_records_until_max_records(
    tmp_path: pathlib.Path,
) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    run_streaming_read(topic, runners.flink_pipeline_args(), tmp_path / "out.jsonl")


def test_flink_runs_a_self_checkpointing_toy_sdf_with_flink_checkpoints(
    tmp_path: pathlib.Path,
) -> None:
    # The runner-side half of the checkpointing test: Flink checkpoints plus SDF residuals.
    out = tmp_path / "out.jsonl"
    sizes = [10, 20]
    options = PipelineOptions(
        runners.flink_pipeline_args(streaming=True, checkpointing_interval_ms=500)
    )
    p = beam.Pipeline(options=options)
    _ = (
        p
        | beam.Create(sizes, reshuffle=False)
        | beam.ParDo(CountUpTo(defer_every=2))
        | beam.ParDo(CollectToFile(str(out)))
    )
    result = p.run()
    try:
        wait_for_collected(out, sum(sizes), timeout=120, what=f"{sum(sizes)} toy elements")
    finally:
        result.cancel()
    assert sorted(tuple(e) for e in read_collected(out)) == toy_sdf_expected(sizes)


def test_flink_resumes_a_self_checkpointed_sdf_without_waiting_out_the_bundle_time(
    tmp_path: pathlib.Path,
) -> None:
    # The runner hands a resumed residual to the SDK only when its bundle finishes. With a
    # bundle time of 10 minutes (and no checkpoint before then) only the patched runner, which
    # finishes a bundle once a residual's timer has fired into it (.ci/patches 0004), gets
    # past the first residual of each element in the test's time; the elements' own bundles
    # end after one element (max_bundle_size 1).
    out = tmp_path / "out.jsonl"
    sizes = [6, 8]
    ten_minutes = 600_000
    options = PipelineOptions(
        runners.flink_pipeline_args(
            streaming=True,
            checkpointing_interval_ms=ten_minutes,
            extra=[f"--max_bundle_time_mills={ten_minutes}", "--max_bundle_size=1"],
        )
    )
    p = beam.Pipeline(options=options)
    _ = (
        p
        | beam.Create(sizes, reshuffle=False)
        | beam.ParDo(CountUpTo(defer_every=2))
        | beam.ParDo(CollectToFile(str(out)))
    )
    result = p.run()
    try:
        wait_for_collected(out, sum(sizes), timeout=120, what=f"{sum(sizes)} toy elements")
    finally:
        result.cancel()
    assert sorted(tuple(e) for e in read_collected(out)) == toy_sdf_expected(sizes)


def test_flink_checkpoints_commit_consumed_offsets_through_the_group(
    tmp_path: pathlib.Path,
) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    group = "flink-checkpointed"
    assert topic.committed(group) == {0: None, 1: None}
    out = tmp_path / "out.jsonl"
    total = len(topic.expected) + 2 * 6
    p = beam.Pipeline(
        options=PipelineOptions(
            runners.flink_pipeline_args(streaming=True, checkpointing_interval_ms=500)
        )
    )
    _ = (
        p
        | ReadFromStreamHouse(
            topic.name, **topic.read_kwargs(commit_offsets_group=group, max_records=total)
        )
        | beam.ParDo(EventTimeMatchesRecord())
        | beam.ParDo(CollectToFile(str(out)))
    )
    result = p.run()
    try:
        # Flink finalizes a bundle when the checkpoint holding it completes: only then does
        # the read commit the next offset to read, which for a caught-up reader is the end.
        wait_for_collected(out, 24, timeout=120, what="the first 24 records")
        wait_for_commits(topic, group, {0: 12, 1: 12}, timeout=60)
        topic.append(6)
        wait_for_collected(out, total, timeout=60, what=f"{total} records")
        wait_for_commits(topic, group, {0: 18, 1: 18}, timeout=60)
    finally:
        # With checkpointing on, Beam keeps Flink's sources alive: the job never ends alone.
        result.cancel()
    assert sorted(tuple(e) for e in read_collected(out)) == sorted(topic.expected)


def test_cli_read_runs_on_flink(tmp_path: pathlib.Path) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=15)
    server = runners.flink_job_server()
    counters = run_cli_read(
        topic,
        tmp_path,
        [
            "--runner",
            "FlinkRunner",
            "--flink_master=[local]",
            "--environment_type=LOOPBACK",
            f"--flink_job_server_jar={server.jar}",
            f"--flink_version={server.flink_version}",
        ],
    )
    assert counters["records_read"] == len(topic.expected)


def test_flink_batch_refuses_offset_commits_before_the_job_runs(tmp_path: pathlib.Path) -> None:
    # Run, Flink would fail the job with "Portable Flink runner doesn't support bundle
    # finalization in batch mode"; the read refuses it when applied, so no job server starts.
    topic = Topic(tmp_path, partitions=2, records_per_partition=6)
    p = beam.Pipeline(options=PipelineOptions(runners.flink_pipeline_args()))
    with pytest.raises(UnsupportedOnRunnerError, match="--streaming --checkpointing_interval"):
        _ = p | ReadFromStreamHouse(
            topic.name, **topic.read_kwargs(stop=StopPosition.latest(), commit_offsets_group="g")
        )
    assert topic.committed("g") == {0: None, 1: None}


@pytest.fixture()
def flink_job_endpoint(tmp_path: pathlib.Path) -> Iterator[str]:
    """A Flink job server (the cached jar, embedded Flink) for PortableRunner, stopped by PID."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path / "job-server.log").open("wb")
    server = subprocess.Popen(
        [
            "java",
            runners.FLINK_JAVA17_OPENS,
            "-jar",
            str(runners.flink_job_server().jar),
            "--flink-master=[local]",
            f"--job-port={port}",
            "--artifact-port=0",
            "--expansion-port=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def accepting() -> bool:
            if server.poll() is not None:
                pytest.fail(f"the Flink job server exited with {server.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), 1):
                    return True
            except OSError:
                return False

        wait_for(accepting, timeout=120, what="the Flink job server's port")
        yield f"localhost:{port}"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_portable_runner_on_a_flink_job_server_refuses_batch_offset_commits(
    tmp_path: pathlib.Path, flink_job_endpoint: str
) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=6)
    read = topic.read_kwargs(stop=StopPosition.latest(), commit_offsets_group="g")
    args = runners.portable_pipeline_args(flink_job_endpoint)
    p = beam.Pipeline(options=PipelineOptions(args))
    with pytest.raises(UnsupportedOnRunnerError, match="on Flink in batch mode"):
        _ = p | ReadFromStreamHouse(topic.name, **read)
    # Streaming mode is accepted: Flink finalizes bundles there (when checkpoints complete).
    p = beam.Pipeline(options=PipelineOptions([*args, "--streaming"]))
    _ = p | ReadFromStreamHouse(topic.name, **read)


def _written_lines(prefix: pathlib.Path) -> list[str]:
    return [
        line
        for path in sorted(prefix.parent.glob(prefix.name + "*"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def test_flink_streaming_writes_a_bounded_read_with_write_to_text(tmp_path: pathlib.Path) -> None:
    # The reported failure: under Java 17 Flink's Kryo copy needs java.util opened, which
    # flink_pipeline_args passes to the job server (docs/flink.md).
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    prefix = tmp_path / "out" / "records"
    with beam.Pipeline(options=PipelineOptions(runners.flink_pipeline_args(streaming=True))) as p:
        _ = (
            p
            | ReadFromStreamHouse(topic.name, **topic.read_kwargs(stop=StopPosition.latest()))
            | beam.Map(lambda r: f"{r.partition}/{r.offset}/{r.value.decode()}")
            | beam.io.WriteToText(str(prefix), file_name_suffix=".txt")
        )
    expected = [
        f"{partition}/{offset}/{value}" for _, partition, offset, _, value, _ in topic.expected
    ]
    assert sorted(_written_lines(prefix)) == sorted(expected)


def test_flink_streaming_writes_a_windowed_tailing_read_one_file_per_window(
    tmp_path: pathlib.Path,
) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    prefix = tmp_path / "out" / "records"
    total = len(topic.expected)
    with beam.Pipeline(options=PipelineOptions(runners.flink_pipeline_args(streaming=True))) as p:
        _ = (
            p
            | ReadFromStreamHouse(topic.name, **topic.read_kwargs(max_records=total))
            | beam.Map(lambda r: f"{r.partition}/{r.offset}/{r.timestamp}")
            | beam.WindowInto(window.FixedWindows(60))
            | beam.io.WriteToText(str(prefix), file_name_suffix=".txt", num_shards=1)
        )
    files = sorted(prefix.parent.glob(prefix.name + "*"))
    # LocalStreamHouse stamps records 1 ms apart from one start: they all fall in one window.
    assert len(files) == 1, files
    assert "00000-of-00001" in files[0].name
    expected = [f"{partition}/{offset}/{ts}" for _, partition, offset, _, _, ts in topic.expected]
    assert sorted(_written_lines(prefix)) == sorted(expected)


def _wait_for_written_lines(prefix: pathlib.Path, expected: list[str], *, timeout: float) -> None:
    """Poll the files under ``prefix`` until they hold exactly ``expected`` (in any order)."""
    wait_for(
        lambda: sorted(_written_lines(prefix)) == sorted(expected),
        timeout=timeout,
        interval=1,
        what=f"{len(expected)} lines written under {prefix}* (have {len(_written_lines(prefix))})",
    )


def test_flink_checkpointed_streaming_writes_a_bounded_read_with_write_to_text(
    tmp_path: pathlib.Path,
) -> None:
    # With Flink checkpointing on, this wrote nothing on the unpatched job server: every checkpoint
    # of WriteImpl's side-input stages failed (0002-flink-side-input-state-coder.patch) and
    # WriteBundles lost the final watermark (0003-flink-stage-input-watermark.patch).
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    prefix = tmp_path / "out" / "records"
    p = beam.Pipeline(
        options=PipelineOptions(
            runners.flink_pipeline_args(streaming=True, checkpointing_interval_ms=500)
        )
    )
    _ = (
        p
        | ReadFromStreamHouse(topic.name, **topic.read_kwargs(stop=StopPosition.latest()))
        | beam.Map(lambda r: f"{r.partition}/{r.offset}/{r.value.decode()}")
        | beam.io.WriteToText(str(prefix), file_name_suffix=".txt")
    )
    expected = [
        f"{partition}/{offset}/{value}" for _, partition, offset, _, value, _ in topic.expected
    ]
    result = p.run()
    try:
        _wait_for_written_lines(prefix, expected, timeout=180)
    finally:
        # With checkpointing on, Beam keeps Flink's sources alive: the job never ends alone.
        result.cancel()
    assert sorted(_written_lines(prefix)) == sorted(expected)


def test_flink_checkpointed_streaming_writes_a_windowed_tailing_read_one_file_per_window(
    tmp_path: pathlib.Path,
) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    prefix = tmp_path / "out" / "records"
    total = len(topic.expected)
    p = beam.Pipeline(
        options=PipelineOptions(
            runners.flink_pipeline_args(streaming=True, checkpointing_interval_ms=1000)
        )
    )
    _ = (
        p
        | ReadFromStreamHouse(topic.name, **topic.read_kwargs(max_records=total))
        | beam.Map(lambda r: f"{r.partition}/{r.offset}/{r.timestamp}")
        | beam.WindowInto(window.FixedWindows(60))
        | beam.io.WriteToText(str(prefix), file_name_suffix=".txt", num_shards=1)
    )
    expected = [f"{partition}/{offset}/{ts}" for _, partition, offset, _, _, ts in topic.expected]
    result = p.run()
    try:
        _wait_for_written_lines(prefix, expected, timeout=180)
    finally:
        result.cancel()
    files = sorted(prefix.parent.glob(prefix.name + "*"))
    # LocalStreamHouse stamps records 1 ms apart from one start: they all fall in one window.
    assert len(files) == 1, files
    assert "00000-of-00001" in files[0].name
    assert sorted(_written_lines(prefix)) == sorted(expected)
