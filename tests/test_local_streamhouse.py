"""LocalStreamHouse writes what StreamHouse's writer would: objects, keys, rows, watermarks."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from streamhouse_beam.segment import Compression, SegmentReader
from streamhouse_beam.storage import open_store
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS, LocalStreamHouse


def make(tmp_path: Path, **kw: object) -> LocalStreamHouse:
    kw.setdefault("store", MemoryStore(f"lsh-{uuid.uuid4().hex[:8]}"))
    lsh = LocalStreamHouse(f"sqlite:///{tmp_path}/metadata.db", **kw)  # type: ignore[arg-type]
    lsh.create_schema()
    return lsh


def read_back(
    lsh: LocalStreamHouse, topic: str, partition: int
) -> list[tuple[int, int, bytes | None, bytes]]:
    out = []
    for seg in lsh.metadata().segments(topic, partition):
        data = lsh.store.get(seg.key, bucket=seg.bucket)
        assert len(data) == seg.size_bytes
        reader = SegmentReader(data, key=seg.key)
        assert (reader.header.base_offset, reader.header.end_offset) == (
            seg.base_offset,
            seg.end_offset,
        )
        assert reader.header.record_count == seg.record_count
        out.extend(reader.read_all())
    return out


def test_appended_records_read_back_with_offsets_keys_and_timestamps(tmp_path: Path) -> None:
    lsh = make(tmp_path, segment_max_records=2)
    lsh.create_topic("orders", 1)
    offsets = lsh.append(
        "orders", 0, [b"v0", (b"k1", b"v1"), (None, "v2", 777), "v3", (b"", b"v4")], flush=True
    )
    assert offsets == [0, 1, 2, 3, 4]
    assert read_back(lsh, "orders", 0) == [
        (0, DEFAULT_CLOCK_START_MS, None, b"v0"),
        (1, DEFAULT_CLOCK_START_MS + 1, b"k1", b"v1"),
        (2, 777, None, b"v2"),
        (3, DEFAULT_CLOCK_START_MS + 3, None, b"v3"),
        (4, DEFAULT_CLOCK_START_MS + 4, None, b"v4"),  # empty key reads as no key
    ]
    segs = lsh.metadata().segments("orders", 0)
    assert [(s.id, s.base_offset, s.end_offset) for s in segs] == [
        ("orders-0-0", 0, 1),
        ("orders-0-2", 2, 3),
        ("orders-0-4", 4, 4),
    ]
    # min/max_timestamp are the first/last record's, not true min/max, as StreamHouse records them.
    assert (segs[1].min_timestamp, segs[1].max_timestamp) == (777, DEFAULT_CLOCK_START_MS + 3)


def test_records_stay_invisible_until_flushed(tmp_path: Path) -> None:
    lsh = make(tmp_path, segment_max_records=100)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"a", b"b"])
    assert lsh.metadata().partition("t", 0).high_watermark == 0
    assert lsh.next_offset("t", 0) == 2
    (seg,) = lsh.flush()
    assert (seg.base_offset, seg.end_offset) == (0, 1)
    assert lsh.metadata().partition("t", 0).high_watermark == 2
    assert lsh.flush() == []


def test_segments_roll_at_the_byte_limit(tmp_path: Path) -> None:
    lsh = make(tmp_path, segment_max_bytes=1000)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"x" * 300] * 10, flush=True)
    segs = lsh.metadata().segments("t", 0)
    assert [s.record_count for s in segs] == [4, 4, 2]


def test_explicit_timestamps_and_uncompressed_segments(tmp_path: Path) -> None:
    lsh = make(tmp_path, compression="none")
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"a", b"b", b"c"], timestamps=[30, 10, 20], flush=True)
    (seg,) = lsh.metadata().segments("t", 0)
    reader = SegmentReader(lsh.store.get(seg.key))
    assert reader.compression == Compression.NONE
    assert [r[1] for r in reader.read_all()] == [30, 10, 20]
    assert (seg.min_timestamp, seg.max_timestamp) == (30, 20)
    with pytest.raises(ValueError, match="timestamps has 1 entries for 2 records"):
        lsh.append("t", 0, [b"a", b"b"], timestamps=[1])


@pytest.mark.parametrize(
    ("options", "prefix"),
    [
        ({}, "org-{org}/data"),
        ({"org_prefix": False}, "data"),
        ({"legacy_data_prefix": True}, "data"),
    ],
)
def test_key_layout_follows_the_flush_path(
    tmp_path: Path, options: dict[str, bool], prefix: str
) -> None:
    lsh = make(tmp_path, **options)
    lsh.create_topic("orders", 4)
    lsh.append("orders", 3, [b"a"] * 3, flush=True)
    (seg,) = lsh.metadata().segments("orders", 3)
    expected = prefix.format(org=lsh.organization_id) + "/orders/3/00000000000000000000.seg"
    assert seg.key == expected
    assert lsh.store.exists(expected)


def test_file_store_holds_percent_encoded_object_names(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    lsh = make(tmp_path, store=open_store(f"file://{root}"), organization_id="o1")
    lsh.create_topic("événements", 1)
    lsh.append("événements", 0, [b"a"], flush=True)
    (seg,) = lsh.metadata().segments("événements", 0)
    assert seg.key == "org-o1/data/événements/0/00000000000000000000.seg"
    assert (root / "org-o1/data/%C3%A9v%C3%A9nements/0/00000000000000000000.seg").is_file()


def test_a_new_instance_continues_at_the_high_watermark(tmp_path: Path) -> None:
    store = MemoryStore(f"resume-{uuid.uuid4().hex[:8]}")
    first = make(tmp_path, store=store, segment_max_records=5)
    first.create_topic("t", 1)
    first.append("t", 0, [b"a"] * 7, flush=True)
    second = LocalStreamHouse(first.metadata_url, store, organization_id=first.organization_id)
    assert second.append("t", 0, [b"b"] * 2, flush=True) == [7, 8]
    assert [r[0] for r in read_back(second, "t", 0)] == list(range(9))


def test_partitions_can_be_added_to_an_existing_topic(tmp_path: Path) -> None:
    lsh = make(tmp_path)
    lsh.create_topic("t", 2)
    lsh.add_partitions("t", 5)
    meta = lsh.metadata()
    assert meta.get_topic("t").partition_count == 5
    assert [p.partition for p in meta.partitions("t")] == [0, 1, 2, 3, 4]
    lsh.append("t", 4, [b"x"], flush=True)
    assert meta.partition("t", 4).high_watermark == 1
    with pytest.raises(ValueError, match="above the current 5"):
        lsh.add_partitions("t", 3)


def test_duplicate_topic_and_unknown_partition_are_refused(tmp_path: Path) -> None:
    lsh = make(tmp_path)
    lsh.create_topic("t", 1)
    with pytest.raises(ValueError, match="already exists"):
        lsh.create_topic("t", 1)
    with pytest.raises(ValueError, match="no partition 1"):
        lsh.append("t", 1, [b"x"])
    with pytest.raises(ValueError, match="record 0 must be"):
        lsh.append("t", 0, [(b"k", b"v", 1, 2)])


def test_deleting_an_object_keeps_its_row(tmp_path: Path) -> None:
    lsh = make(tmp_path, segment_max_records=2)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"x"] * 4, flush=True)
    seg = lsh.delete_segment_object("t", 0, 2)
    assert not lsh.store.exists(seg.key, bucket=seg.bucket)
    assert [s.base_offset for s in lsh.metadata().segments("t", 0)] == [0, 2]


def test_orphan_objects_are_uploaded_but_not_registered(tmp_path: Path) -> None:
    lsh = make(tmp_path)
    lsh.create_topic("t", 1)
    seg = lsh.write_segment("t", 0, [(0, 1, None, b"x")], register=False)
    assert lsh.store.exists(seg.key)
    assert lsh.metadata().segments("t", 0) == []


def test_segment_row_and_high_watermark_are_written_together(tmp_path: Path) -> None:
    lsh = make(tmp_path, segment_max_records=3)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"x"] * 6, flush=True)
    conn = sqlite3.connect(f"{tmp_path}/metadata.db")
    rows = conn.execute("SELECT high_watermark FROM partitions").fetchall()
    ends = conn.execute("SELECT max(end_offset) FROM segments").fetchall()
    conn.close()
    assert rows == [(6,)] and ends == [(5,)]


def test_a_uuid_organization_id_is_accepted_as_its_string(tmp_path: Path) -> None:
    import apache_beam  # noqa: F401  (the transform below needs Beam)

    from streamhouse_beam import ReadFromStreamHouse, StopPosition
    from tests.read_helpers import read_all

    org = uuid.uuid4()
    lsh = LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db", f"file://{tmp_path}/segments", organization_id=org
    )
    lsh.create_schema()
    assert lsh.organization_id == str(org)
    assert lsh.create_organization(org) == str(org)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"a", b"b"], flush=True)
    assert lsh.metadata().organization_id == str(org)
    read = ReadFromStreamHouse(
        "t",
        metadata_url=f"sqlite:///{tmp_path}/metadata.db",
        storage_url=f"file://{tmp_path}/segments",
        organization_id=org,
        stop=StopPosition.latest(),
    )
    assert sorted(r.value for r in read_all(read)) == [b"a", b"b"]
