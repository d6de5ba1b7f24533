"""Hostile and corrupt input on the whole read path.

* Names with SQL metacharacters (topics, organization ids, group ids) are data, never syntax:
  they find exactly their own rows, match nothing by wildcard, and leave the schema intact.
* Object keys from metadata rows can never make a store read outside its root.
* Metadata rows that contradict each other or their objects (overlaps, ``end < base``, a
  segment whose header disagrees with its row, offsets beyond the high watermark) end in a
  named error or the documented resolution — bounded in memory and time, never a hang and
  never a bare ValueError/IndexError/struct.error.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import string
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import examples
from streamhouse_beam.cache import SegmentCache
from streamhouse_beam.errors import (
    OrganizationError,
    StreamHouseError,
    TopicNotFoundError,
    UnsafeKeyError,
)
from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.partition_reader import MissingPolicy, PartitionReader, ReadOptions
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.storage.local import LocalFileStore
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import LocalStreamHouse

HOSTILE_NAMES = [
    "x'; DROP TABLE segments; --",
    "a' OR '1'='1",
    'quote"d',
    "%",
    "_",
    "a%b_c",
    "back\\slash",
    "semi;colon",
    "-- comment",
    "/* c */",
    "..",
    "../../etc",
    "/abs/olute",
    "événements",
    "名前",
    "tab\tand\nnewline",
    "emoji 🚀",
    "?",
    "$1",
    ":name",
]


@pytest.fixture
def house(tmp_path: pathlib.Path) -> Iterator[LocalStreamHouse]:
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db", LocalFileStore(tmp_path / "segments")
    ) as lsh:
        lsh.create_schema()
        lsh.create_topic("plain", partitions=1)
        lsh.append("plain", 0, [b"plain-0", b"plain-1"], flush=True)
        yield lsh


def _tables(house: LocalStreamHouse) -> set[str]:
    path = house.metadata_url.removeprefix("sqlite://")
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


# --------------------------------------------------------------------------------------------
# SQL metacharacters never change a query
# --------------------------------------------------------------------------------------------


def test_hostile_topic_names_find_exactly_their_own_rows(house: LocalStreamHouse) -> None:
    tables_before = _tables(house)
    for i, name in enumerate(HOSTILE_NAMES):
        house.create_topic(name, partitions=1)
        house.append(name, 0, [f"{i}-a".encode(), f"{i}-b".encode()], flush=True)
    store = house.metadata()
    assert sorted(t.name for t in store.list_topics()) == sorted([*HOSTILE_NAMES, "plain"])
    for name in HOSTILE_NAMES:
        segments = store.segments(name, 0)
        assert len(segments) == 1, name
        assert segments[0].topic == name
        assert segments[0].id == f"{name}-0-0"
        assert store.partition(name, 0).high_watermark == 2
        assert store.get_topic(name).name == name
    assert _tables(house) == tables_before
    store.close()


@pytest.mark.parametrize("pattern", ["%", "_", "pl%", "pla_n", "' OR ''='", "plain' --"])
def test_wildcards_and_injections_match_no_other_topic(
    house: LocalStreamHouse, pattern: str
) -> None:
    store = house.metadata()
    with pytest.raises(TopicNotFoundError):
        store.get_topic(pattern)
    assert store.segments(pattern, 0) == []
    assert store.committed_offset(pattern, "plain", 0) is None
    store.close()


def test_hostile_group_ids_commit_and_read_only_their_own_offset(
    house: LocalStreamHouse,
) -> None:
    store = house.metadata()
    tp = TopicPartition("plain", 0)
    store.commit_offsets("honest", {tp: 1})
    for i, group in enumerate(HOSTILE_NAMES):
        store.commit_offsets(group, {tp: 100 + i}, metadata=group)
    assert store.committed_offset("honest", "plain", 0) == 1
    for i, group in enumerate(HOSTILE_NAMES):
        assert store.committed_offset(group, "plain", 0) == 100 + i, group
    assert store.committed_offset("%", "plain", 0) == 100 + HOSTILE_NAMES.index("%")
    assert store.committed_offset("hon%", "plain", 0) is None
    store.close()


@pytest.mark.parametrize("org", ["x' OR '1'='1", "%", "'; DELETE FROM topics; --", "default' --"])
def test_hostile_organization_ids_see_nothing_of_other_organizations(
    house: LocalStreamHouse, org: str
) -> None:
    tables_before = _tables(house)
    store = open_metadata(house.metadata_url, org)
    with pytest.raises((OrganizationError, TopicNotFoundError)):
        store.get_topic("plain")
    # The store may refuse an unknown organization outright: also fine.
    with contextlib.suppress(OrganizationError):
        assert store.list_topics() == []
    store.close()
    assert _tables(house) == tables_before
    assert [t.name for t in house.metadata().list_topics()] == ["plain"]


_NAME_ALPHABET = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\x00"
) | st.sampled_from(list("'\";%_\\-/*.?$:` ") + list(string.whitespace))


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.text(_NAME_ALPHABET, min_size=1, max_size=24))
def test_any_topic_name_round_trips_through_metadata(house: LocalStreamHouse, name: str) -> None:
    store = house.metadata()
    if name != "plain" and name not in {t.name for t in store.list_topics()}:
        house.create_topic(name, partitions=1)
        house.append(name, 0, [name.encode("utf-8", "surrogatepass")], flush=True)
    segments = store.segments(name, 0)
    assert [s.topic for s in segments] == [name] * len(segments)
    assert len(store.segments("plain", 0)) == 1
    store.close()


# --------------------------------------------------------------------------------------------
# Keys never escape the store root
# --------------------------------------------------------------------------------------------


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    parts=st.lists(
        st.sampled_from(["..", ".", "", "/", "\\", "~", "%2E%2E", "..\\..", "etc", "passwd", "a"])
        | st.text(min_size=1, max_size=6),
        min_size=1,
        max_size=8,
    )
)
def test_no_key_resolves_outside_the_local_root(tmp_path: pathlib.Path, parts: list[str]) -> None:
    store = LocalFileStore(tmp_path / "root")
    key = "/".join(parts)
    try:
        path = store.path_for(key)
    except UnsafeKeyError:
        return
    root = (tmp_path / "root").resolve()
    assert path.resolve().is_relative_to(root)


def test_memory_store_refuses_empty_normalised_keys() -> None:
    store = MemoryStore("hostile")
    for key in ("", "/", "//"):
        with pytest.raises(UnsafeKeyError):
            store.get(key)


# --------------------------------------------------------------------------------------------
# Fuzzing the whole read path: metadata rows that lie, objects that are damaged or gone
# --------------------------------------------------------------------------------------------

_FUZZ_TOPIC = "fuzz"
# Ranges a reader may have to skip through: a lying high watermark or end_offset of this size
# must be crossed in O(1) steps, not offset by offset.
_HUGE = 2**50


@st.composite
def _partition_plans(draw: st.DrawFn) -> tuple[list[list[int]], list[tuple[Any, ...]]]:
    """Segments as lists of offsets (with gaps), then a list of mutations to apply."""
    segments: list[list[int]] = []
    cur = draw(st.integers(0, 5))
    for _ in range(draw(st.integers(1, 5))):
        size = draw(st.integers(1, 12))
        offsets = []
        for _ in range(size):
            offsets.append(cur)
            cur += draw(st.sampled_from([1, 1, 1, 2, 5]))
        segments.append(offsets)
        cur += draw(st.sampled_from([0, 0, 3]))
    n = len(segments)
    idx = st.integers(0, n - 1)
    offset = st.integers(-3, cur + 5) | st.sampled_from([_HUGE, 2**63 - 1])
    mutation = st.one_of(
        st.tuples(st.just("row_range"), idx, offset, offset),
        st.tuples(st.just("dup_row"), idx, offset, offset, st.booleans()),
        st.tuples(st.just("swap_key"), idx, idx),
        st.tuples(st.just("delete_object"), idx),
        st.tuples(st.just("flip_byte"), idx, st.integers(0, 10_000), st.integers(1, 255)),
        st.tuples(st.just("truncate_object"), idx, st.integers(0, 400)),
        st.tuples(st.just("size_bytes"), idx, st.sampled_from([0, 1, 2**40, -1])),
        st.tuples(st.just("record_count"), idx, st.sampled_from([0, 2**31, -7])),
        st.tuples(st.just("high_watermark"), st.sampled_from([0, 3, cur, cur + 40, _HUGE])),
        st.tuples(st.just("delete_row"), idx),
    )
    return segments, draw(st.lists(mutation, max_size=4))


def _apply(
    house: LocalStreamHouse, db: sqlite3.Connection, rows: list[str], m: tuple[Any, ...]
) -> None:
    kind = m[0]
    seg_rows = {r[0]: r for r in db.execute("SELECT id, s3_key, created_at FROM segments")}
    row_id = rows[int(m[1])] if kind != "high_watermark" else ""
    key = seg_rows[row_id][1] if row_id in seg_rows else None
    if kind == "row_range":
        db.execute(
            "UPDATE segments SET base_offset = ?, end_offset = ? WHERE id = ?", (m[2], m[3], row_id)
        )
    elif kind == "dup_row" and key is not None:
        created = seg_rows[row_id][2] + (1000 if m[4] else -1000)
        db.execute(
            "INSERT INTO segments SELECT ?, organization_id, topic, partition_id, ?, ?, "
            "record_count, size_bytes, s3_bucket, s3_key, ?, min_timestamp, max_timestamp "
            "FROM segments WHERE id = ?",
            # A fresh id: the row count can repeat after a delete_row, an id must not.
            (f"{row_id}-dup{uuid.uuid4().hex}", m[2], m[3], created, row_id),
        )
    elif kind == "swap_key":
        other = rows[int(m[2])]
        if other in seg_rows and key is not None:
            db.execute("UPDATE segments SET s3_key = ? WHERE id = ?", (seg_rows[other][1], row_id))
    elif kind == "delete_object" and key is not None:
        house.store.delete(key)
    elif kind in ("flip_byte", "truncate_object") and key is not None:
        try:
            data = bytearray(house.store.get(key))
        except StreamHouseError:
            return
        if kind == "flip_byte" and data:
            data[int(m[2]) % len(data)] ^= int(m[3])
        else:
            del data[int(m[2]) :]
        house.store.put(key, bytes(data))
    elif kind == "size_bytes":
        db.execute("UPDATE segments SET size_bytes = ? WHERE id = ?", (m[2], row_id))
    elif kind == "record_count":
        db.execute("UPDATE segments SET record_count = ? WHERE id = ?", (m[2], row_id))
    elif kind == "high_watermark":
        db.execute("UPDATE partitions SET high_watermark = ?", (m[1],))
    elif kind == "delete_row":
        db.execute("DELETE FROM segments WHERE id = ?", (row_id,))


@pytest.mark.timeout(300)
@settings(
    max_examples=examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    plan=_partition_plans(),
    on_missing=st.sampled_from(["fail", "skip"]),
    range_reads=st.booleans(),
    batch=st.integers(1, 9),
    start=st.integers(0, 6),
)
def test_read_path_fuzz_gives_named_errors_or_true_records(
    plan: tuple[list[list[int]], list[tuple[Any, ...]]],
    on_missing: MissingPolicy,
    range_reads: bool,
    batch: int,
    start: int,
) -> None:
    segments, mutations = plan
    truth = {o: f"v{o}".encode() for offsets in segments for o in offsets}
    with tempfile.TemporaryDirectory() as tmp:
        house = LocalStreamHouse(
            f"sqlite:///{tmp}/metadata.db", MemoryStore(f"fuzz-{pathlib.Path(tmp).name}")
        )
        house.create_schema()
        house.create_topic(_FUZZ_TOPIC, partitions=1)
        rows = []
        for offsets in segments:
            seg = house.write_segment(
                _FUZZ_TOPIC, 0, [(o, 1_000 + o, None, truth[o]) for o in offsets]
            )
            rows.append(seg.id)
        db = sqlite3.connect(f"{tmp}/metadata.db", isolation_level=None)
        # StreamHouse's schema CHECKs end_offset >= base_offset; a damaged or hand-edited
        # database need not, and the reader must not trust it to.
        db.execute("PRAGMA ignore_check_constraints = ON")
        try:
            for m in mutations:
                _apply(house, db, rows, m)
        finally:
            db.close()
        cache = SegmentCache(4 * 1024 * 1024, prefetch_workers=1)
        reader = PartitionReader(
            house.metadata(retry_attempts=1),
            house.store,
            cache,
            _FUZZ_TOPIC,
            0,
            ReadOptions(on_missing_segment=on_missing, range_reads=range_reads),
        )
        seen: list[int] = []
        try:
            cur = start
            # Every call either returns records or moves past at least one row or gap, so
            # this bound can only be hit by a reader that spins without progress.
            for _ in range(len(truth) + 4 * (len(segments) + len(mutations)) + 10):
                got = reader.read(cur, None, batch)
                assert len(got.records) <= batch
                for off, _ts, _key, value in got.records:
                    assert off >= cur
                    assert truth.get(off) == value, f"offset {off} returned wrong data"
                    seen.append(off)
                assert got.next_offset >= cur
                if got.next_offset >= got.readable_end:
                    break
                # Below the readable end every call must move on: a reader that returns
                # nothing and stays put would make a pipeline poll the same offset forever.
                assert got.next_offset > cur, f"stalled at {cur} < {got.readable_end}"
                cur = got.next_offset
            else:
                raise AssertionError(f"no end reached: reader stuck around offset {cur}")
        except StreamHouseError as exc:
            # A named error is an acceptable outcome; what matters is its type.
            event(f"named error: {type(exc).__name__}")
        else:
            event("read to the end")
        finally:
            reader.close()
            cache.close()
            house.close()
        assert seen == sorted(set(seen)), "offsets repeated or out of order"
        if not mutations:
            assert seen == sorted(o for o in truth if o >= start)


# --------------------------------------------------------------------------------------------
# Deterministic cases: each contradiction and its named error or documented resolution
# --------------------------------------------------------------------------------------------


def _reader_for(house: LocalStreamHouse, topic: str, **options: Any) -> PartitionReader:

    return PartitionReader(
        house.metadata(),
        house.store,
        SegmentCache(8 * 1024 * 1024, prefetch_workers=0),
        topic,
        0,
        ReadOptions(**options),
    )


def _all(reader: PartitionReader, start: int = 0) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    cur = start
    for _ in range(1000):
        got = reader.read(cur, None, 50)
        out += [(r[0], r[3]) for r in got.records]
        if got.next_offset >= got.readable_end:
            return out
        cur = got.next_offset
    raise AssertionError("no end reached")


def _set_row(house: LocalStreamHouse, segment_id: str, **columns: int) -> None:
    path = house.metadata_url.removeprefix("sqlite://")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA ignore_check_constraints = ON")
        for column, value in columns.items():
            db.execute(f"UPDATE segments SET {column} = ? WHERE id = ?", (value, segment_id))


def test_row_claiming_more_than_its_segment_holds_is_inconsistent_metadata(
    house: LocalStreamHouse,
) -> None:
    from streamhouse_beam.errors import InconsistentMetadataError

    house.create_topic("liar", partitions=1)
    house.append("liar", 0, [f"v{i}" for i in range(20)], flush=True)
    seg = house.segments("liar", 0)[0]
    _set_row(house, seg.id, end_offset=49)
    with pytest.raises(InconsistentMetadataError) as info:
        _all(_reader_for(house, "liar"))
    text = str(info.value)
    assert seg.key in text and "0..19" in text and "0..49" in text


def test_row_with_end_below_base_is_never_read_as_data(house: LocalStreamHouse) -> None:
    house.create_topic("inverted", partitions=1)
    house.append("inverted", 0, [f"a{i}" for i in range(10)], flush=True)
    house.append("inverted", 0, [f"b{i}" for i in range(10)], flush=True)
    _, second = house.segments("inverted", 0)
    _set_row(house, second.id, base_offset=19, end_offset=10)
    # Documented resolution: a row whose range is empty covers no offsets; the readable end
    # still comes from the high watermark, so the reader skips to it without a hang.
    assert _all(_reader_for(house, "inverted")) == [(i, f"a{i}".encode()) for i in range(10)]


def test_overlapping_rows_resolve_to_the_newest_object_once_per_offset(
    house: LocalStreamHouse,
) -> None:
    house.create_topic("overlap", partitions=1)
    old = house.write_segment(
        "overlap", 0, [(i, 1000 + i, None, f"old{i}".encode()) for i in range(30)]
    )
    new = house.write_segment(
        "overlap",
        0,
        [(i, 1000 + i, None, f"new{i}".encode()) for i in range(10, 20)],
        key="overlap/0/seg_10_compacted.bin",
        segment_id="overlap-0-10-compacted",
        created_at=old.created_at + 1000,
        set_high_watermark=False,
    )
    got = _all(_reader_for(house, "overlap"))
    assert [o for o, _ in got] == list(range(30))
    assert dict(got) == {
        i: (f"new{i}" if new.contains(i) else f"old{i}").encode() for i in range(30)
    }


def test_declared_giant_block_is_refused_before_allocating(house: LocalStreamHouse) -> None:
    import struct
    import tracemalloc
    import zlib

    from streamhouse_beam.errors import SegmentLimitError

    house.create_topic("giant", partitions=1)
    house.append("giant", 0, [f"v{i}" for i in range(5)], flush=True)
    seg = house.segments("giant", 0)[0]
    data = bytearray(house.store.get(seg.key))
    # The first block's LZ4 size prefix (little-endian, right after the 64-byte header) now
    # claims 2 GiB; the CRC is recomputed so the lie reaches the decoder.
    data[64:68] = struct.pack("<I", 0x7FFFFFFF)
    footer = len(data) - 32
    data[footer + 8 : footer + 12] = struct.pack(">I", zlib.crc32(bytes(data[:footer])))
    house.store.put(seg.key, bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(SegmentLimitError) as info:
            _all(_reader_for(house, "giant"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.key == seg.key
    assert peak < 32 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# The same lies under a Beam pipeline: it finishes, or fails with the named error
# --------------------------------------------------------------------------------------------


def _pipeline_read(house: LocalStreamHouse, store_name: str, topic: str) -> tuple[Any, Any]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from streamhouse_beam.beam import ReadFromStreamHouse
    from streamhouse_beam.positions import StopPosition

    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    records = pipeline | ReadFromStreamHouse(
        topic,
        metadata_url=house.metadata_url,
        storage_url=f"memory://{store_name}",
        stop=StopPosition.latest(),
        max_poll_records=5,
    )
    return pipeline, records


def test_pipeline_crosses_a_lying_high_watermark_without_hanging(tmp_path: pathlib.Path) -> None:
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    name = f"hwm-{tmp_path.name}"
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/m.db", MemoryStore(name), segment_max_records=7
    ) as house:
        house.create_schema()
        house.create_topic("t", partitions=2)
        for p in (0, 1):
            house.append("t", p, [f"v{i}" for i in range(20)], flush=True)
        # 2**50 offsets promised, 20 present: the read must jump the hole, not walk it.
        house.set_high_watermark("t", 0, 2**50)
        pipeline, records = _pipeline_read(house, name, "t")
        assert_that(
            records | "Offsets" >> beam.Map(lambda r: (r.partition, r.offset)),
            equal_to([(p, i) for p in (0, 1) for i in range(20)]),
        )
        pipeline.run().wait_until_finish()


def test_pipeline_fails_with_the_named_error_for_a_row_its_segment_contradicts(
    tmp_path: pathlib.Path,
) -> None:
    from streamhouse_beam.errors import InconsistentMetadataError

    name = f"liar-{tmp_path.name}"
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/m.db", MemoryStore(name), segment_max_records=7
    ) as house:
        house.create_schema()
        house.create_topic("t", partitions=1)
        house.append("t", 0, [f"v{i}" for i in range(20)], flush=True)
        seg = house.segments("t", 0)[2]
        _set_row(house, seg.id, base_offset=10**12, end_offset=10**12 + 5)
        pipeline, _ = _pipeline_read(house, name, "t")
        with pytest.raises(InconsistentMetadataError) as info:
            pipeline.run().wait_until_finish()
    assert seg.key in str(info.value)
