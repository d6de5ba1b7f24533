"""LocalStreamHouse: write topics exactly as StreamHouse lays them out, without StreamHouse.

It creates the metadata schema (SQLite file or a PostgreSQL database), organizations, topics
and partitions, and appends records the way StreamHouse's ``PartitionWriter`` does: offsets
are assigned consecutively from the partition's high watermark, records are buffered, and each
roll writes one segment with :class:`~streamhouse_beam.segment.writer.SegmentWriter`, uploads
it under ``{org-{id}/data | data}/{topic}/{p}/{base:020}.seg`` (the key layout StreamHouse's flush
writes: organization prefix, topic, partition, base offset zero-padded to 20 digits) and then, in ONE
transaction, inserts the ``segments`` row (id ``"{topic}-{p}-{base}"``, ``created_at`` now,
min/max timestamp = first/last record's) and sets ``high_watermark = end_offset + 1`` (the next offset to be written).
The object exists before its row, as in StreamHouse.

Example::

    lsh = LocalStreamHouse("sqlite:////tmp/x/metadata.db", "file:///tmp/x/storage")
    lsh.create_schema()                    # tables + this instance's organization
    lsh.create_topic("orders", partitions=3)
    lsh.append("orders", 0, [b"a", (b"key", b"b"), (None, b"c", 1_700_000_000_000)], flush=True)

Record timestamps default to a deterministic clock: ``clock_start_ms + offset * clock_step_ms``.
Helpers for fault tests write segments with explicit offsets (gaps, overlapping/compacted rows),
set the high watermark, delete objects or rows, and commit consumer offsets.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.metadata._sql import SqlMetadataStore, organization_text
from streamhouse_beam.metadata.base import MetadataStore
from streamhouse_beam.records import SegmentInfo, TopicInfo, TopicPartition
from streamhouse_beam.segment.format import Compression
from streamhouse_beam.segment.writer import SegmentWriter
from streamhouse_beam.storage import open_store
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.testing.schema import POSTGRES_SCHEMA, SQLITE_SCHEMA

__all__ = ["DEFAULT_CLOCK_START_MS", "LocalStreamHouse", "RecordLike"]

#: 2026-01-01T00:00:00Z: the default timestamp of offset 0.
DEFAULT_CLOCK_START_MS = 1_767_225_600_000

#: ``value`` | ``(key, value)`` | ``(key, value, timestamp)``; str is encoded as UTF-8.
RecordLike = Any

# Per-record overhead used for the size limit: varints of the record encoding.
_RECORD_OVERHEAD = 8


def _as_bytes(what: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"{what} must be bytes or str, got {type(value).__name__}")


def _store_bucket(store: ObjectStore) -> str:
    parsed = urllib.parse.urlsplit(store.url)
    if parsed.scheme in ("s3", "gs", "memory") and parsed.netloc:
        return parsed.netloc
    return "streamhouse"


@dataclasses.dataclass
class _Buffer:
    records: list[tuple[int, int, bytes | None, bytes]] = dataclasses.field(default_factory=list)
    size: int = 0


class LocalStreamHouse:
    """Writes StreamHouse-compatible topics into a metadata store and an object store.

    Args:
        metadata_url: ``sqlite:////abs/path/metadata.db`` (created when missing) or a
            ``postgresql://`` URL of an existing database, connected as its owner.
        store: an ObjectStore, or a storage URL for :func:`streamhouse_beam.storage.open_store`.
        organization_id: the organization written to (a str, or the ``uuid.UUID`` psycopg
            returns for PostgreSQL's ``organizations.id``); a new UUID when None.
        org_prefix: keys under ``org-{id}/data/`` (StreamHouse at HEAD) rather than ``data/``.
        compression: ``"lz4"`` (every production writer) or ``"none"``.
        segment_max_records: roll a segment once it holds this many records.
        segment_max_bytes: roll a segment once its keys + values reach this many bytes.
        legacy_data_prefix: keys under ``data/`` even with an organization (before 2026-03).
        bucket: recorded in ``segments.s3_bucket`` and passed to ``store.put``; None uses
            the store's own bucket (``s3://b``, ``gs://b``, ``memory://b``), or
            ``"streamhouse"`` (StreamHouse's default) for stores without buckets.
        clock_start_ms, clock_step_ms: the default timestamp of offset ``o`` is
            ``clock_start_ms + o * clock_step_ms``.
        block_size_target: the segment writer's block size (None: StreamHouse's 1 MiB).
    """

    def __init__(
        self,
        metadata_url: str,
        store: ObjectStore | str,
        *,
        organization_id: str | uuid.UUID | None = None,
        org_prefix: bool = True,
        compression: str | Compression = "lz4",
        segment_max_records: int = 10_000,
        segment_max_bytes: int = 8 * 1024 * 1024,
        legacy_data_prefix: bool = False,
        bucket: str | None = None,
        clock_start_ms: int = DEFAULT_CLOCK_START_MS,
        clock_step_ms: int = 1,
        block_size_target: int | None = None,
    ) -> None:
        if segment_max_records < 1:
            raise ValueError(f"segment_max_records must be >= 1, got {segment_max_records!r}")
        if segment_max_bytes < 1:
            raise ValueError(f"segment_max_bytes must be >= 1, got {segment_max_bytes!r}")
        if isinstance(compression, str):
            names = {"lz4": Compression.LZ4, "none": Compression.NONE}
            if compression.lower() not in names:
                raise ValueError(f"compression must be 'lz4' or 'none', got {compression!r}")
            compression = names[compression.lower()]
        self.metadata_url = metadata_url
        self.store: ObjectStore = open_store(store) if isinstance(store, str) else store
        self.organization_id = (
            organization_text(organization_id) if organization_id is not None else str(uuid.uuid4())
        )
        self.org_prefix = org_prefix
        self.legacy_data_prefix = legacy_data_prefix
        self.compression = Compression(compression)
        self.segment_max_records = segment_max_records
        self.segment_max_bytes = segment_max_bytes
        self.bucket = bucket if bucket is not None else _store_bucket(self.store)
        self.clock_start_ms = clock_start_ms
        self.clock_step_ms = clock_step_ms
        self.block_size_target = block_size_target
        self._is_sqlite = metadata_url.startswith("sqlite:")
        options: dict[str, Any] = {"create": True} if self._is_sqlite else {}
        db = open_metadata(metadata_url, self.organization_id, **options)
        assert isinstance(db, SqlMetadataStore)
        self._db: SqlMetadataStore = db
        # The canonical spelling (PostgreSQL lower-cases UUIDs).
        self.organization_id = db._requested_org or self.organization_id
        self._buffers: dict[tuple[str, int], _Buffer] = {}
        self._next_offset: dict[tuple[str, int], int] = {}
        self._last_created_at = 0

    # ------------------------------------------------------------------------------ schema

    def create_schema(self) -> None:
        """Create the StreamHouse tables (idempotent) and this instance's organization."""
        self._db._run_script(SQLITE_SCHEMA if self._is_sqlite else POSTGRES_SCHEMA)
        self.create_organization(self.organization_id)

    def create_organization(
        self, organization_id: str | uuid.UUID | None = None, name: str | None = None
    ) -> str:
        """Insert an organization row (nothing happens if it exists); returns its id."""
        org = (
            organization_text(organization_id) if organization_id is not None else str(uuid.uuid4())
        )
        org = self._db._normalize_org(org)
        now = self._now_ms()
        self._db._write(
            f"create organization {org!r}",
            [
                (
                    "INSERT INTO organizations (id, name, slug, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (
                        self._db._org_param(org),
                        name or f"Organization {org}",
                        f"org-{org}",
                        now,
                        now,
                    ),
                )
            ],
        )
        return org

    # ------------------------------------------------------------------------------ topics

    def create_topic(
        self,
        name: str,
        partitions: int,
        config: Mapping[str, str] | None = None,
        *,
        retention_ms: int | None = None,
    ) -> TopicInfo:
        """Create a topic with ``partitions`` partitions (high watermark 0), as StreamHouse does.

        Raises:
            ValueError: bad arguments, or the topic exists in this organization.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"topic name must be a non-empty string, got {name!r}")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions must be an integer >= 1, got {partitions!r}")
        cfg = {str(k): str(v) for k, v in (config or {}).items()}
        if self._topic_exists(name):
            raise ValueError(
                f"topic {name!r} already exists in organization {self.organization_id!r}"
            )
        now = self._now_ms()
        org = self._db._org_param(self.organization_id)
        json_param = "?" if self._is_sqlite else "CAST(? AS jsonb)"
        statements: list[tuple[str, Sequence[Any]]] = [
            (
                "INSERT INTO topics (organization_id, name, partition_count, retention_ms, "
                f"created_at, updated_at, config) VALUES (?, ?, ?, ?, ?, ?, {json_param})",
                (org, name, partitions, retention_ms, now, now, json.dumps(cfg)),
            )
        ]
        statements += self._partition_rows(name, range(partitions), now)
        self._db._write(f"create topic {name!r}", statements)
        return TopicInfo(name, partitions, retention_ms, cfg, now)

    def add_partitions(self, topic: str, new_count: int) -> None:
        """Grow ``topic`` to ``new_count`` partitions (StreamHouse's partition-count update)."""
        current = self._partition_count(topic)
        if isinstance(new_count, bool) or not isinstance(new_count, int) or new_count <= current:
            raise ValueError(
                f"new_count must be an integer above the current {current} partitions of "
                f"{topic!r}, got {new_count!r}"
            )
        now = self._now_ms()
        org = self._db._org_param(self.organization_id)
        statements: list[tuple[str, Sequence[Any]]] = [
            (
                "UPDATE topics SET partition_count = ?, updated_at = ? "
                "WHERE organization_id = ? AND name = ?",
                (new_count, now, org, topic),
            )
        ]
        statements += self._partition_rows(topic, range(current, new_count), now)
        self._db._write(f"add partitions to {topic!r}", statements)

    def delete_topic(self, topic: str, *, delete_objects: bool = True) -> None:
        """Delete a topic as StreamHouse's REST handler does: its objects, then its row.

        Partitions cascade. On SQLite the segment rows stay behind (StreamHouse's
        SQLite schema has no foreign key from segments to partitions), so a re-created topic of the same name sees them;
        on PostgreSQL they cascade away.
        """
        self._partition_count(topic)  # ValueError when missing
        if delete_objects:
            for p in range(self._partition_count(topic)):
                for seg in self.segments(topic, p):
                    self.store.delete(seg.key, bucket=seg.bucket or None)
        self._db._write(
            f"delete topic {topic!r}",
            [
                (
                    "DELETE FROM topics WHERE organization_id = ? AND name = ?",
                    (self._db._org_param(self.organization_id), topic),
                )
            ],
        )
        for tp in [tp for tp in self._next_offset if tp[0] == topic]:
            del self._next_offset[tp]
        for tp in [tp for tp in self._buffers if tp[0] == topic]:
            del self._buffers[tp]

    def _partition_rows(
        self, topic: str, ids: Iterable[int], now: int
    ) -> list[tuple[str, Sequence[Any]]]:
        org = self._db._org_param(self.organization_id)
        return [
            (
                "INSERT INTO partitions (organization_id, topic, partition_id, high_watermark, "
                "created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)",
                (org, topic, p, now, now),
            )
            for p in ids
        ]

    def _topic_exists(self, topic: str) -> bool:
        return bool(
            self._db._read(
                "check topic",
                "SELECT 1 FROM topics WHERE organization_id = ? AND name = ?",
                (self._db._org_param(self.organization_id), topic),
            )
        )

    def _partition_count(self, topic: str) -> int:
        rows = self._db._read(
            "read topic",
            "SELECT partition_count FROM topics WHERE organization_id = ? AND name = ?",
            (self._db._org_param(self.organization_id), topic),
        )
        if not rows:
            raise ValueError(
                f"topic {topic!r} does not exist in organization {self.organization_id!r}"
            )
        return int(rows[0][0])

    # ------------------------------------------------------------------------------ appending

    def segment_key(self, topic: str, partition: int, base_offset: int) -> str:
        """The object key StreamHouse's flush uses for a segment: ``{org-{id}/data | data}/{topic}/{p}/{base:020}.seg``."""
        if self.legacy_data_prefix or not self.org_prefix or self.organization_id == "":
            prefix = "data"
        else:
            prefix = f"org-{self.organization_id}/data"
        return f"{prefix}/{topic}/{partition}/{base_offset:020d}.seg"

    def next_offset(self, topic: str, partition: int) -> int:
        """The offset the next appended record gets (readable end + buffered records)."""
        tp = (topic, partition)
        if tp not in self._next_offset:
            count = self._partition_count(topic)
            if not 0 <= partition < count:
                raise ValueError(f"topic {topic!r} has no partition {partition} (it has {count})")
            org = self._db._org_param(self.organization_id)
            hwm = self._db._read(
                "read high watermark",
                "SELECT high_watermark FROM partitions "
                "WHERE organization_id = ? AND topic = ? AND partition_id = ?",
                (org, topic, partition),
            )
            end = self._db._read(
                "read last segment",
                "SELECT max(end_offset) FROM segments "
                "WHERE organization_id = ? AND topic = ? AND partition_id = ?",
                (org, topic, partition),
            )
            start = int(hwm[0][0]) if hwm else 0
            if end and end[0][0] is not None:
                start = max(start, int(end[0][0]) + 1)
            self._next_offset[tp] = start
        return self._next_offset[tp] + len(self._buffers.get(tp, _Buffer()).records)

    def append(
        self,
        topic: str,
        partition: int,
        records: Iterable[RecordLike],
        *,
        timestamps: Sequence[int] | None = None,
        flush: bool = False,
    ) -> list[int]:
        """Append records to a partition; returns the offsets they were given.

        Each record is a value, ``(key, value)`` or ``(key, value, timestamp)`` (bytes or str;
        key may be None). Records are buffered and a segment is rolled whenever the buffer
        reaches ``segment_max_records`` or ``segment_max_bytes``; ``flush=True`` (or
        :meth:`flush`) rolls the rest, making everything readable.
        """
        tp = (topic, partition)
        offsets: list[int] = []
        items = list(records)
        if timestamps is not None and len(timestamps) != len(items):
            raise ValueError(f"timestamps has {len(timestamps)} entries for {len(items)} records")
        # Offsets are consecutive from the partition's next offset; rolls inside the loop keep
        # next_offset() = base + records appended so far.
        base = self.next_offset(topic, partition)
        for i, item in enumerate(items):
            key: bytes | None
            ts: int | None = None
            if isinstance(item, tuple):
                if len(item) == 2:
                    key_obj, value_obj = item
                elif len(item) == 3:
                    key_obj, value_obj, ts = item
                else:
                    raise ValueError(
                        f"record {i} must be value, (key, value) or (key, value, timestamp), "
                        f"got a {len(item)}-tuple"
                    )
                key = None if key_obj is None else _as_bytes(f"key of record {i}", key_obj)
                value = _as_bytes(f"value of record {i}", value_obj)
            else:
                key, value = None, _as_bytes(f"record {i}", item)
            offset = base + i
            if timestamps is not None:
                ts = timestamps[i]
            if ts is None:
                ts = self.clock_start_ms + offset * self.clock_step_ms
            buf = self._buffers.setdefault(tp, _Buffer())
            buf.records.append((offset, int(ts), key, value))
            buf.size += len(value) + (len(key) if key else 0) + _RECORD_OVERHEAD
            offsets.append(offset)
            if len(buf.records) >= self.segment_max_records or buf.size >= self.segment_max_bytes:
                self._roll(topic, partition)
        if flush:
            self.flush(topic, partition)
        return offsets

    def flush(self, topic: str | None = None, partition: int | None = None) -> list[SegmentInfo]:
        """Roll buffered records into segments (all partitions, one topic, or one partition)."""
        rolled = []
        for t, p in sorted(self._buffers):
            if (topic is None or t == topic) and (partition is None or p == partition):
                seg = self._roll(t, p)
                if seg is not None:
                    rolled.append(seg)
        return rolled

    def _roll(self, topic: str, partition: int) -> SegmentInfo | None:
        buf = self._buffers.pop((topic, partition), None)
        if buf is None or not buf.records:
            return None
        return self.write_segment(topic, partition, buf.records)

    def write_segment(
        self,
        topic: str,
        partition: int,
        records: Sequence[tuple[int, int, bytes | None, bytes]],
        *,
        key: str | None = None,
        segment_id: str | None = None,
        created_at: int | None = None,
        set_high_watermark: bool = True,
        register: bool = True,
    ) -> SegmentInfo:
        """Write one segment of explicit ``(offset, timestamp, key, value)`` records.

        For building unusual partitions: gaps, compacted objects (pass ``key`` and
        ``segment_id``, e.g. ``"…/seg_5_compacted.bin"`` and ``"{t}-{p}-5-compacted"``),
        overlapping rows (``created_at``), or orphan objects (``register=False``).
        ``set_high_watermark`` assigns ``end + 1`` exactly as StreamHouse does — even when
        that moves it backwards.
        """
        if not records:
            raise ValueError("write_segment needs at least one record")
        writer = (
            SegmentWriter(self.compression)
            if self.block_size_target is None
            else SegmentWriter(self.compression, block_size_target=self.block_size_target)
        )
        for offset, ts, rkey, value in records:
            writer.append(offset, ts, rkey, value)
        data = writer.finish()
        base, end = writer.base_offset, writer.end_offset
        object_key = key if key is not None else self.segment_key(topic, partition, base)
        self.store.put(object_key, data, bucket=self.bucket)
        seg = SegmentInfo(
            id=segment_id if segment_id is not None else f"{topic}-{partition}-{base}",
            topic=topic,
            partition=partition,
            base_offset=base,
            end_offset=end,
            record_count=writer.record_count,
            size_bytes=len(data),
            bucket=self.bucket,
            key=object_key,
            created_at=created_at if created_at is not None else self._created_at(),
            min_timestamp=writer.min_timestamp,
            max_timestamp=writer.max_timestamp,
        )
        if register:
            self.register_segment(seg, high_watermark=end + 1 if set_high_watermark else None)
        tp = (topic, partition)
        if tp in self._next_offset:
            self._next_offset[tp] = max(self._next_offset[tp], end + 1)
        return seg

    def register_segment(self, segment: SegmentInfo, *, high_watermark: int | None = None) -> None:
        """Insert a segment row (and set the high watermark) in one transaction."""
        org = self._db._org_param(self.organization_id)
        statements: list[tuple[str, Sequence[Any]]] = [
            (
                "INSERT INTO segments (id, organization_id, topic, partition_id, base_offset, "
                "end_offset, record_count, size_bytes, s3_bucket, s3_key, created_at, "
                "min_timestamp, max_timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    segment.id,
                    org,
                    segment.topic,
                    segment.partition,
                    segment.base_offset,
                    segment.end_offset,
                    segment.record_count,
                    segment.size_bytes,
                    segment.bucket,
                    segment.key,
                    segment.created_at,
                    segment.min_timestamp,
                    segment.max_timestamp,
                ),
            )
        ]
        if high_watermark is not None:
            statements.append(self._hwm_statement(segment.topic, segment.partition, high_watermark))
        self._db._write(f"register segment {segment.id!r}", statements)

    def _hwm_statement(self, topic: str, partition: int, value: int) -> tuple[str, Sequence[Any]]:
        return (
            "UPDATE partitions SET high_watermark = ?, updated_at = ? "
            "WHERE organization_id = ? AND topic = ? AND partition_id = ?",
            (value, self._now_ms(), self._db._org_param(self.organization_id), topic, partition),
        )

    def set_high_watermark(self, topic: str, partition: int, value: int) -> None:
        """Assign ``partitions.high_watermark`` (e.g. below max(end)+1, as after a restore)."""
        self._db._write("set high watermark", [self._hwm_statement(topic, partition, value)])

    def segments(self, topic: str, partition: int) -> list[SegmentInfo]:
        """The partition's segment rows as stored (no overlap resolution), by base offset."""
        rows = self._db._read(
            "list segment rows",
            self._db._segment_select() + " ORDER BY base_offset, created_at",
            (self._db._org_param(self.organization_id), topic, partition),
        )
        return [self._db._segment_info(topic, partition, r) for r in rows]

    def delete_segment_object(self, topic: str, partition: int, base_offset: int) -> SegmentInfo:
        """Delete the object of the newest row starting at ``base_offset``; the row stays."""
        matches = [s for s in self.segments(topic, partition) if s.base_offset == base_offset]
        if not matches:
            raise ValueError(f"no segment of {topic!r}/{partition} starts at {base_offset}")
        seg = max(matches, key=lambda s: s.created_at)
        self.store.delete(seg.key, bucket=seg.bucket or None)
        return seg

    def delete_segment_row(self, segment_id: str) -> None:
        """Delete a segment row; its object stays (an orphan)."""
        self._db._write(
            "delete segment row",
            [
                (
                    "DELETE FROM segments WHERE id = ? AND organization_id = ?",
                    (segment_id, self._db._org_param(self.organization_id)),
                )
            ],
        )

    # ------------------------------------------------------------------------------ consumers

    def commit(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition | tuple[str, int], int],
        metadata: str | None = None,
    ) -> None:
        """Commit next-offsets-to-read for a group, exactly as StreamHouse's org path does."""
        self._db.commit_offsets(
            group_id, {TopicPartition(*tp): off for tp, off in offsets.items()}, metadata
        )

    def metadata(self, **options: Any) -> MetadataStore:
        """A fresh read-side metadata store for this instance's organization."""
        return open_metadata(self.metadata_url, self.organization_id, **options)

    def close(self) -> None:
        """Close connections (buffered records are kept; call :meth:`flush` first)."""
        self._db.close()
        self.store.close()

    def __enter__(self) -> LocalStreamHouse:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------ clocks

    @staticmethod
    def _now_ms() -> int:
        return time.time_ns() // 1_000_000

    def _created_at(self) -> int:
        # Strictly increasing per instance, so "newest row wins" is well defined in tests.
        self._last_created_at = max(self._now_ms(), self._last_created_at + 1)
        return self._last_created_at
