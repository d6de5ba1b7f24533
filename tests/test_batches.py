"""``output="batches"``: Arrow batches per poll, built exactly, coded deterministically, and
read through FnApiRunner pipelines with exact offsets (also under runner splits).

The split cases run a handful of pipelines on the gRPC-embedded harness (about 20 s).
"""

from __future__ import annotations

import collections
import pathlib
import random
import tempfile
import typing
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.utils.timestamp import Timestamp

from streamhouse_beam import ReadFromStreamHouse, StopPosition, TopicPartition
from streamhouse_beam.beam import _batches as batches
from streamhouse_beam.beam._batches import (
    BATCH_SCHEMA,
    RecordBatchCoder,
    records_to_batch,
)
from streamhouse_beam.beam._claims import PartitionOffsets
from streamhouse_beam.beam._restriction import PartitionRestriction, PartitionRestrictionTracker
from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS
from tests.process_harness import claim_batch
from tests.read_helpers import Collect, local_streamhouse, new_sink, run, sink, urls
from tests.split_gate import SplitGate

U64 = 2**64 - 1
T0 = DEFAULT_CLOCK_START_MS
RECORDS = [
    (0, T0, b"k0", b"v0"),
    (1, T0 - 5, None, b""),
    (7, U64, b"", b"x" * 300),
    (U64, 0, b"\x00\xff", b"\x00"),
]


def _as_tuples(batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
    cols = [batch.column(name).to_pylist() for name in batch.schema.names]
    return list(zip(*cols, strict=True))


@pytest.mark.parametrize("force_python", [False, True])
def test_batch_holds_every_field_exactly_including_u64_extremes(
    force_python: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if force_python:
        monkeypatch.setattr(batches, "_records_to_columns_c", None)
    batch = records_to_batch("orders", 3, RECORDS)
    assert batch.schema == BATCH_SCHEMA
    assert batch.num_rows == 4
    assert _as_tuples(batch) == [("orders", 3, *r) for r in RECORDS]
    batch.validate(full=True)


def test_c_and_python_builders_make_equal_batches() -> None:
    if batches._records_to_columns_c is None:
        pytest.skip("the C accelerator is not built")
    rng = random.Random(7)
    records = [
        (i, rng.randrange(2**64), rng.choice([None, rng.randbytes(16)]), rng.randbytes(50))
        for i in range(500)
    ]
    fast = records_to_batch("t", 0, records)
    saved = batches._records_to_columns_c
    try:
        batches._records_to_columns_c = None
        slow = records_to_batch("t", 0, records)
    finally:
        batches._records_to_columns_c = saved
    assert fast.equals(slow)


def test_empty_batch_has_the_schema() -> None:
    batch = records_to_batch("t", 0, [])
    assert batch.num_rows == 0 and batch.schema == BATCH_SCHEMA


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="topic"):
        records_to_batch(b"t", 0, RECORDS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="partition"):
        records_to_batch("t", "0", RECORDS)  # type: ignore[arg-type]


def test_coder_round_trips_and_is_deterministic() -> None:
    coder = RecordBatchCoder()
    batch = records_to_batch("orders", 1, RECORDS)
    encoded = coder.encode(batch)
    assert coder.decode(encoded).equals(batch)
    assert coder.encode(records_to_batch("orders", 1, list(RECORDS))) == encoded
    assert coder.is_deterministic()
    assert isinstance(beam.coders.registry.get_coder(pa.RecordBatch), RecordBatchCoder)
    # A slice (non-zero array offsets) encodes like the same rows built directly.
    assert coder.encode(batch.slice(1, 2)) == coder.encode(
        records_to_batch("orders", 1, RECORDS[1:3])
    )


def test_claim_batch_claims_all_and_stamps_the_largest_timestamp() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction(0, 100))
    recs = [(o, T0 + (o % 5), None, b"v") for o in (3, 4, 9)]
    outputs, last, claimed, split = claim_batch(
        TopicPartition("t", 0), recs, PartitionOffsets(tracker)
    )
    assert (last, claimed, split) == (9, 3, False)
    (element,) = outputs
    assert element.value.column("offset").to_pylist() == [3, 4, 9]
    assert element.timestamp == Timestamp(micros=(T0 + 4) * 1000)


def test_claim_batch_after_a_split_emits_exactly_the_primary_records() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction(0, 100))
    assert tracker.try_claim(2)
    primary, _residual = tracker.try_split(0.05)  # type: ignore[misc]
    stop = primary.stop
    recs = [(o, T0, None, b"v") for o in range(3, 3 + 2 * stop, 2)]
    outputs, last, claimed, split = claim_batch(
        TopicPartition("t", 0), recs, PartitionOffsets(tracker)
    )
    expected = [r[0] for r in recs if r[0] < stop]
    assert split and claimed == len(expected)
    got = outputs[0].value.column("offset").to_pylist() if outputs else []
    assert got == expected and last == (expected[-1] if expected else None)
    tracker.check_done()  # same final state as per-record claims


@pytest.fixture()
def store(tmp_path: pathlib.Path) -> pathlib.Path:
    """Topic ``orders``: 3 partitions x 40 records in 9-record segments, a gap in partition 2."""
    lsh = local_streamhouse(tmp_path, segment_max_records=9)
    lsh.create_topic("orders", 3)
    for p in range(2):
        lsh.append("orders", p, [(f"k{i % 4}", f"o{p}-{i}") for i in range(40)], flush=True)
    rows = [(o, T0 + o, None, b"o2-%d" % o) for o in [*range(10), *range(30, 60)]]
    lsh.write_segment("orders", 2, rows[:10])
    lsh.write_segment("orders", 2, rows[10:])
    lsh.close()
    return tmp_path


def _read_batches(store: pathlib.Path, **kwargs: Any) -> list[pa.RecordBatch]:
    name = new_sink()
    run(
        lambda p: (
            p
            | ReadFromStreamHouse(
                "orders", **urls(store), stop=StopPosition.latest(), output="batches", **kwargs
            )
            | beam.ParDo(Collect(name))
        )
    )
    return sink(name)


def test_batches_pipeline_reads_every_offset_once_in_polls(store: pathlib.Path) -> None:
    got = _read_batches(store, max_poll_records=16)
    assert all(isinstance(b, pa.RecordBatch) and 0 < b.num_rows <= 16 for b in got)
    assert sum(b.num_rows for b in got) == 120
    rows = sorted(r for b in got for r in _as_tuples(b))
    expected_offsets = [(p, o) for p in range(2) for o in range(40)] + [
        (2, o) for o in [*range(10), *range(30, 60)]
    ]
    assert [(r[1], r[2]) for r in rows] == sorted(expected_offsets)
    assert rows[0] == ("orders", 0, 0, T0, b"k0", b"o0-0")
    for b in got:  # one partition per batch, offsets increasing
        assert len(set(b.column("partition").to_pylist())) == 1
        offsets = b.column("offset").to_pylist()
        assert offsets == sorted(offsets)


def test_batches_commit_the_next_offset_like_records(store: pathlib.Path) -> None:
    _read_batches(store, max_poll_records=7, commit_offsets_group="g")
    metadata = open_metadata(f"sqlite:///{store}/metadata.db")
    committed = {p: metadata.committed_offset("g", "orders", p) for p in range(3)}
    assert committed == {0: 40, 1: 40, 2: 60}


class _RowsPerBatch(beam.DoFn):  # type: ignore[misc]
    """A batched DoFn: Beam hands it lists of RecordBatch elements.

    The batch types are returned explicitly because postponed annotations (``from __future__
    import annotations``) reach Beam as strings.
    """

    def get_input_batch_type(self, input_element_type: Any) -> Any:
        return typing.List[pa.RecordBatch]  # noqa: UP006

    def get_output_batch_type(self, input_element_type: Any) -> Any:
        return typing.List[int]  # noqa: UP006

    def infer_output_type(self, input_type: Any) -> Any:
        return int

    def process_batch(self, batch: list[pa.RecordBatch]) -> Iterator[list[int]]:
        yield [b.num_rows for b in batch]


def test_batches_feed_a_downstream_batched_dofn(store: pathlib.Path) -> None:
    name = new_sink()
    run(
        lambda p: (
            p
            | ReadFromStreamHouse(
                "orders", **urls(store), stop=StopPosition.latest(), output="batches"
            )
            | beam.ParDo(_RowsPerBatch()).with_output_types(int)
            | beam.CombineGlobally(sum)
            | beam.ParDo(Collect(name))
        )
    )
    assert sink(name) == [120]


def test_batches_refuse_a_value_decoder(store: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="batches"):
        ReadFromStreamHouse("orders", **urls(store), output="batches", value_decoder="json")


# ------------------------------------------------------------------ exact under runner splits


GATE = SplitGate()


class _Gated(beam.DoFn):  # type: ignore[misc]
    def process(self, batch: pa.RecordBatch) -> None:
        parts = batch.column("partition").to_pylist()
        GATE.passed(zip(parts, batch.column("offset").to_pylist(), strict=True))


@pytest.mark.slow  # pipelines on the gRPC-embedded harness, ~4 s each on 2 cores
@pytest.mark.parametrize("limit", ["records", "bytes"])
def test_batches_stay_exact_under_runner_splits(limit: str) -> None:
    # The splits are counted around these cases, not by a test that has to run after them.
    before = GATE.splits
    for seed in range(4 if limit == "records" else 2):
        _check_batches_under_runner_splits(seed, limit)
    assert GATE.splits > before, "no split request was answered: the cases proved nothing"


def _check_batches_under_runner_splits(seed: int, limit: str) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        lsh = local_streamhouse(tmp, segment_max_records=rng.randint(3, 9))
        lsh.create_topic("orders", 3)
        expected: collections.Counter[tuple[int, int]] = collections.Counter()
        for p in range(3):
            count = rng.randint(0, 60)
            lsh.append("orders", p, [f"v{i}" for i in range(count)], flush=True)
            expected.update((p, o) for o in range(count))
        lsh.close()
        read = ReadFromStreamHouse(
            "orders",
            **urls(tmp),
            stop=StopPosition.latest(),
            output="batches",
            # Values are 2-3 bytes: a byte target of 4-36 makes polls of 2-12 records.
            **(
                {"max_poll_records": rng.randint(2, 12)}
                if limit == "records"
                else {"max_poll_bytes": rng.randint(4, 36)}
            ),
        )
        got = GATE.run(read, _Gated(), rng)
        assert got == expected, (seed, expected - got, got - expected)
