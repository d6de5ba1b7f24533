"""ReadFromStreamHouse on a Flink session cluster of separate JVMs, with SDK worker processes.

One :class:`FlinkSessionCluster` (a JobManager and two TaskManagers, all on 127.0.0.1) and one
:class:`SdkWorkerPool` serve the whole module. Each test submits a streaming job through
Beam's ``FlinkRunner`` (job server from ``.ci/fetch-runners``, ``--flink_master`` the cluster)
with parallelism 4 over an 8-partition topic, checkpoints every second with the filesystem
state backend, and the SDK harness in worker processes (``--environment_type=EXTERNAL``).
Records are appended while the job runs; the sink (:class:`CollectToFile`) appends every
record it sees to a file, from whichever worker process runs it.

What is checked, with ``C[p]`` the offset committed for partition ``p`` just before a failure:

* without failures the output is exactly the topic's records, each once;
* after kill -9 of a TaskManager or of an SDK worker, Flink restarts the job from its last
  completed checkpoint: the output deduplicated by (topic, partition, offset) is exactly the
  topic's records, and every duplicate has an offset >= ``C[p]`` (replayed after the restored
  checkpoint, never before it);
* committed offsets never move backwards (polled throughout) and reach the end;
* stop-with-savepoint, then a new job from the savepoint: it continues at the saved offsets.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import pytest
from _runners_support import (
    CollectToFile,
    EventTimeMatchesRecord,
    Topic,
    ensure_runners,
    read_collected,
    wait_for,
)
from apache_beam.options.pipeline_options import PipelineOptions

from streamhouse_beam.beam import ReadFromStreamHouse
from streamhouse_beam.testing.flink_cluster import (
    FlinkClusterError,
    FlinkSessionCluster,
    SdkWorker,
    SdkWorkerPool,
    flink_cluster_pipeline_args,
)

pytestmark = [pytest.mark.slow, pytest.mark.runner]

PARTITIONS = 8
PARALLELISM = 4
GROUP = "flink-cluster"
#: generous: two cores shared with other JVMs; a job takes ~30-60 s from submission to running
TIMEOUT = 240.0

INTEGRATION_DIR = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[FlinkSessionCluster]:
    ensure_runners()
    # STREAMHOUSE_FLINK_CLUSTER_DIR keeps the cluster's logs and checkpoints for a post-mortem.
    workdir = os.environ.get("STREAMHOUSE_FLINK_CLUSTER_DIR") or None
    with FlinkSessionCluster(taskmanagers=2, workdir=workdir) as started:
        try:
            yield started
        finally:
            started.cancel_all()


@pytest.fixture(scope="module")
def pool() -> Iterator[SdkWorkerPool]:
    # The workers unpickle the test's DoFns, which live in this directory's modules.
    with SdkWorkerPool(env={"PYTHONPATH": str(INTEGRATION_DIR)}) as started:
        yield started


@pytest.fixture
def healthy(cluster: FlinkSessionCluster, pool: SdkWorkerPool) -> FlinkSessionCluster:
    """The cluster with no job running and both TaskManagers up (whatever a test before did)."""
    cluster.cancel_all()
    for index in range(cluster.taskmanager_count):
        try:
            cluster.taskmanager_pid(index)
        except FlinkClusterError:  # killed by a test before and not restarted
            cluster.restart_taskmanager(index, timeout=TIMEOUT)
    cluster.wait_for_taskmanagers(cluster.taskmanager_count, timeout=TIMEOUT)
    return cluster


@dataclasses.dataclass
class Job:
    """A submitted streaming read: Beam's result, Flink's job id and the sink's file."""

    result: Any
    job_id: str
    out: pathlib.Path

    def output(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in read_collected(self.out)]


def start_read(
    cluster: FlinkSessionCluster,
    pool: SdkWorkerPool,
    topic: Topic,
    out: pathlib.Path,
    *,
    savepoint_path: str | None = None,
) -> Job:
    """Submit a tailing read of ``topic`` to the cluster; wait until all its tasks run."""
    before = {job.id for job in cluster.jobs()}
    args = flink_cluster_pipeline_args(
        cluster,
        pool,
        checkpointing_interval_ms=1000,
        parallelism=PARALLELISM,
        savepoint_path=savepoint_path,
    )
    p = beam.Pipeline(options=PipelineOptions(args))
    _ = (
        p
        | ReadFromStreamHouse(topic.name, **topic.read_kwargs(commit_offsets_group=GROUP))
        | beam.ParDo(EventTimeMatchesRecord())
        | beam.ParDo(CollectToFile(str(out)))
    )
    result = p.run()
    job_id = cluster.wait_for_running_job(exclude=before, timeout=TIMEOUT)
    return Job(result, job_id, out)


class CommitWatch:
    """Polls the group's committed offsets and records any that moved backwards."""

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        self.last: dict[int, int] = {}
        self.regressions: list[str] = []

    def poll(self) -> dict[int, int]:
        for partition, offset in self.topic.committed(GROUP).items():
            if offset is None:
                continue
            previous = self.last.get(partition)
            if previous is not None and offset < previous:
                self.regressions.append(f"partition {partition}: {previous} -> {offset}")
            self.last[partition] = offset
        return dict(self.last)

    def wait_for_end(self, timeout: float) -> None:
        end = self.topic.end_offsets()
        wait_for(
            lambda: self.poll() == end,
            timeout=timeout,
            what=f"commits to reach {end} (have {self.last})",
            interval=0.5,
        )
        assert not self.regressions, f"committed offsets moved backwards: {self.regressions}"


def append_while_polling(topic: Topic, watch: CommitWatch, rounds: int, per_round: int) -> None:
    """Append ``rounds`` batches of ``per_round`` records per partition, ~1 s apart."""
    for _ in range(rounds):
        topic.append(per_round)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            watch.poll()
            time.sleep(0.25)


def wait_for_all(
    cluster: FlinkSessionCluster,
    job: Job,
    topic: Topic,
    watch: CommitWatch,
    *,
    earlier: Sequence[tuple[Any, ...]] = (),
) -> None:
    """Wait until every record of ``topic`` is output (dedup'd) and committed.

    ``earlier`` is output of jobs before this one (e.g. the job a savepoint came from). On
    timeout the failure names the missing offsets per partition and the job's state.
    """
    expected = {record[:3] for record in topic.expected} - {row[:3] for row in earlier}
    deadline = time.monotonic() + TIMEOUT
    while True:
        watch.poll()
        missing = expected - {row[:3] for row in job.output()}
        if not missing:
            break
        if time.monotonic() > deadline:
            per_partition: dict[int, list[int]] = collections.defaultdict(list)
            for _, partition, offset in sorted(missing):
                per_partition[partition].append(offset)
            exceptions = cluster.rest("GET", f"/jobs/{job.job_id}/exceptions")
            pytest.fail(
                f"timed out after {TIMEOUT:.0f} s waiting for {len(missing)} of "
                f"{len(expected)} records in the output of job {job.job_id} "
                f"({cluster.job_state(job.job_id)}, {cluster.job_restarts(job.job_id)} "
                f"restarts); missing offsets per partition: {dict(per_partition)}; "
                f"committed {watch.last}; root exception: "
                f"{str(exceptions.get('root-exception'))[:2000]}"
            )
        time.sleep(0.5)
    watch.wait_for_end(TIMEOUT)


def assert_exactly_once_after_dedup(
    output: list[tuple[Any, ...]], topic: Topic, committed_before_failure: dict[int, int]
) -> int:
    """Dedup'd output == the topic; duplicates only at offsets >= the pre-failure commits.

    Returns the number of duplicate lines (for the failure message of a caller).
    """
    assert sorted(set(output)) == sorted(topic.expected), "deduplicated output != appended"
    counts = collections.Counter(row[:3] for row in output)
    early = sorted(
        (partition, offset, n)
        for (_, partition, offset), n in counts.items()
        if n > 1 and offset < committed_before_failure.get(partition, 0)
    )
    assert not early, (
        f"records before the offsets committed when the failure happened "
        f"({committed_before_failure}) were emitted again (partition, offset, times): "
        f"{early[:20]}"
    )
    return sum(n - 1 for n in counts.values())


def test_streaming_read_on_the_cluster_runs_on_both_taskmanagers_and_external_workers(
    healthy: FlinkSessionCluster, pool: SdkWorkerPool, tmp_path: pathlib.Path
) -> None:
    cluster = healthy
    topic = Topic(tmp_path, partitions=PARTITIONS, records_per_partition=5)
    watch = CommitWatch(topic)
    job = start_read(cluster, pool, topic, tmp_path / "out.jsonl")
    try:
        # Both TaskManagers run subtasks of the job, and the SDK harness is in worker
        # processes of the pool, not in this process.
        running_on = {cluster.taskmanager_index(tm) for tm in cluster.job_taskmanagers(job.job_id)}
        assert running_on == {0, 1}, f"job runs on TaskManagers {running_on}, expected both"
        assert len(pool.wait_for_workers(2, timeout=TIMEOUT)) >= 2

        append_while_polling(topic, watch, rounds=4, per_round=3)
        wait_for_all(cluster, job, topic, watch)
        assert cluster.job_restarts(job.job_id) == 0
        checkpoint = cluster.latest_checkpoint(job.job_id)
        assert checkpoint is not None and checkpoint.state_size > 0
        assert checkpoint.operator_sizes, "no per-operator checkpoint sizes"
    finally:
        cluster.cancel(job.job_id)
    output = job.output()
    assert len(output) == len(topic.expected), "duplicates without any failure"
    assert sorted(output) == sorted(topic.expected)


def _kill_mid_stream(
    cluster: FlinkSessionCluster,
    pool: SdkWorkerPool,
    tmp_path: pathlib.Path,
    kill: Any,
) -> None:
    """Tail a topic, ``kill(job_id)`` something mid-stream while appending, check recovery."""
    topic = Topic(tmp_path, partitions=PARTITIONS, records_per_partition=5)
    watch = CommitWatch(topic)
    job = start_read(cluster, pool, topic, tmp_path / "out.jsonl")
    try:
        # Killed before any checkpoint, Flink would restart from nothing: wait for one, and
        # for commits to prove the bundles before it were finalized.
        append_while_polling(topic, watch, rounds=2, per_round=3)
        cluster.wait_for_checkpoint(job.job_id, timeout=TIMEOUT)
        wait_for(
            lambda: len(watch.poll()) == PARTITIONS,
            timeout=TIMEOUT,
            what=f"a commit on every partition (have {watch.last})",
        )
        # Kill while freshly read records are past the sink but (most likely) not yet in a
        # completed checkpoint: those are the ones a restore replays.
        topic.append(3)
        in_flight = {record[:3] for record in topic.expected}
        wait_for(
            lambda: in_flight <= {row[:3] for row in job.output()},
            timeout=TIMEOUT,
            what="the records appended just before the kill in the output",
            interval=0.1,
        )
        committed_before_kill = watch.poll()
        latest = cluster.latest_checkpoint(job.job_id)
        assert latest is not None
        kill(job.job_id)
        append_while_polling(topic, watch, rounds=4, per_round=3)
        wait_for(
            lambda: cluster.job_restarts(job.job_id) >= 1,
            timeout=TIMEOUT,
            what=f"Flink to restart job {job.job_id}",
        )
        cluster.wait_for_job_state(job.job_id, {"RUNNING"}, timeout=TIMEOUT)
        restored = cluster.restored_checkpoint_id(job.job_id)
        assert restored is not None and restored >= latest.id, (
            f"the job restored checkpoint {restored}, expected the latest completed one "
            f"(>= {latest.id}) before the kill"
        )
        append_while_polling(topic, watch, rounds=2, per_round=3)
        wait_for_all(cluster, job, topic, watch)
        restarts = cluster.job_restarts(job.job_id)
    finally:
        cluster.cancel(job.job_id)
    duplicates = assert_exactly_once_after_dedup(job.output(), topic, committed_before_kill)
    print(
        f"{len(topic.expected)} records, {duplicates} duplicates, {restarts} restarts, "
        f"checkpoint {latest.id} before the kill, restored {restored}; "
        f"committed before the kill {committed_before_kill}"
    )


def test_taskmanager_killed_mid_stream_restarts_from_checkpoint_without_loss(
    healthy: FlinkSessionCluster, pool: SdkWorkerPool, tmp_path: pathlib.Path
) -> None:
    cluster = healthy
    killed: list[int] = []

    def kill_busiest_taskmanager(job_id: str) -> None:
        subtasks = cluster.job_taskmanagers(job_id)
        busiest = max(subtasks, key=lambda tm: subtasks[tm])
        index = cluster.taskmanager_index(busiest)
        assert index is not None, f"{busiest} is not one of the cluster's TaskManagers"
        cluster.kill_taskmanager(index)
        killed.append(index)

    try:
        _kill_mid_stream(cluster, pool, tmp_path, kill_busiest_taskmanager)
        assert killed
        # The job ran on after the kill on the surviving TaskManager alone.
        cluster.wait_until_lost(killed[0], timeout=TIMEOUT)
    finally:
        for index in killed:
            cluster.restart_taskmanager(index, timeout=TIMEOUT)


def test_sdk_worker_killed_mid_stream_restarts_from_checkpoint_without_loss(
    healthy: FlinkSessionCluster, pool: SdkWorkerPool, tmp_path: pathlib.Path
) -> None:
    killed: list[int] = []
    # Workers of earlier jobs may still be shutting down (or, orphaned by the TaskManager
    # killed in another test, be about to exit): killing one of those would fail nothing.
    earlier = {worker.pid for worker in pool.workers()}

    def kill_one_sdk_worker(job_id: str) -> None:
        def of_this_job() -> list[SdkWorker]:
            return [worker for worker in pool.workers() if worker.pid not in earlier]

        wait_for(
            lambda: bool(of_this_job()),
            timeout=TIMEOUT,
            what=f"an SDK worker of job {job_id} (workers of earlier jobs: {sorted(earlier)})",
        )
        victim = of_this_job()[0]
        pool.kill_worker(victim)
        killed.append(victim.pid)

    _kill_mid_stream(healthy, pool, tmp_path, kill_one_sdk_worker)
    assert killed
    assert killed[0] not in {worker.pid for worker in pool.workers()}


def test_job_stopped_with_a_savepoint_continues_from_it_in_a_new_job(
    healthy: FlinkSessionCluster, pool: SdkWorkerPool, tmp_path: pathlib.Path
) -> None:
    cluster = healthy
    topic = Topic(tmp_path, partitions=PARTITIONS, records_per_partition=5)
    watch = CommitWatch(topic)
    first = start_read(cluster, pool, topic, tmp_path / "first.jsonl")
    try:
        initial = len(topic.expected)
        wait_for(
            lambda: len(first.output()) >= initial,
            timeout=TIMEOUT,
            what=f"the first {initial} records",
        )
        # Stopped while it still has appended records to read.
        append_while_polling(topic, watch, rounds=2, per_round=3)
        savepoint = cluster.stop_with_savepoint(first.job_id, tmp_path / "savepoints")
    finally:
        cluster.cancel(first.job_id)
    saved = watch.poll()
    first_output = first.output()
    # A commit never runs ahead of the output: the first job emitted everything before it.
    emitted = {(row[1], row[2]) for row in first_output}
    missing = sorted(
        (partition, offset)
        for partition, end in saved.items()
        for offset in range(end)
        if (partition, offset) not in emitted
    )
    assert not missing, f"committed {saved} but never emitted {missing[:20]}"

    # Appended while no job runs: only the job started from the savepoint can read these.
    topic.append(4)
    second = start_read(cluster, pool, topic, tmp_path / "second.jsonl", savepoint_path=savepoint)
    try:
        assert cluster.restored_checkpoint_id(second.job_id) is not None, "savepoint not restored"
        append_while_polling(topic, watch, rounds=2, per_round=3)
        wait_for_all(cluster, second, topic, watch, earlier=first_output)
    finally:
        cluster.cancel(second.job_id)
    second_output = second.output()

    # It continued at the saved offsets: nothing the first job read before them again.
    reread = sorted((row[1], row[2]) for row in second_output if row[2] < saved.get(row[1], 0))
    assert not reread, f"the new job read again before the saved offsets {saved}: {reread[:20]}"
    duplicates = assert_exactly_once_after_dedup(first_output + second_output, topic, saved)
    print(
        f"{len(topic.expected)} records: {len(first_output)} from the first job, "
        f"{len(second_output)} from the second, {duplicates} duplicates; saved offsets {saved}; "
        f"savepoint {savepoint}"
    )


def test_a_cluster_that_cannot_start_says_why_with_the_log_tail(tmp_path: pathlib.Path) -> None:
    # No Flink classes on the classpath: the JobManager JVM exits at once.
    broken = FlinkSessionCluster(classpath=[str(tmp_path / "missing.jar")], startup_timeout=60)
    try:
        with pytest.raises(FlinkClusterError) as failure:
            broken.start()
        message = str(failure.value)
        assert "jobmanager exited" in message
        assert "StandaloneSessionClusterEntrypoint" in message  # from the log tail
        assert not broken.running
        assert (broken.log_dir / "jobmanager.log").is_file()  # kept for a post-mortem
    finally:
        broken.stop()
    with pytest.raises(FlinkClusterError, match="not started"):
        _ = broken.workdir
