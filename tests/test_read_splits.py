"""Exactly once under runner splits and self-checkpoints.

Hypothesis generates topics (partitions, segment sizes, offset gaps); each pipeline reads a
batch of them through FnApiRunner's split manager with the gRPC-embedded SDK harness, which
sends real ``ProcessBundleSplitRequest`` s at random fractions while the splittable DoFn runs.
A DoFn fused after the read blocks at a random element so the split lands mid-bundle. Every
generated topic is one case: the output multiset must equal what was written. 25 pipelines of
8 topics = 200 cases; about 2-3 minutes on 2 cores (most of it runner round trips), so the
module is marked slow.
"""

from __future__ import annotations

import collections
import pathlib
import random
import tempfile
from typing import Any

import apache_beam as beam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse_beam import ReadFromStreamHouse, StopPosition
from streamhouse_beam.beam._read_fn import ReadPartitionsFn
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS
from tests.read_helpers import local_streamhouse, urls
from tests.split_gate import SplitGate

pytestmark = pytest.mark.slow

TOPICS_PER_PIPELINE = 8
PIPELINES = 25

# One partition: segments as (gap before it, record count).
partition_spec = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 9)), min_size=0, max_size=5)
topic_spec = st.lists(partition_spec, min_size=1, max_size=3)


GATE = SplitGate()


class _Record(beam.DoFn):  # type: ignore[misc]
    def process(self, record: Any) -> None:
        GATE.passed([(record.topic, record.partition, record.offset, record.value)])


def _write(
    tmp: pathlib.Path, topics: list[list[list[tuple[int, int]]]]
) -> collections.Counter[Any]:
    lsh = local_streamhouse(tmp)
    expected: collections.Counter[Any] = collections.Counter()
    for t, partitions in enumerate(topics):
        name = f"case{t}"
        lsh.create_topic(name, len(partitions))
        for p, segments in enumerate(partitions):
            offset = 0
            for gap, count in segments:
                offset += gap
                rows = [
                    (o, DEFAULT_CLOCK_START_MS + o, None, b"%d-%d-%d" % (t, p, o))
                    for o in range(offset, offset + count)
                ]
                lsh.write_segment(name, p, rows)
                expected.update((name, p, o, v) for o, _, _, v in rows)
                offset += count
    lsh.close()
    return expected


@settings(
    max_examples=PIPELINES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(
    topics=st.lists(topic_spec, min_size=TOPICS_PER_PIPELINE, max_size=TOPICS_PER_PIPELINE),
    max_poll_records=st.integers(1, 6),
    # Values are 5-8 bytes: None, or a byte target ending polls after 1 to ~8 records.
    max_poll_bytes=st.one_of(st.none(), st.integers(1, 60)),
    read_chunk=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def _output_equals_input_under_random_splits(
    topics: list[list[list[tuple[int, int]]]],
    max_poll_records: int,
    max_poll_bytes: int | None,
    read_chunk: int,
    seed: int,
) -> None:
    # Several reader calls per process() call, so splits also land between chunks.
    ReadPartitionsFn.read_chunk_records = read_chunk
    try:
        _check_one_pipeline(topics, max_poll_records, max_poll_bytes, seed)
    finally:
        ReadPartitionsFn.read_chunk_records = 1024


def _check_one_pipeline(
    topics: list[list[list[tuple[int, int]]]],
    max_poll_records: int,
    max_poll_bytes: int | None,
    seed: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        expected = _write(tmp, topics)
        read = ReadFromStreamHouse(
            [f"case{t}" for t in range(len(topics))],
            **urls(tmp),
            stop=StopPosition.latest(),
            max_poll_records=max_poll_records,
            max_poll_bytes=max_poll_bytes,
        )
        got = GATE.run(read, _Record(), random.Random(seed))
        missing = expected - got
        duplicated = got - expected
        assert not missing and not duplicated, (missing, duplicated)


def test_output_equals_input_under_random_splits() -> None:
    # Counted here, around the property run itself: a run that never split would prove nothing.
    before = GATE.splits
    _output_equals_input_under_random_splits()
    assert GATE.splits > before, "no split request was answered during the property run"
