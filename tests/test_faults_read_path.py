"""Object-store faults under the partition reader: nothing lost, nothing duplicated, nothing
damaged ever decoded as data.

The store is a :class:`~streamhouse_beam.testing.faulty_store.FaultyStore` over an in-memory
store, so each fault is exact and reproducible: transient failures (retried by the store),
bodies cut short or with a flipped byte (caught by the segment checks and re-fetched once),
and segment objects deleted while the partition is being read.
"""

from __future__ import annotations

import logging
import pathlib
import uuid
from collections.abc import Iterator

import pytest

from streamhouse_beam.cache import SegmentCache
from streamhouse_beam.errors import (
    ChecksumMismatchError,
    CorruptSegmentError,
    DataLossError,
    SegmentError,
)
from streamhouse_beam.partition_reader import PartitionReader, ReadOptions
from streamhouse_beam.records import SegmentInfo
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.faulty_store import DATA_FAULTS, TRANSIENT_FAULTS, FaultyStore
from streamhouse_beam.testing.local import LocalStreamHouse

TOPIC = "events"
RECORDS = 120
PER_SEGMENT = 20  # six segments: 0..19, 20..39, ..., 100..119


@pytest.fixture
def house(tmp_path: pathlib.Path) -> Iterator[LocalStreamHouse]:
    store = MemoryStore(f"faults-{uuid.uuid4().hex[:12]}")
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db", store, segment_max_records=PER_SEGMENT
    ) as lsh:
        lsh.create_schema()
        lsh.create_topic(TOPIC, partitions=1)
        lsh.append(TOPIC, 0, [(f"k{i}", f"value-{i}") for i in range(RECORDS)], flush=True)
        yield lsh


def _segments(house: LocalStreamHouse) -> list[SegmentInfo]:
    return house.segments(TOPIC, 0)


def _reader(
    house: LocalStreamHouse, store: FaultyStore, prefetch_workers: int = 0, **options: object
) -> tuple[PartitionReader, SegmentCache]:
    cache = SegmentCache(16 * 1024 * 1024, prefetch_workers=prefetch_workers)
    reader = PartitionReader(
        house.metadata(),
        store,
        cache,
        TOPIC,
        0,
        ReadOptions(**options),  # type: ignore[arg-type]
    )
    return reader, cache


def _read_all(
    reader: PartitionReader, batch: int = 7
) -> tuple[list[int], list[bytes], list[tuple[int, int]]]:
    offsets: list[int] = []
    values: list[bytes] = []
    lost: list[tuple[int, int]] = []
    cur = 0
    # Bounded: every call must make progress, so this many calls always suffice.
    for _ in range(RECORDS + 50):
        got = reader.read(cur, None, batch)
        offsets += [r[0] for r in got.records]
        values += [r[3] for r in got.records]
        lost += got.lost_ranges
        assert got.next_offset > cur or got.next_offset == got.readable_end
        cur = got.next_offset
        if cur >= got.readable_end:
            return offsets, values, lost
    raise AssertionError("the read made no progress")


def _expected_values(offsets: list[int]) -> list[bytes]:
    return [f"value-{o}".encode() for o in offsets]


# --------------------------------------------------------------------------------------------
# Transient failures
# --------------------------------------------------------------------------------------------


# With prefetch threads the faults also hit background downloads, which must neither lose nor
# duplicate anything.
PREFETCH = pytest.mark.parametrize("prefetch_workers", [0, 4], ids=["no-prefetch", "prefetch"])


@PREFETCH
def test_thirty_percent_transient_failures_read_exactly_once(
    house: LocalStreamHouse, prefetch_workers: int
) -> None:
    store = FaultyStore(house.store, failure_rate=0.3, faults=TRANSIENT_FAULTS, seed=30)
    reader, cache = _reader(house, store, prefetch_workers)
    offsets, values, lost = _read_all(reader)
    assert offsets == list(range(RECORDS))
    assert values == _expected_values(offsets)
    assert lost == []
    stats = store.stats()
    assert stats["injected"] > 0
    assert store.retry_count == stats["injected"]
    reader.close()
    cache.close()


# --------------------------------------------------------------------------------------------
# Damaged bodies: re-fetched once, then named corruption
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", DATA_FAULTS)
def test_one_damaged_body_is_refetched_and_the_output_is_exact(
    house: LocalStreamHouse, fault: str
) -> None:
    store = FaultyStore(house.store)
    victim = _segments(house)[2].key
    if fault == "truncate":
        store.truncate_next(victim)
    else:
        store.corrupt_next(victim)
    reader, cache = _reader(house, store)
    offsets, values, _ = _read_all(reader)
    assert offsets == list(range(RECORDS))
    assert values == _expected_values(offsets)
    assert store.reads_of(victim) == 2  # the damaged body and one re-fetch
    reader.close()
    cache.close()


@pytest.mark.parametrize(
    ("fault", "error"), [("truncate", CorruptSegmentError), ("corrupt", CorruptSegmentError)]
)
def test_a_body_damaged_twice_is_reported_as_corruption_naming_the_key(
    house: LocalStreamHouse, fault: str, error: type[SegmentError]
) -> None:
    store = FaultyStore(house.store)
    victim = _segments(house)[2]
    (store.truncate_next if fault == "truncate" else store.corrupt_next)(victim.key, times=2)
    reader, cache = _reader(house, store)
    delivered: list[int] = []
    with pytest.raises(error) as info:
        cur = 0
        while True:
            got = reader.read(cur, None, 7)
            delivered += [r[0] for r in got.records]
            cur = got.next_offset
    assert info.value.key == victim.key
    assert victim.key in str(info.value)
    # Nothing of the damaged segment was ever handed out as data (the failing call returns
    # nothing at all, so the last batch before it may end short of the segment).
    assert delivered == list(range(len(delivered)))
    assert len(delivered) <= victim.base_offset
    assert store.reads_of(victim.key) == 2
    reader.close()
    cache.close()


def test_a_flipped_byte_inside_the_blocks_is_a_checksum_mismatch_naming_the_key(
    house: LocalStreamHouse,
) -> None:
    victim = _segments(house)[0]
    damaged = bytearray(house.store.get(victim.key))
    damaged[70] ^= 0x10  # inside block 0, just past the 64-byte header
    house.store.put(victim.key, bytes(damaged))
    store = FaultyStore(house.store)
    reader, cache = _reader(house, store)
    with pytest.raises(ChecksumMismatchError) as info:
        reader.read(0, None, 5)
    assert info.value.key == victim.key
    assert victim.key in str(info.value)
    assert store.reads_of(victim.key) == 2  # fetched once more before giving up
    reader.close()
    cache.close()


# --------------------------------------------------------------------------------------------
# A segment object deleted while the partition is being read
# --------------------------------------------------------------------------------------------


@PREFETCH
def test_segment_deleted_mid_read_fails_naming_topic_partition_and_range(
    house: LocalStreamHouse, prefetch_workers: int
) -> None:
    segments = _segments(house)
    store = FaultyStore(house.store)
    store.delete_when_read(segments[1].key, segments[3].key, bucket=segments[3].bucket)
    reader, cache = _reader(house, store, prefetch_workers)
    delivered: list[int] = []
    with pytest.raises(DataLossError) as info:
        cur = 0
        while True:
            got = reader.read(cur, None, 7)
            delivered += [r[0] for r in got.records]
            cur = got.next_offset
    err = info.value
    assert (err.topic, err.partition) == (TOPIC, 0)
    assert (err.start_offset, err.end_offset) == (segments[3].base_offset, segments[3].end_offset)
    assert f"{err.start_offset}..{err.end_offset}" in str(err)
    assert delivered == list(range(len(delivered)))
    assert len(delivered) <= segments[3].base_offset
    reader.close()
    cache.close()


@PREFETCH
def test_skip_policy_skips_the_lost_range_reports_it_and_logs_once(
    house: LocalStreamHouse, caplog: pytest.LogCaptureFixture, prefetch_workers: int
) -> None:
    segments = _segments(house)
    lost_seg = segments[3]
    store = FaultyStore(house.store)
    store.delete_when_read(segments[1].key, lost_seg.key, bucket=lost_seg.bucket)
    reader, cache = _reader(house, store, prefetch_workers, on_missing_segment="skip")
    caplog.set_level(logging.WARNING, logger="streamhouse_beam")
    offsets, values, lost = _read_all(reader)
    expected = [o for o in range(RECORDS) if not lost_seg.contains(o)]
    assert offsets == expected
    assert values == _expected_values(expected)
    assert lost == [(lost_seg.base_offset, lost_seg.end_offset)]
    # Reading the range again (a retried bundle) reports it again but does not log again.
    again = reader.read(lost_seg.base_offset, lost_seg.end_offset + 1, 100)
    assert again.records == [] and again.lost_ranges == [
        (lost_seg.base_offset, lost_seg.end_offset)
    ]
    mentions = [r for r in caplog.records if lost_seg.key in r.getMessage()]
    assert len(mentions) == 1
    assert f"{lost_seg.base_offset}..{lost_seg.end_offset}" in mentions[0].getMessage()
    reader.close()
    cache.close()


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_random_damage_is_never_decoded_as_data(tmp_path: pathlib.Path, compression: str) -> None:
    """100 seeded runs with 40% of reads damaged (half cut short, half with a flipped byte):
    each run reads exact data or stops with corruption naming the key — never wrong values."""
    store = MemoryStore(f"damage-{uuid.uuid4().hex[:12]}")
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db",
        store,
        segment_max_records=PER_SEGMENT,
        compression=compression,
    ) as lsh:
        lsh.create_schema()
        lsh.create_topic(TOPIC, partitions=1)
        lsh.append(TOPIC, 0, [(f"k{i}", f"value-{i}") for i in range(RECORDS)], flush=True)
        keys = {s.key for s in lsh.segments(TOPIC, 0)}
        outcomes = {"exact": 0, "corruption": 0}
        for seed in range(100):
            faulty = FaultyStore(store, failure_rate=0.4, faults=DATA_FAULTS, seed=seed)
            reader, cache = _reader(lsh, faulty)
            try:
                offsets, values, _ = _read_all(reader, batch=25)
            except CorruptSegmentError as exc:
                assert exc.key in keys
                outcomes["corruption"] += 1
            else:
                assert offsets == list(range(RECORDS))
                assert values == _expected_values(offsets)
                outcomes["exact"] += 1
            finally:
                reader.close()
                cache.close()
    # Both outcomes occur, so the sweep exercised the re-fetch and the reporting paths.
    assert outcomes["exact"] > 0 and outcomes["corruption"] > 0
