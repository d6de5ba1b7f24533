"""The metadata-store contract, run against SQLite (temp file) and a real PostgreSQL.

Each test builds its data with LocalStreamHouse, then reads it through ``open_metadata`` the
way the connector does. PostgreSQL cases use the session server from the root conftest and a
fresh database per test.
"""

from __future__ import annotations

import itertools
import pickle
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from streamhouse_beam.errors import (
    OrganizationError,
    TopicNotFoundError,
)
from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS, LocalStreamHouse

HOSTILE_NAMES = [
    'it\'s "quoted"',
    "100%_done",
    "..",
    "a/b/../c",
    "événements-日本",
    "'; DROP TABLE segments; --",
    "x?y",
    "back\\slash",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/metadata.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def make_lsh(metadata_url: str) -> Callable[..., LocalStreamHouse]:
    made: list[LocalStreamHouse] = []

    def make(**kwargs: Any) -> LocalStreamHouse:
        kwargs.setdefault("store", MemoryStore(f"t-{uuid.uuid4()}"))
        lsh = LocalStreamHouse(metadata_url, **kwargs)
        lsh.create_schema()
        made.append(lsh)
        return lsh

    yield make
    for lsh in made:
        lsh.close()


@pytest.fixture
def lsh(make_lsh: Callable[..., LocalStreamHouse]) -> LocalStreamHouse:
    return make_lsh(segment_max_records=10)


def test_lists_topics_with_partition_counts_and_cleanup_policy(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 3, {"cleanup.policy": "compact"}, retention_ms=86_400_000)
    lsh.create_topic("clicks", 1)
    meta = lsh.metadata()
    topics = meta.list_topics()
    assert [t.name for t in topics] == ["clicks", "orders"]
    orders = meta.get_topic("orders")
    assert orders.partition_count == 3
    assert orders.cleanup_policy == "compact"
    assert orders.retention_ms == 86_400_000
    assert meta.get_topic("clicks").cleanup_policy == "delete"
    assert meta.topic_partitions("orders") == [TopicPartition("orders", p) for p in range(3)]


def test_unknown_topic_and_partition_raise_topic_not_found(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 2)
    meta = lsh.metadata()
    with pytest.raises(TopicNotFoundError, match="nope"):
        meta.get_topic("nope")
    with pytest.raises(TopicNotFoundError, match="partition 7"):
        meta.partition("orders", 7)
    assert meta.segments("nope", 0) == []


def test_partition_reports_earliest_readable_end_and_totals(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 2)
    lsh.append("orders", 0, [f"v{i}" for i in range(25)], flush=True)
    meta = lsh.metadata()
    p0, p1 = meta.partitions("orders")
    assert (p0.earliest_offset, p0.high_watermark, p0.segment_count) == (0, 25, 3)
    assert p0.size_bytes == sum(s.size_bytes for s in meta.segments("orders", 0))
    assert (p1.earliest_offset, p1.high_watermark, p1.segment_count) == (0, 0, 0)


def test_readable_end_uses_max_end_offset_when_high_watermark_lags(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 12, flush=True)
    # As after a snapshot restore, which can leave the HWM behind the segments.
    lsh.set_high_watermark("orders", 0, 0)
    assert lsh.metadata().partition("orders", 0).high_watermark == 12


def test_high_watermark_never_moves_backwards_within_one_store(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 5, flush=True)
    lsh.set_high_watermark("orders", 0, 40)
    meta = lsh.metadata()
    assert meta.partition("orders", 0).high_watermark == 40
    # A stale leader's late write: StreamHouse assigns the HWM, it never takes a max.
    lsh.set_high_watermark("orders", 0, 20)
    assert meta.partition("orders", 0).high_watermark == 40
    assert lsh.metadata().partition("orders", 0).high_watermark == 20


def test_earliest_offset_is_the_smallest_base_offset_not_zero(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 30, flush=True)
    lsh.delete_segment_row("orders-0-0")
    info = lsh.metadata().partition("orders", 0)
    assert (info.earliest_offset, info.high_watermark) == (10, 30)


def test_segments_from_an_offset_come_in_order_and_respect_limit(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 95, flush=True)
    meta = lsh.metadata()
    segs = meta.segments("orders", 0, from_offset=37)
    assert [s.base_offset for s in segs] == [30, 40, 50, 60, 70, 80, 90]
    assert segs[-1].end_offset == 94
    assert [s.base_offset for s in meta.segments("orders", 0, 37, limit=2)] == [30, 40]
    assert meta.segments("orders", 0, from_offset=95) == []
    first = segs[0]
    assert first.id == "orders-0-30"
    assert first.key == f"org-{lsh.organization_id}/data/orders/0/00000000000000000030.seg"
    assert first.bucket == lsh.bucket != ""
    assert first.record_count == 10
    assert first.min_timestamp == DEFAULT_CLOCK_START_MS + 30
    assert first.max_timestamp == DEFAULT_CLOCK_START_MS + 39


def test_limit_pages_through_many_segments(make_lsh: Callable[..., LocalStreamHouse]) -> None:
    lsh = make_lsh(segment_max_records=1)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"x"] * 150, flush=True)
    meta = lsh.metadata()
    assert [s.base_offset for s in meta.segments("t", 0, 100, limit=3)] == [100, 101, 102]
    assert len(meta.segments("t", 0, 0, limit=149)) == 149


def test_segment_for_offset_returns_containing_or_next_segment(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    lsh.write_segment("orders", 0, [(o, 1000 + o, None, b"v") for o in range(0, 5)])
    lsh.write_segment("orders", 0, [(o, 1000 + o, None, b"v") for o in range(20, 25)])
    meta = lsh.metadata()
    seg = meta.segment_for_offset("orders", 0, 3)
    assert seg is not None and seg.base_offset == 0
    seg = meta.segment_for_offset("orders", 0, 7)  # in the gap: the next segment
    assert seg is not None and seg.base_offset == 20
    assert meta.segment_for_offset("orders", 0, 25) is None


def test_overlapping_rows_resolve_to_newest_row_without_double_coverage(
    lsh: LocalStreamHouse,
) -> None:
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 30, flush=True)  # rows [0,9] [10,19] [20,29]
    # A compacted row written later covering [5, 24] with holes, registered as compaction does.
    compacted = lsh.write_segment(
        "orders",
        0,
        [(o, 0, None, b"c") for o in (5, 9, 17, 24)],
        key=f"org-{lsh.organization_id}/data/orders/0/seg_5_compacted.bin",
        segment_id="orders-0-5-compacted",
        set_high_watermark=False,
    )
    meta = lsh.metadata()
    segs = meta.segments("orders", 0)
    assert [(s.id, s.base_offset, s.end_offset) for s in segs] == [
        ("orders-0-0", 0, 4),  # the older row, narrowed to what the compacted one leaves
        ("orders-0-5-compacted", 5, 24),
        ("orders-0-20", 25, 29),
    ]
    assert segs[1].key == compacted.key
    # Nothing covers an offset twice and the list is sorted.
    assert all(a.end_offset < b.base_offset for a, b in itertools.pairwise(segs))
    assert [s.id for s in meta.segments("orders", 0, from_offset=6)] == [
        "orders-0-5-compacted",
        "orders-0-20",
    ]
    seg = meta.segment_for_offset("orders", 0, 12)
    assert seg is not None and seg.id == "orders-0-5-compacted"


def test_row_fully_covered_by_a_newer_row_is_dropped(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 20, flush=True)
    lsh.write_segment(
        "orders",
        0,
        [(o, 0, None, b"c") for o in range(3, 20)],
        key="data/orders/0/rewritten.seg",
        segment_id="orders-0-3-rewritten",
    )
    segs = lsh.metadata().segments("orders", 0)
    assert [(s.id, s.base_offset, s.end_offset) for s in segs] == [
        ("orders-0-0", 0, 2),
        ("orders-0-3-rewritten", 3, 19),
    ]


def test_segments_for_timestamp_start_at_first_candidate(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 30, flush=True)  # ts = start + offset
    meta = lsh.metadata()
    segs = meta.segments_for_timestamp("orders", 0, DEFAULT_CLOCK_START_MS + 15)
    assert [s.base_offset for s in segs] == [10, 20]
    assert meta.segments_for_timestamp("orders", 0, DEFAULT_CLOCK_START_MS + 10_000) == []
    assert len(meta.segments_for_timestamp("orders", 0, 0)) == 3


def test_segments_for_timestamp_never_skips_unknown_timestamps(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 10, flush=True)
    lsh.write_segment("orders", 0, [(o, 0, None, b"r") for o in range(10, 15)])  # 0 = unknown
    lsh.append("orders", 0, [b"x"] * 10, flush=True)
    segs = lsh.metadata().segments_for_timestamp("orders", 0, DEFAULT_CLOCK_START_MS + 10_000)
    assert [s.base_offset for s in segs] == [10, 15]


def test_commit_stores_next_offset_and_is_idempotent(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 2)
    meta = lsh.metadata()
    assert meta.committed_offset("g", "orders", 0) is None
    offsets = {TopicPartition("orders", 0): 42, TopicPartition("orders", 1): 7}
    meta.commit_offsets("g", offsets, metadata="beam")
    meta.commit_offsets("g", offsets, metadata="beam")
    assert meta.committed_offset("g", "orders", 0) == 42
    assert meta.committed_offset("g", "orders", 1) == 7
    meta.commit_offsets("g", {TopicPartition("orders", 0): 50})
    assert meta.committed_offset("g", "orders", 0) == 50
    assert lsh.metadata().committed_offset("other", "orders", 0) is None


def test_forward_only_commits_never_lower_an_offset(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 2)
    meta = lsh.metadata()
    orders0, orders1 = TopicPartition("orders", 0), TopicPartition("orders", 1)
    meta.commit_offsets("g", {orders0: 40}, forward_only=True)  # a first commit inserts
    meta.commit_offsets("g", {orders0: 30, orders1: 5}, forward_only=True)
    assert meta.committed_offset("g", "orders", 0) == 40  # kept: 30 is lower
    assert meta.committed_offset("g", "orders", 1) == 5
    meta.commit_offsets("g", {orders0: 41}, forward_only=True)
    assert meta.committed_offset("g", "orders", 0) == 41
    meta.commit_offsets("g", {orders0: 3})  # StreamHouse's own path overwrites
    assert meta.committed_offset("g", "orders", 0) == 3


def test_commit_to_missing_partition_raises_topic_not_found(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    meta = lsh.metadata()
    with pytest.raises(TopicNotFoundError, match=r"partition\(s\) \[3\]"):
        meta.commit_offsets("g", {TopicPartition("orders", 3): 1})
    with pytest.raises(TopicNotFoundError):
        meta.commit_offsets("g", {TopicPartition("ghost", 0): 1})


def test_invalid_arguments_raise_value_error(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    meta = lsh.metadata()
    with pytest.raises(ValueError, match="partition"):
        meta.segments("orders", -1)
    with pytest.raises(ValueError, match="from_offset"):
        meta.segments("orders", 0, from_offset=-5)
    with pytest.raises(ValueError, match="offset for orders/0"):
        meta.commit_offsets("g", {TopicPartition("orders", 0): -1})
    with pytest.raises(ValueError, match="group_id"):
        meta.committed_offset("", "orders", 0)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_topic_names_round_trip_as_data(lsh: LocalStreamHouse, name: str) -> None:
    lsh.create_topic(name, 1)
    lsh.create_topic("bystander", 1)
    lsh.append(name, 0, [b"a", b"b"], flush=True)
    meta = lsh.metadata()
    assert meta.get_topic(name).name == name
    assert meta.partition(name, 0).high_watermark == 2
    (seg,) = meta.segments(name, 0)
    assert seg.key == f"org-{lsh.organization_id}/data/{name}/0/00000000000000000000.seg"
    meta.commit_offsets(name, {TopicPartition(name, 0): 2})
    assert meta.committed_offset(name, name, 0) == 2
    assert sorted(t.name for t in meta.list_topics()) == sorted([name, "bystander"])


def test_single_organization_is_used_when_none_given(lsh: LocalStreamHouse) -> None:
    meta = open_metadata(lsh.metadata_url)
    assert meta.organization_id == lsh.organization_id
    assert meta.list_organizations() == [lsh.organization_id]


def test_several_organizations_without_a_choice_list_them(
    make_lsh: Callable[..., LocalStreamHouse],
) -> None:
    a = make_lsh()
    b = make_lsh()
    meta = open_metadata(a.metadata_url)
    with pytest.raises(OrganizationError) as err:
        meta.list_topics()
    assert a.organization_id in str(err.value) and b.organization_id in str(err.value)


def test_organizations_do_not_see_each_others_topics(
    make_lsh: Callable[..., LocalStreamHouse],
) -> None:
    a = make_lsh()
    b = make_lsh()
    a.create_topic("shared-name", 1)
    b.create_topic("shared-name", 2)
    b.create_topic("only-b", 1)
    a.append("shared-name", 0, [b"a"] * 3, flush=True)
    assert [t.name for t in a.metadata().list_topics()] == ["shared-name"]
    assert a.metadata().get_topic("shared-name").partition_count == 1
    assert b.metadata().get_topic("shared-name").partition_count == 2
    assert b.metadata().partition("shared-name", 0).high_watermark == 0


def test_unknown_organization_is_refused_with_the_known_ones(lsh: LocalStreamHouse) -> None:
    meta = open_metadata(lsh.metadata_url, str(uuid.uuid4()))
    with pytest.raises(OrganizationError, match=lsh.organization_id):
        meta.list_topics()


def test_store_pickles_without_connections_and_keeps_working(lsh: LocalStreamHouse) -> None:
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 3, flush=True)
    meta = lsh.metadata()
    assert meta.partition("orders", 0).high_watermark == 3  # connections are open now
    clone = pickle.loads(pickle.dumps(meta))
    assert clone.partition("orders", 0).high_watermark == 3
    assert clone.organization_id == lsh.organization_id
    meta.close()
    assert meta.partition("orders", 0).high_watermark == 3  # re-opened after close()


def test_deleted_topic_disappears_and_sqlite_keeps_its_segment_rows(
    lsh: LocalStreamHouse, metadata_url: str
) -> None:
    lsh.create_topic("gone", 1)
    lsh.append("gone", 0, [b"x"] * 3, flush=True)
    (seg,) = lsh.metadata().segments("gone", 0)
    lsh.delete_topic("gone")
    meta = lsh.metadata()
    assert meta.list_topics() == []
    with pytest.raises(TopicNotFoundError):
        meta.partition("gone", 0)
    assert not lsh.store.exists(seg.key, bucket=seg.bucket)
    # SQLite has no foreign key from segments to partitions (it has in PostgreSQL).
    stale = meta.segments("gone", 0)
    assert stale == ([seg] if metadata_url.startswith("sqlite:") else [])


def test_one_store_serves_several_threads(lsh: LocalStreamHouse) -> None:
    import concurrent.futures

    lsh.create_topic("orders", 4)
    for p in range(4):
        lsh.append("orders", p, [b"x"] * (p + 1), flush=True)
    meta = lsh.metadata()

    def work(p: int) -> tuple[int, int]:
        ends = {meta.partition("orders", p).high_watermark for _ in range(20)}
        segs = meta.segments("orders", p)
        return ends.pop(), len(segs)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, [0, 1, 2, 3] * 3))
    assert results == [(p + 1, 1) for p in [0, 1, 2, 3] * 3]
