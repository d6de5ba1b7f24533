"""A pipeline killed mid-read and restarted from its committed offsets: at-least-once, exactly
bounded.

A child process runs a bounded read with ``commit_offsets_group`` and writes every record it
emits to a file (flushed per record, so the file is exactly what left the pipeline before the
kill). Once some offsets are committed the test SIGKILLs the child's whole process group
mid-read, then runs the same pipeline again from ``StartPosition.committed(group)``.

Guarantees checked, per partition, with ``C`` the offset committed when the first run died:

* nothing before ``C`` is read again: the restart emits exactly the offsets ``C..end-1``;
* nothing is lost: every offset below ``C`` was emitted by the first run (a commit never runs
  ahead of what the bundle emitted), and the two runs together cover every record;
* duplicates are only records at or after ``C`` (re-reads after the last commit).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from streamhouse_beam.testing.local import LocalStreamHouse

TOPIC = "payments"
PARTITIONS = 2
PER_PARTITION = 300
GROUP = "restartable"

_CHILD = textwrap.dedent(
    '''
    """Child pipeline: read TOPIC, commit offsets, append each record to OUT as JSON."""
    import json
    import sys
    import time

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from streamhouse_beam.beam import ReadFromStreamHouse
    from streamhouse_beam.positions import StartPosition, StopPosition

    metadata_url, storage_url, out_path, start_kind, delay = sys.argv[1:6]
    start = (
        StartPosition.committed("{group}", fallback="earliest")
        if start_kind == "committed"
        else StartPosition.earliest()
    )


    class Sink(beam.DoFn):
        def setup(self):
            self.fh = open(out_path, "a", encoding="utf-8")

        def process(self, record):
            # Slow enough that the parent can kill the pipeline half-way.
            time.sleep(float(delay))
            self.fh.write(json.dumps([record.partition, record.offset]) + "\\n")
            self.fh.flush()

        def teardown(self):
            self.fh.close()


    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        (
            p
            | ReadFromStreamHouse(
                "{topic}",
                metadata_url=metadata_url,
                storage_url=storage_url,
                start=start,
                stop=StopPosition.latest(),
                max_poll_records=10,
                commit_offsets_group="{group}",
            )
            | beam.ParDo(Sink())
        )
    '''
).format(group=GROUP, topic=TOPIC)


@pytest.fixture
def house(tmp_path: pathlib.Path) -> Iterator[LocalStreamHouse]:
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db",
        f"file://{tmp_path}/segments",
        segment_max_records=25,
    ) as lsh:
        lsh.create_schema()
        lsh.create_topic(TOPIC, partitions=PARTITIONS)
        for p in range(PARTITIONS):
            lsh.append(TOPIC, p, [f"r{i}" for i in range(PER_PARTITION)], flush=True)
        yield lsh


def _committed(db_path: str, *, wait: float = 0.2) -> dict[int, int]:
    """The group's committed offsets; ``{}`` if the database stays locked for ``wait`` seconds.

    A read-write connection on purpose: if the child died inside a commit transaction, the
    first connection must roll its hot journal back, which a read-only one cannot do.
    """
    try:
        with contextlib.closing(sqlite3.connect(db_path, timeout=wait)) as conn:
            rows = conn.execute(
                "SELECT partition_id, committed_offset FROM consumer_offsets "
                "WHERE group_id = ? AND topic = ?",
                (GROUP, TOPIC),
            ).fetchall()
    except sqlite3.OperationalError:
        return {}  # locked by the child's commit for a moment: look again later
    return {int(p): int(o) for p, o in rows}


def _emitted(path: pathlib.Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            partition, offset = json.loads(line)
        except ValueError:
            continue  # the last line may be half-written at the kill
        out.append((int(partition), int(offset)))
    return out


def _child(
    house: LocalStreamHouse, tmp: pathlib.Path, out: pathlib.Path, start: str, delay: float
) -> subprocess.Popen[bytes]:
    script = tmp / "child_pipeline.py"
    script.write_text(_CHILD, encoding="utf-8")
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            house.metadata_url,
            f"file://{tmp}/segments",
            str(out),
            start,
            str(delay),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"child-{start}.log", "wb"),
        start_new_session=True,
    )


@pytest.mark.slow
def test_killed_pipeline_restarts_from_its_commits_without_loss(
    house: LocalStreamHouse, tmp_path: pathlib.Path
) -> None:
    db_path = str(tmp_path / "metadata.db")
    first_out = tmp_path / "first.jsonl"
    child = _child(house, tmp_path, first_out, "earliest", delay=0.01)
    try:
        # Wait for real progress: commits on the books and records still to go.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if child.poll() is not None:
                break
            committed = _committed(db_path)
            if sum(committed.values()) >= 60:
                break
            time.sleep(0.05)
        # Let it run on a little, so the kill usually lands between a bundle's output and
        # its commit (the records then re-read are the at-least-once duplicates).
        time.sleep(0.1)
        assert child.poll() is None, (
            "the first run ended before it could be killed: "
            + (tmp_path / "child-earliest.log").read_text(errors="replace")[-2000:]
        )
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)

    committed = _committed(db_path, wait=10)
    first = _emitted(first_out)
    assert sum(committed.values()) >= 60
    assert len(first) < PARTITIONS * PER_PARTITION, "the kill came after the read finished"

    second_out = tmp_path / "second.jsonl"
    restart = _child(house, tmp_path, second_out, "committed", delay=0)
    assert restart.wait(timeout=300) == 0, (tmp_path / "child-committed.log").read_text(
        errors="replace"
    )[-3000:]
    second = _emitted(second_out)

    for p in range(PARTITIONS):
        c = committed.get(p, 0)
        first_p = [o for q, o in first if q == p]
        second_p = [o for q, o in second if q == p]
        # None before the commit is read again; everything after it is read exactly once.
        assert sorted(second_p) == list(range(c, PER_PARTITION)), f"partition {p}, commit {c}"
        # A commit never runs ahead of what the first run emitted: nothing below it is lost.
        assert set(range(c)) <= set(first_p), f"partition {p}: offsets below {c} never emitted"
        # The only duplicates are re-reads after the last commit (at-least-once).
        assert {o for o in first_p if o in set(second_p)} <= set(range(c, PER_PARTITION))
        assert set(first_p) | set(second_p) == set(range(PER_PARTITION))
    # The restart committed its own progress to the end.
    assert _committed(db_path, wait=10) == {p: PER_PARTITION for p in range(PARTITIONS)}
