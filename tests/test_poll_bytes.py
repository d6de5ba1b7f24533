"""Polls sized by bytes (``max_poll_bytes``): the reader's byte budget, the defaults by output,
validation, and the DoFn's poll loop in every output and with both limits.

A poll ends with the first record whose key and value bytes make the poll's reach the budget
(so it always reads at least one record and exceeds the budget by less than that record); with
neither ``max_poll_records`` nor ``max_poll_bytes``, batches fill up to
``DEFAULT_MAX_POLL_BYTES`` and the other outputs keep their ``DEFAULT_MAX_POLL_RECORDS`` records.
"""

from __future__ import annotations

import pathlib
import random
from typing import Any

import pyarrow as pa
import pytest

from streamhouse_beam import ReadAllFromStreamHouse, ReadFromStreamHouse, StopPosition
from streamhouse_beam.beam._batches import records_to_batch
from streamhouse_beam.beam._descriptors import PartitionDescriptor
from streamhouse_beam.beam._read_fn import ReadPartitionsFn
from streamhouse_beam.beam._restriction import PartitionRestriction
from streamhouse_beam.cache import SegmentCache
from streamhouse_beam.partition_reader import PartitionReader
from streamhouse_beam.settings import (
    DEFAULT_MAX_POLL_BYTES,
    DEFAULT_MAX_POLL_RECORDS,
    PollSettings,
)
from streamhouse_beam.storage.base import ObjectStore
from tests import partition_layouts
from tests.partition_layouts import Rec, gapped_partition, make_lsh, rec
from tests.process_harness import Harness
from tests.read_helpers import local_streamhouse, read_all, urls

store = partition_layouts.store  # the file:// and memory:// fixture, by its name


def _size(record: Rec) -> int:
    return len(record[3]) + len(record[2] or b"")


def _payload_of(batch: pa.RecordBatch) -> list[int]:
    """Key and value bytes of each record of ``batch``."""
    keys = batch.column("key").to_pylist()
    values = batch.column("value").to_pylist()
    return [len(v) + len(k or b"") for k, v in zip(keys, values, strict=True)]


def _expected_poll(records: list[Rec], max_records: int, max_bytes: int) -> list[Rec]:
    """The records a poll of ``records`` (those in range, in order) must return."""
    out: list[Rec] = []
    total = 0
    for r in records:
        if len(out) == max_records or total >= max_bytes:
            break
        out.append(r)
        total += _size(r)
    return out


# ------------------------------------------------------------------------- the reader


@pytest.mark.parametrize("block_size_target", [None, 300])
def test_reader_ends_a_read_with_the_record_that_reaches_the_byte_budget(
    tmp_path: pathlib.Path, store: ObjectStore, block_size_target: int | None
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=block_size_target)
    everything = gapped_partition(lsh)  # holes, compaction, multi-block segments
    rows = PartitionReader(lsh.metadata(), lsh.store, SegmentCache(64 << 20), "t", 0)
    cols = PartitionReader(lsh.metadata(), lsh.store, SegmentCache(64 << 20), "t", 0)
    rng = random.Random(7)
    for _ in range(300):
        start = rng.randrange(0, 402)
        stop = rng.choice([None, rng.randrange(start, 420)])
        max_records = rng.choice([1, 3, 50, 10_000])
        max_bytes = rng.choice([1, 59, 60, 61, 121, 500, 3000, 100_000])
        in_range = [r for r in everything if r[0] >= start and (stop is None or r[0] < stop)]
        expected = _expected_poll(in_range, max_records, max_bytes)
        got = rows.read(start, stop, max_records, max_bytes)
        assert got.records == expected, (start, stop, max_records, max_bytes)
        assert got.bytes_read == sum(map(_size, expected))
        batch = cols.read_columns(start, stop, max_records, max_bytes)
        assert batch.records.equals(records_to_batch("t", 0, expected))
        assert (batch.next_offset, batch.bytes_read) == (got.next_offset, got.bytes_read)
        if len(expected) < len(in_range):
            # Cut by a limit: the next read starts after the last record returned, skipping
            # no record.
            last = expected[-1][0]
            assert got.next_offset > last
            assert not [r for r in in_range if last < r[0] < got.next_offset]


@pytest.mark.parametrize("max_bytes", [1, 100, 777, 5000])
def test_byte_bounded_reads_concatenate_to_the_whole_partition(
    tmp_path: pathlib.Path, store: ObjectStore, max_bytes: int
) -> None:
    lsh = make_lsh(tmp_path, store, block_size_target=300)
    everything = gapped_partition(lsh)
    reader = PartitionReader(lsh.metadata(), lsh.store, SegmentCache(64 << 20), "t", 0)
    out: list[Rec] = []
    cur = 0
    while cur < reader.readable_end():
        batch = reader.read_columns(cur, None, 10_000, max_bytes)
        sizes = _payload_of(batch.records)
        assert sizes, "a byte-bounded read returns at least one record"
        assert sum(sizes) == batch.bytes_read
        if batch.next_offset < reader.readable_end():
            assert sum(sizes) >= max_bytes > sum(sizes) - sizes[-1]
        out += [r for r in everything if cur <= r[0] < batch.next_offset]
        assert len(out) == sum(1 for r in everything if r[0] < batch.next_offset)
        cur = batch.next_offset
    assert out == everything


@pytest.mark.parametrize("bad", [0, -1])
def test_reader_refuses_a_byte_budget_below_one(
    tmp_path: pathlib.Path, store: ObjectStore, bad: int
) -> None:
    lsh = make_lsh(tmp_path, store)
    gapped_partition(lsh)
    reader = PartitionReader(lsh.metadata(), lsh.store, SegmentCache(1 << 20), "t", 0)
    with pytest.raises(ValueError, match="max_bytes"):
        reader.read(0, None, 10, bad)
    with pytest.raises(ValueError, match="max_bytes"):
        reader.read_columns(0, None, 10, bad)


# ------------------------------------------------------------------- options and defaults


def poll_limits(output: str, records: int | None, nbytes: int | None) -> tuple[Any, Any]:
    return PollSettings(max_poll_records=records, max_poll_bytes=nbytes).limits(output)


def test_defaults_depend_on_the_output() -> None:
    assert poll_limits("batches", None, None) == (None, DEFAULT_MAX_POLL_BYTES)
    for output in ("records", "rows", "kv"):
        assert poll_limits(output, None, None) == (DEFAULT_MAX_POLL_RECORDS, None)
    # Anything given applies as given, in every output: no default is added to it.
    assert poll_limits("batches", 7, None) == (7, None)
    assert poll_limits("records", None, 4096) == (None, 4096)
    assert poll_limits("batches", 7, 4096) == (7, 4096)
    assert 1 << 20 <= DEFAULT_MAX_POLL_BYTES <= 64 << 20  # "a few MB"


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-5, ValueError), ("1MB", TypeError), (1.5, TypeError), (True, TypeError)],
)
def test_max_poll_bytes_is_validated_when_the_transform_is_built(
    tmp_path: pathlib.Path, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="max_poll_bytes"):
        ReadFromStreamHouse("t", **urls(tmp_path), max_poll_bytes=value)  # type: ignore[arg-type]
    with pytest.raises(error, match="max_poll_bytes"):
        ReadAllFromStreamHouse(**urls(tmp_path), max_poll_bytes=value)
    with pytest.raises(error, match="max_poll_records"):
        ReadFromStreamHouse("t", **urls(tmp_path), max_poll_records=value)  # type: ignore[arg-type]


def test_both_transforms_resolve_the_same_limits(tmp_path: pathlib.Path) -> None:
    for output in ("records", "batches"):
        for given in ({}, {"max_poll_records": 9}, {"max_poll_bytes": 99}):
            one = ReadFromStreamHouse("t", **urls(tmp_path), output=output, **given).config
            many = ReadAllFromStreamHouse(**urls(tmp_path), output=output, **given).config
            expected = poll_limits(
                output, given.get("max_poll_records"), given.get("max_poll_bytes")
            )
            assert (one.max_poll_records, one.max_poll_bytes) == expected
            assert (many.max_poll_records, many.max_poll_bytes) == expected
    shown = ReadFromStreamHouse("t", **urls(tmp_path), output="batches").display_data()
    assert shown["max_poll_bytes"] == DEFAULT_MAX_POLL_BYTES
    assert shown["max_poll_records"] == "(no limit)"


# ------------------------------------------------------------------------ the poll loop


def _offsets(out: list[Any]) -> list[int]:
    offsets: list[int] = []
    for o in out:
        value = o.value
        if isinstance(value, pa.RecordBatch):
            offsets += value.column("offset").to_pylist()
        else:
            offsets.append(value.offset)
    return offsets


def _payload(out: list[Any]) -> list[int]:
    """Key and value bytes of each output record, in order."""
    sizes: list[int] = []
    for o in out:
        value = o.value
        if isinstance(value, pa.RecordBatch):
            sizes += _payload_of(value)
        else:
            sizes.append(len(value.value) + len(value.key or b""))
    return sizes


@pytest.fixture()
def big(tmp_path: pathlib.Path) -> pathlib.Path:
    """One partition of 200 records of 100 KiB (20 MB, past the 8 MiB default)."""
    lsh = local_streamhouse(tmp_path, segment_max_records=64)
    lsh.create_topic("t", 1)
    lsh.write_segment("t", 0, [rec(o, size=100 << 10) for o in range(0, 64)])
    lsh.write_segment("t", 0, [rec(o, size=100 << 10) for o in range(64, 200)])
    return tmp_path


def test_default_batches_fill_each_poll_up_to_the_byte_target(big: pathlib.Path) -> None:
    h = Harness(big, output="batches", stop=StopPosition.latest())
    element = PartitionDescriptor("t", 0, stop=StopPosition.latest())
    restriction, wm = h.start(element)
    offsets: list[int] = []
    polls = []
    while restriction is not None:
        out, tracker, estimator, _ = h.call(element, restriction, wm)
        assert len(out) == 1  # one batch per poll
        sizes = _payload(out)
        polls.append(sum(sizes))
        offsets += _offsets(out)
        status = tracker.deferred_status()
        if status is None:
            break
        restriction = status[0]
        assert restriction == PartitionRestriction(offsets[-1] + 1, 200)
        # Every poll but the last reached the target, with its last record and not before.
        assert sum(sizes) >= DEFAULT_MAX_POLL_BYTES > sum(sizes) - sizes[-1]
        wm = estimator.get_estimator_state()
    assert offsets == list(range(200))
    assert len(polls) == 3  # 20 MB in polls of 8 MiB


def test_records_keep_their_record_budget_whatever_the_bytes(big: pathlib.Path) -> None:
    # 150 records of 100 KiB: far past the batches' byte target, which records do not get.
    for kwargs in ({"max_poll_records": 150}, {}):
        h = Harness(big, stop=StopPosition.latest(), **kwargs)
        element = PartitionDescriptor("t", 0, stop=StopPosition.latest())
        out, _, _, _ = h.call(element, *h.start(element))
        want = kwargs.get("max_poll_records", min(DEFAULT_MAX_POLL_RECORDS, 200))
        assert _offsets(out) == list(range(want))
    h = Harness(big, output="batches", max_poll_records=150, stop=StopPosition.latest())
    out, _, _, _ = h.call(element, *h.start(element))
    assert _offsets(out) == list(range(150))  # a given max_poll_records alone: no byte limit


@pytest.fixture()
def small(tmp_path: pathlib.Path) -> pathlib.Path:
    """One partition of 40 records of 10 bytes, keyless, in segments of 6."""
    lsh = local_streamhouse(tmp_path, segment_max_records=6)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"%010d" % i for i in range(40)], flush=True)
    return tmp_path


@pytest.mark.parametrize("output", ["records", "rows", "kv", "batches"])
@pytest.mark.parametrize(
    ("limits", "per_poll"),
    [
        ({"max_poll_bytes": 1}, 1),
        ({"max_poll_bytes": 25}, 3),  # 30 bytes reach 25
        ({"max_poll_bytes": 30}, 3),
        ({"max_poll_bytes": 31}, 4),
        ({"max_poll_bytes": 25, "max_poll_records": 2}, 2),  # records first
        ({"max_poll_bytes": 25, "max_poll_records": 7}, 3),  # bytes first
    ],
)
def test_every_output_polls_up_to_the_first_limit_reached(
    small: pathlib.Path,
    output: str,
    limits: dict[str, int],
    per_poll: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reader calls of 2 records, so the per-record outputs reach the budget across calls.
    monkeypatch.setattr(ReadPartitionsFn, "read_chunk_records", 2)
    h = Harness(small, output=output, stop=StopPosition.latest(), **limits)
    element = PartitionDescriptor("t", 0, stop=StopPosition.latest())
    restriction, wm = h.start(element)
    seen: list[int] = []
    while True:
        out, tracker, estimator, _ = h.call(element, restriction, wm)
        # kv outputs carry no offset: each value is its offset, zero-padded.
        got = [int(o.value[1]) for o in out] if output == "kv" else _offsets(out)
        assert len(got) == min(per_poll, 40 - len(seen))
        seen += got
        status = tracker.deferred_status()
        if status is None:
            break
        restriction, wm = status[0], estimator.get_estimator_state()
    assert seen == list(range(40))


@pytest.mark.parametrize("output", ["records", "batches"])
def test_pipeline_reads_every_record_once_with_a_byte_target(
    tmp_path: pathlib.Path, output: str
) -> None:
    lsh = local_streamhouse(tmp_path, segment_max_records=5)
    lsh.create_topic("t", 3)
    for p in range(3):
        lsh.append("t", p, [b"x" * (1 + (7 * i) % 23) for i in range(31 + p)], flush=True)
    read = ReadFromStreamHouse(
        "t", **urls(tmp_path), stop=StopPosition.latest(), output=output, max_poll_bytes=40
    )
    got = read_all(read)
    if output == "batches":
        pairs = []
        for b in got:
            partitions, offsets = b.column("partition").to_pylist(), b.column("offset").to_pylist()
            pairs += zip(partitions, offsets, strict=True)
            sizes = _payload_of(b)
            assert sum(sizes) - sizes[-1] < 40  # no batch goes on past the target
    else:
        pairs = [(r.partition, r.offset) for r in got]
    assert sorted(pairs) == [(p, o) for p in range(3) for o in range(31 + p)]
