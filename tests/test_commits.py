"""commit_offsets_group commits next offsets on bundle finalization; committed() resumes there."""

from __future__ import annotations

import pathlib

from streamhouse_beam import ReadFromStreamHouse, StartPosition, StopPosition
from streamhouse_beam.metadata import open_metadata
from tests.read_helpers import read_all, urls, write_topic


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
