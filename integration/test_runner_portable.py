"""ReadFromStreamHouse through PortableRunner against Beam's local job service (LOOPBACK)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from _runners_support import (
    Topic,
    run_bounded_read,
    run_streaming_read,
    run_toy_sdf,
)

from streamhouse_beam.testing import runners

pytestmark = [pytest.mark.slow, pytest.mark.runner]


@pytest.fixture(scope="module")
def job_service() -> Iterator[runners.PortableJobService]:
    with runners.PortableJobService() as service:
        yield service


def test_portable_runner_runs_a_toy_splittable_dofn(
    job_service: runners.PortableJobService,
) -> None:
    run_toy_sdf([3, 5, 7], runners.portable_pipeline_args(job_service.endpoint))


def test_portable_runner_reads_a_bounded_multi_partition_topic_exactly(
    job_service: runners.PortableJobService, tmp_path: pathlib.Path
) -> None:
    topic = Topic(tmp_path, partitions=3, records_per_partition=30)
    run_bounded_read(topic, runners.portable_pipeline_args(job_service.endpoint))


def test_portable_runner_streaming_read_picks_up_appended_records_until_max_records(
    job_service: runners.PortableJobService, tmp_path: pathlib.Path
) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    run_streaming_read(
        topic,
        runners.portable_pipeline_args(job_service.endpoint),
        tmp_path / "out.jsonl",
    )


def test_portable_runner_commits_offsets_through_the_group(
    job_service: runners.PortableJobService, tmp_path: pathlib.Path
) -> None:
    topic = Topic(tmp_path, partitions=2, records_per_partition=12)
    group = "portable-group"
    run_bounded_read(
        topic,
        runners.portable_pipeline_args(job_service.endpoint),
        commit_offsets_group=group,
    )
    assert topic.committed(group) == topic.end_offsets()
