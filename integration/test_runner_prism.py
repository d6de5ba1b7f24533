"""ReadFromStreamHouse on Beam's Prism runner, built from the Go module proxy by fetch-runners.

Prism splits splittable DoFns on its own initiative, so these tests exercise the restriction
splitting logic in a way FnApiRunner never does.
"""

from __future__ import annotations

import pathlib

import apache_beam as beam
import pytest
from _runners_support import (
    CountUpTo,
    Topic,
    ensure_runners,
    run_bounded_read,
    run_cli_read,
    run_streaming_read,
    toy_sdf_expected,
)
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from streamhouse_beam.testing import runners

pytestmark = [pytest.mark.slow, pytest.mark.runner]


@pytest.fixture(scope="module", autouse=True)
def _runners_fetched() -> None:
    ensure_runners()


def test_prism_runs_a_toy_splittable_dofn() -> None:
    sizes = [3, 5, 7, 1000]
    options = PipelineOptions(runners.prism_pipeline_args())
    with beam.Pipeline(options=options) as p:
        out = p | beam.Create(sizes) | beam.ParDo(CountUpTo())
        assert_that(out, equal_to(toy_sdf_expected(sizes)))


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
