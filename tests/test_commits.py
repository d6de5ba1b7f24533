"""commit_offsets_group commits next offsets on bundle finalization; committed() resumes there."""

from __future__ import annotations

import collections
import pathlib
import random
from typing import Any

import apache_beam as beam
import pytest

from streamhouse_beam import ReadFromStreamHouse, StartPosition, StopPosition
from streamhouse_beam.beam._read_fn import partitions_fn
from streamhouse_beam.beam._restriction import PartitionRestriction
from streamhouse_beam.metadata import open_metadata
from tests.read_helpers import read_all, urls, write_topic
from tests.split_gate import SplitGate

GATE = SplitGate()


class _Record(beam.DoFn):  # type: ignore[misc]
    def process(self, record: Any) -> None:
        GATE.passed([(record.partition, record.offset)])


def _committed(tmp: pathlib.Path, group: str, topic: str, partitions: int) -> list[int | None]:
    meta = open_metadata(f"sqlite:///{tmp}/metadata.db")
    return [meta.committed_offset(group, topic, p) for p in range(partitions)]


def test_bounded_read_commits_the_end_and_a_resume_reads_exactly_the_rest(
    tmp_path: pathlib.Path,
) -> None:
    first_records = [[f"first-{p}-{i}" for i in range(10 + p)] for p in range(3)]
    lsh = write_topic(tmp_path, "c", first_records, segment_max_records=4)
    first = read_all(
        ReadFromStreamHouse(
            "c",
            **urls(tmp_path),
            stop=StopPosition.latest(),
            commit_offsets_group="g",
            max_poll_records=3,
        )
    )
    assert len(first) == 33
    assert _committed(tmp_path, "g", "c", 3) == [10, 11, 12]

    for p in range(3):
        lsh.append("c", p, [f"second-{p}-{i}" for i in range(5)], flush=True)
    second = read_all(
        ReadFromStreamHouse(
            "c",
            **urls(tmp_path),
            start=StartPosition.committed("g", fallback="fail"),
            stop=StopPosition.latest(),
            commit_offsets_group="g",
        )
    )
    assert sorted(r.value.decode() for r in second) == sorted(
        f"second-{p}-{i}" for p in range(3) for i in range(5)
    )
    assert _committed(tmp_path, "g", "c", 3) == [15, 16, 17]


def test_max_records_commits_what_was_emitted_and_resume_misses_nothing(
    tmp_path: pathlib.Path,
) -> None:
    write_topic(
        tmp_path, "c", [[f"{p}-{i}" for i in range(12)] for p in range(2)], segment_max_records=4
    )
    head = read_all(
        ReadFromStreamHouse(
            "c",
            **urls(tmp_path),
            max_records=9,
            commit_offsets_group="g",
            max_poll_records=2,
            poll_interval=0.05,
        )
    )
    assert len(head) == 9
    committed = _committed(tmp_path, "g", "c", 2)
    for p in range(2):
        emitted = [r.offset for r in head if r.partition == p]
        assert committed[p] == (max(emitted) + 1 if emitted else None)
    rest = read_all(
        ReadFromStreamHouse(
            "c", **urls(tmp_path), start=StartPosition.committed("g"), stop=StopPosition.latest()
        )
    )
    seen = sorted((r.partition, r.offset) for r in head + rest)
    assert seen == [(p, o) for p in range(2) for o in range(12)]


def test_commits_never_move_a_group_backwards(tmp_path: pathlib.Path) -> None:
    lsh = write_topic(tmp_path, "c", [[f"v{i}" for i in range(6)]])
    lsh.commit("g", {("c", 0): 100})
    read_all(
        ReadFromStreamHouse(
            "c",
            **urls(tmp_path),
            start=StartPosition.earliest(),
            stop=StopPosition.latest(),
            commit_offsets_group="g",
        )
    )
    assert _committed(tmp_path, "g", "c", 1) == [100]


@pytest.mark.parametrize("group", [None, "g"])
def test_a_committing_read_accepts_checkpoints_but_no_dynamic_splits(
    tmp_path: pathlib.Path, group: str | None
) -> None:
    # A commit says every offset below it was read. After a dynamic split the residual range
    # is read next to the primary one, and its commits could pass offsets the primary has not
    # read yet: a restart from the commits would skip them. A read without commits splits.
    write_topic(tmp_path, "c", [[f"{i}" for i in range(20)]])
    read = ReadFromStreamHouse(
        "c", **urls(tmp_path), stop=StopPosition.latest(), commit_offsets_group=group
    )
    fn = partitions_fn(read.config, tailing=False)
    tracker = fn.create_tracker(PartitionRestriction(0, 20))
    assert tracker.try_claim(0)
    split = tracker.try_split(0.5)
    if group is None:
        assert split is not None and split[1] == PartitionRestriction(10, 20)
    else:
        assert split is None
        assert tracker.try_split(0) == (PartitionRestriction(0, 1), PartitionRestriction(1, 20))


@pytest.mark.slow
def test_a_committing_read_under_runner_split_requests_is_exact_and_commits_the_ends(
    tmp_path: pathlib.Path,
) -> None:
    counts = [23, 7, 16]
    write_topic(
        tmp_path,
        "c",
        [[f"{p}-{i}" for i in range(n)] for p, n in enumerate(counts)],
        segment_max_records=4,
    )
    expected = collections.Counter((p, o) for p, n in enumerate(counts) for o in range(n))
    before = GATE.splits
    for seed in range(4):
        group = f"g{seed}"
        read = ReadFromStreamHouse(
            "c",
            **urls(tmp_path),
            stop=StopPosition.latest(),
            commit_offsets_group=group,
            max_poll_records=3,
        )
        got = GATE.run(read, _Record(), random.Random(seed))
        assert got == expected
        assert _committed(tmp_path, group, "c", 3) == counts
    assert GATE.splits > before, "no split request was answered"
