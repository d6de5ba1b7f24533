"""The SQL both metadata backends share: queries, organization scoping, overlap resolution.

Every query is written once, with ``?`` placeholders, and run by the backend, which adapts the
placeholders to its driver (PostgreSQL's ``%s``) — so the SQL text never contains a literal
``?`` or ``%``. Values are always bound as parameters, never formatted into the text; the
only text that is interpolated is column names chosen from the introspected schema.

A backend supplies four primitives: run one read query (one attempt), run a list of writes in
one transaction (one attempt), list the store's tables and columns, and drop its connections.
Each primitive raises :class:`~streamhouse_beam._retry.RetryableFailure` for
failures worth retrying and a project error for everything else; this module wraps them in the
bounded retry loop.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from streamhouse_beam._retry import (
    RetryableFailure,
    RetryPolicy,
    call_with_retry,
    metadata_give_up,
)
from streamhouse_beam.errors import (
    InconsistentMetadataError,
    NotAStreamHouseStoreError,
    OrganizationError,
    TopicNotFoundError,
)
from streamhouse_beam.metadata.base import MetadataStore
from streamhouse_beam.records import PartitionInfo, SegmentInfo, TopicInfo, TopicPartition

__all__ = ["REQUIRED_COLUMNS", "SqlMetadataStore", "resolve_overlaps"]

Row = Sequence[Any]
Statement = tuple[str, Sequence[Any]]

#: Tables and columns a reader cannot do without in StreamHouse's schema; checked on first use.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "organizations": ("id",),
    "topics": ("organization_id", "name", "partition_count"),
    "partitions": ("organization_id", "topic", "partition_id", "high_watermark"),
    "segments": (
        "id",
        "organization_id",
        "topic",
        "partition_id",
        "base_offset",
        "end_offset",
        "record_count",
        "size_bytes",
        "s3_bucket",
        "s3_key",
        "created_at",
    ),
    "consumer_groups": ("organization_id", "group_id", "created_at", "updated_at"),
    "consumer_offsets": (
        "organization_id",
        "group_id",
        "topic",
        "partition_id",
        "committed_offset",
        "metadata",
        "committed_at",
    ),
}

# Columns added by later migrations; databases built before them still read (as 0 / null / {}).
_OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "segments": ("min_timestamp", "max_timestamp"),
    "topics": ("retention_ms", "config", "created_at"),
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _check_partition(partition: object) -> int:
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise ValueError(f"partition must be an integer >= 0, got {partition!r}")
    return partition


def _check_offset(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def organization_text(value: object) -> str:
    """An organization id as text: a ``uuid.UUID`` (what psycopg returns for PostgreSQL's
    ``organizations.id``) becomes its canonical string, any other value must be a non-empty str.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    return _check_text("organization_id", value)


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL characters, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Overlap resolution
# ---------------------------------------------------------------------------------------------


def _subtract(lo: int, hi: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of ``[lo, hi]`` not inside any of the disjoint, sorted ``covered`` intervals."""
    parts: list[tuple[int, int]] = []
    cursor = lo
    for c_lo, c_hi in covered:
        if c_hi < cursor:
            continue
        if c_lo > hi:
            break
        if c_lo > cursor:
            parts.append((cursor, c_lo - 1))
        cursor = max(cursor, c_hi + 1)
        if cursor > hi:
            return parts
    if cursor <= hi:
        parts.append((cursor, hi))
    return parts


def _add(covered: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """Union of the disjoint sorted intervals with ``[lo, hi]`` (adjacent ones merged)."""
    merged: list[tuple[int, int]] = []
    for c_lo, c_hi in covered:
        if c_hi + 1 < lo or c_lo > hi + 1:
            merged.append((c_lo, c_hi))
        else:
            lo, hi = min(lo, c_lo), max(hi, c_hi)
    merged.append((lo, hi))
    merged.sort()
    return merged


def _priority(seg: SegmentInfo) -> tuple[int, int, str]:
    # Newest row first (a later row for the same offsets, e.g. a compacted one, replaces the
    # earlier one); among rows registered in the same millisecond the wider one
    # (a compacted row spans what it replaced), then the id, so the outcome is deterministic.
    return (-seg.created_at, -(seg.end_offset - seg.base_offset), seg.id)


def resolve_overlaps(rows: Iterable[SegmentInfo], from_offset: int = 0) -> list[SegmentInfo]:
    """Turn segment rows into a sorted list that never covers an offset twice.

    Rows are considered newest first (``created_at`` descending; ties: wider range, then id).
    Each row claims the offsets of its ``[base_offset, end_offset]`` range that no newer row
    claimed: a row fully covered by newer rows is dropped; a row partially covered is returned
    once per uncovered stretch, as a copy of the row whose ``base_offset``/``end_offset`` are
    narrowed to that stretch (``id``, ``key``, ``bucket``, ``created_at``, ``record_count``
    and ``size_bytes`` still describe the whole object). A reader therefore reads, from each
    returned element's object, exactly the records with offsets in ``[base_offset, end_offset]``
    and skips any others the object holds. Elements are sorted by ``base_offset``; those ending
    before ``from_offset`` are left out.

    Args:
        rows: segment rows of one partition, in any order.
        from_offset: offsets below this are not needed.

    Returns:
        Disjoint, ascending pieces; unchanged rows are returned as they are.
    """
    ordered = sorted(rows, key=lambda s: (s.base_offset, -s.created_at, s.id))
    if all(a.end_offset < b.base_offset for a, b in itertools.pairwise(ordered)):
        return [s for s in ordered if s.end_offset >= from_offset]
    covered: list[tuple[int, int]] = []
    pieces: list[SegmentInfo] = []
    for seg in sorted(ordered, key=_priority):
        for lo, hi in _subtract(seg.base_offset, seg.end_offset, covered):
            if hi < from_offset:
                continue
            if (lo, hi) == (seg.base_offset, seg.end_offset):
                pieces.append(seg)
            else:
                pieces.append(dataclasses.replace(seg, base_offset=lo, end_offset=hi))
        covered = _add(covered, seg.base_offset, seg.end_offset)
    pieces.sort(key=lambda s: s.base_offset)
    return pieces


# ---------------------------------------------------------------------------------------------
# The shared store
# ---------------------------------------------------------------------------------------------


class SqlMetadataStore(MetadataStore):
    """Everything of :class:`MetadataStore` that is plain SQL; backends add the connections.

    Subclasses implement :meth:`_query_once`, :meth:`_write_once`, :meth:`_list_columns`,
    :meth:`_drop_connections` and may override the dialect hooks (:meth:`_org_param`,
    :meth:`_normalize_org`, :attr:`_OFFSETS_CONFLICT_TARGET`).
    """

    #: Conflict target of the consumer_offsets upsert, the unique key StreamHouse's own commit
    #: relies on: it differs per dialect.
    _OFFSETS_CONFLICT_TARGET = "(organization_id, group_id, topic, partition_id)"

    def __init__(
        self,
        url: str,
        *,
        organization_id: str | uuid.UUID | None,
        retry: RetryPolicy,
    ) -> None:
        self._raw_url = url
        self._retry = retry
        self._requested_org = (
            None
            if organization_id is None
            else self._normalize_org(organization_text(organization_id))
        )
        self._org: str | None = None
        self._columns: dict[str, set[str]] | None = None
        self._hwm_seen: dict[tuple[str, int], int] = {}
        self._lock = threading.RLock()
        #: Transient failures retried so far by this instance (for metrics and tests).
        self.retry_count = 0

    # -- pickling: Beam ships the store to workers; connections and locks stay behind --------

    _TRANSIENT_STATE: tuple[str, ...] = ("_lock", "_columns")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self._TRANSIENT_STATE:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._columns = None
        self._reset_connections_after_unpickle()

    def _reset_connections_after_unpickle(self) -> None:
        """Backends set their connection attributes to None here."""

    def __repr__(self) -> str:
        org = self._org or self._requested_org
        return f"{type(self).__name__}(url={self.url!r}, organization_id={org!r})"

    # -- backend primitives --------------------------------------------------------------------

    def _query_once(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run one read query once and return all rows."""
        raise NotImplementedError

    def _write_once(self, statements: Sequence[Statement]) -> None:
        """Run the statements in one transaction, once."""
        raise NotImplementedError

    def _list_columns(self) -> dict[str, set[str]]:
        """Map of table name to its column names, for the tables that exist."""
        raise NotImplementedError

    def _run_script(self, script: str) -> None:
        """Execute a DDL script on a writable connection (testing helpers only)."""
        raise NotImplementedError

    def _drop_connections(self) -> None:
        """Close and forget connections (after a transient failure, or on close())."""
        raise NotImplementedError

    def _normalize_org(self, organization_id: str) -> str:
        """Validate an organization id and return its canonical spelling."""
        return organization_id

    def _org_param(self, organization_id: str) -> Any:
        """The bound value for an ``organization_id = ?`` comparison."""
        return organization_id

    def _session_org_changed(self) -> None:
        """Called when the organization the session should be scoped to is known or changes."""

    @property
    def _session_org(self) -> str | None:
        """The organization connections should be scoped to (PostgreSQL RLS)."""
        return self._org or self._requested_org

    # -- retried entry points ------------------------------------------------------------------

    def _describe(self, what: str) -> str:
        return f"{self.url}: {what}"

    def _on_transient(self, failure: RetryableFailure) -> None:
        self.retry_count += 1
        self._drop_connections()

    def _read(self, what: str, sql: str, params: Sequence[Any]) -> list[Row]:
        with self._lock:
            return call_with_retry(
                lambda: self._query_once(sql, params),
                self._retry,
                give_up=metadata_give_up(self._describe(what), self._retry),
                on_failure=self._on_transient,
            )

    def _write(self, what: str, statements: Sequence[Statement]) -> None:
        with self._lock:
            call_with_retry(
                lambda: self._write_once(statements),
                self._retry,
                give_up=metadata_give_up(self._describe(what), self._retry),
                on_failure=self._on_transient,
            )

    # -- schema and organization ---------------------------------------------------------------

    def _schema(self) -> dict[str, set[str]]:
        if self._columns is not None:
            return self._columns
        with self._lock:
            if self._columns is not None:
                return self._columns
            columns = call_with_retry(
                self._list_columns,
                self._retry,
                give_up=metadata_give_up(self._describe("inspect the schema"), self._retry),
                on_failure=self._on_transient,
            )
            for table, needed in REQUIRED_COLUMNS.items():
                if table not in columns:
                    raise NotAStreamHouseStoreError(
                        f"{self.url} is not a StreamHouse metadata store: table {table!r} is "
                        f"missing (a StreamHouse store has tables {sorted(REQUIRED_COLUMNS)}; "
                        f"this one has {sorted(columns) or 'none'})"
                    )
                missing = [c for c in needed if c not in columns[table]]
                if missing:
                    raise NotAStreamHouseStoreError(
                        f"{self.url} is not a StreamHouse metadata store: table {table!r} lacks "
                        f"column(s) {', '.join(missing)}"
                    )
            self._columns = columns
            return columns

    def _col(self, table: str, column: str, fallback: str) -> str:
        """``column`` when the table has it, else the SQL literal ``fallback``."""
        return column if column in self._schema().get(table, set()) else fallback

    @property
    def url(self) -> str:
        from streamhouse_beam.errors import redact

        return redact(self._raw_url)

    def list_organizations(self) -> list[str]:
        self._schema()
        rows = self._read("list organizations", "SELECT id FROM organizations", ())
        return sorted(str(r[0]) for r in rows)

    @property
    def organization_id(self) -> str:
        if self._org is not None:
            return self._org
        with self._lock:
            if self._org is None:
                self._org = self._resolve_org()
                self._session_org_changed()
            return self._org

    def _resolve_org(self) -> str:
        self._schema()
        if self._requested_org is not None:
            rows = self._read(
                "look up the organization",
                "SELECT id FROM organizations WHERE id = ?",
                (self._org_param(self._requested_org),),
            )
            if not rows:
                known = self.list_organizations()
                raise OrganizationError(
                    f"organization {self._requested_org!r} does not exist in {self.url} "
                    f"(visible organizations: {known or 'none'})"
                )
            return self._requested_org
        orgs = self.list_organizations()
        if len(orgs) == 1:
            return orgs[0]
        if not orgs:
            raise OrganizationError(
                f"{self.url} holds no organization visible to this connection; pass "
                "organization_id (with PostgreSQL row-level security a non-owner role sees "
                "organizations only once it is set)"
            )
        raise OrganizationError(
            f"{self.url} holds {len(orgs)} organizations; choose one with organization_id: "
            f"{', '.join(orgs)}"
        )

    # -- topics and partitions -----------------------------------------------------------------

    def _topic_select(self) -> str:
        retention = self._col("topics", "retention_ms", "NULL")
        config = self._col("topics", "config", "NULL")
        created = self._col("topics", "created_at", "0")
        return (
            f"SELECT name, partition_count, {retention}, {config}, {created} "
            "FROM topics WHERE organization_id = ?"
        )

    def _topic_info(self, row: Row) -> TopicInfo:
        name, count, retention, config, created = row
        return TopicInfo(
            name=str(name),
            partition_count=int(count),
            retention_ms=None if retention is None else int(retention),
            config=self._parse_config(str(name), config),
            created_at=int(created or 0),
        )

    def _parse_config(self, topic: str, raw: Any) -> dict[str, str]:
        if raw is None or raw == "":
            return {}
        value = raw
        if isinstance(raw, (str, bytes)):
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise InconsistentMetadataError(
                    f"topic {topic!r} in organization {self.organization_id!r}: config column "
                    f"is not JSON ({exc})"
                ) from exc
        if not isinstance(value, dict):
            raise InconsistentMetadataError(
                f"topic {topic!r} in organization {self.organization_id!r}: config column is "
                f"not a JSON object: {value!r}"
            )
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}

    def list_topics(self) -> list[TopicInfo]:
        org = self.organization_id
        rows = self._read("list topics", self._topic_select(), (self._org_param(org),))
        # Sorted here, not by ORDER BY, so both backends agree regardless of collation.
        return sorted((self._topic_info(r) for r in rows), key=lambda t: t.name)

    def get_topic(self, topic: str) -> TopicInfo:
        _check_text("topic", topic)
        org = self.organization_id
        rows = self._read(
            f"read topic {topic!r}",
            self._topic_select() + " AND name = ?",
            (self._org_param(org), topic),
        )
        if not rows:
            raise TopicNotFoundError(
                f"topic {topic!r} does not exist in organization {org!r} of {self.url}; "
                + self._topics_there()
            )
        return self._topic_info(rows[0])

    def _topics_there(self, shown: int = 20) -> str:
        """What the organization holds instead, for a topic-not-found message."""
        names = [t.name for t in self.list_topics()]
        if not names:
            return "it holds no topics"
        listed = ", ".join(repr(name) for name in names[:shown])
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return f"its topics are {listed}{more}"

    def _partition_infos(
        self, topic: str, partition_ids: Iterable[int], only: int | None
    ) -> list[PartitionInfo]:
        org = self._org_param(self.organization_id)
        extra = "" if only is None else " AND partition_id = ?"
        params: tuple[Any, ...] = (org, topic) if only is None else (org, topic, only)
        hwm_rows = self._read(
            f"read partitions of {topic!r}",
            "SELECT partition_id, high_watermark FROM partitions "
            "WHERE organization_id = ? AND topic = ?" + extra,
            params,
        )
        agg_rows = self._read(
            f"summarize segments of {topic!r}",
            "SELECT partition_id, min(base_offset), max(end_offset), count(*), sum(size_bytes) "
            "FROM segments WHERE organization_id = ? AND topic = ?"
            + extra
            + " GROUP BY partition_id",
            params,
        )
        hwms = {int(r[0]): int(r[1]) for r in hwm_rows}
        aggs = {int(r[0]): r for r in agg_rows}
        ids = sorted(set(partition_ids) | set(hwms))
        out = []
        for p in ids:
            hwm = hwms.get(p, 0)
            agg = aggs.get(p)
            earliest: int | None = None
            count = size = 0
            if agg is not None and agg[1] is not None:
                earliest = int(agg[1])
                hwm = max(hwm, int(agg[2]) + 1)
                count, size = int(agg[3]), int(agg[4] or 0)
            # StreamHouse sets the HWM by plain assignment, not max(), so a stale leader's late write
            # can lower it: never let it move backwards for this store.
            seen = self._hwm_seen.get((topic, p), 0)
            hwm = max(hwm, seen)
            self._hwm_seen[(topic, p)] = hwm
            out.append(
                PartitionInfo(
                    topic=topic,
                    partition=p,
                    earliest_offset=hwm if earliest is None else min(earliest, hwm),
                    high_watermark=hwm,
                    segment_count=count,
                    size_bytes=size,
                )
            )
        return out

    def partitions(self, topic: str) -> list[PartitionInfo]:
        info = self.get_topic(topic)
        return self._partition_infos(topic, range(info.partition_count), None)

    def partition(self, topic: str, partition: int) -> PartitionInfo:
        _check_text("topic", topic)
        _check_partition(partition)
        # Readers poll this while tailing: a partitions row (which only exists for an existing
        # topic, by foreign key) answers in two queries; the topic is read only without one.
        found = self._partition_infos(topic, (), partition)
        if found:
            return found[0]
        info = self.get_topic(topic)
        if partition < info.partition_count:
            found = self._partition_infos(topic, (partition,), partition)
        if not found:
            raise TopicNotFoundError(
                f"topic {topic!r} in organization {self.organization_id!r} has no partition "
                f"{partition} (partition_count {info.partition_count})"
            )
        return found[0]

    # -- segments ------------------------------------------------------------------------------

    def _segment_select(self) -> str:
        min_ts = self._col("segments", "min_timestamp", "0")
        max_ts = self._col("segments", "max_timestamp", "0")
        return (
            "SELECT id, base_offset, end_offset, record_count, size_bytes, s3_bucket, s3_key, "
            f"created_at, {min_ts}, {max_ts} FROM segments "
            "WHERE organization_id = ? AND topic = ? AND partition_id = ?"
        )

    @staticmethod
    def _segment_info(topic: str, partition: int, row: Row) -> SegmentInfo:
        return SegmentInfo(
            id=str(row[0]),
            topic=topic,
            partition=partition,
            base_offset=int(row[1]),
            end_offset=int(row[2]),
            record_count=int(row[3]),
            size_bytes=int(row[4]),
            bucket=str(row[5] or ""),
            key=str(row[6]),
            created_at=int(row[7]),
            min_timestamp=int(row[8] or 0),
            max_timestamp=int(row[9] or 0),
        )

    def _segment_rows(
        self, topic: str, partition: int, from_offset: int, fetch: int | None
    ) -> list[SegmentInfo]:
        sql = (
            self._segment_select() + " AND end_offset >= ? "
            "ORDER BY base_offset ASC, created_at DESC, id ASC"
        )
        params: list[Any] = [self._org_param(self.organization_id), topic, partition, from_offset]
        if fetch is not None:
            sql += " LIMIT ?"
            params.append(fetch)
        rows = self._read(f"read segments of {topic!r} partition {partition}", sql, params)
        return [self._segment_info(topic, partition, r) for r in rows]

    def segments(
        self, topic: str, partition: int, from_offset: int = 0, limit: int | None = None
    ) -> list[SegmentInfo]:
        """Segments covering offsets >= ``from_offset``, sorted and never overlapping.

        Overlapping rows are resolved by :func:`resolve_overlaps`: the newest row wins, rows
        fully covered by newer ones are dropped, and a partially covered older row is returned
        narrowed to its uncovered stretch(es) — read exactly ``[base_offset, end_offset]`` of
        each element's object. An unknown topic or partition yields an empty list.
        """
        _check_text("topic", topic)
        _check_partition(partition)
        _check_offset("from_offset", from_offset)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
        if limit is None:
            return resolve_overlaps(
                self._segment_rows(topic, partition, from_offset, None), from_offset
            )
        fetch = max(2 * limit + 8, 64)
        while True:
            rows = self._segment_rows(topic, partition, from_offset, fetch)
            if len(rows) < fetch:
                return resolve_overlaps(rows, from_offset)[:limit]
            # Rows not fetched start at or after `boundary`, so they cannot change any piece
            # that ends before it: those pieces are final.
            boundary = rows[-1].base_offset
            pieces = resolve_overlaps([r for r in rows if r.base_offset < boundary], from_offset)
            final = [p for p in pieces if p.end_offset < boundary]
            if len(final) >= limit:
                return final[:limit]
            fetch *= 4

    def segment_for_offset(self, topic: str, partition: int, offset: int) -> SegmentInfo | None:
        _check_offset("offset", offset)
        found = self.segments(topic, partition, offset, limit=1)
        return found[0] if found else None

    def segments_for_timestamp(
        self, topic: str, partition: int, timestamp: int
    ) -> list[SegmentInfo]:
        _check_text("topic", topic)
        _check_partition(partition)
        _check_offset("timestamp", timestamp)
        max_ts = self._col("segments", "max_timestamp", "0")
        min_ts = self._col("segments", "min_timestamp", "0")
        # StreamHouse stores the *last* appended record's timestamp as max_timestamp and the
        # first's as min_timestamp, not true extremes (producers may send any timestamp):
        # a segment is skipped only when both are known and below the target; 0 = unknown.
        rows = self._read(
            f"find timestamp {timestamp} in {topic!r} partition {partition}",
            f"SELECT min(base_offset) FROM segments WHERE organization_id = ? AND topic = ? "
            f"AND partition_id = ? AND ({max_ts} >= ? OR {min_ts} >= ? OR {max_ts} = 0)",
            (self._org_param(self.organization_id), topic, partition, timestamp, timestamp),
        )
        if not rows or rows[0][0] is None:
            return []
        start = int(rows[0][0])
        return [s for s in self.segments(topic, partition, start) if s.end_offset >= start]

    # -- consumer offsets ----------------------------------------------------------------------

    def committed_offset(self, group_id: str, topic: str, partition: int) -> int | None:
        _check_text("group_id", group_id)
        _check_text("topic", topic)
        _check_partition(partition)
        rows = self._read(
            f"read committed offset of group {group_id!r} for {topic!r} partition {partition}",
            "SELECT committed_offset FROM consumer_offsets WHERE organization_id = ? "
            "AND group_id = ? AND topic = ? AND partition_id = ?",
            (self._org_param(self.organization_id), group_id, topic, partition),
        )
        return None if not rows else int(rows[0][0])

    def commit_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, int],
        metadata: str | None = None,
        *,
        forward_only: bool = False,
    ) -> None:
        """Commit next-offsets-to-read as StreamHouse's ``commit_offset_for_org`` does.

        In one transaction: insert the group into ``consumer_groups`` ignoring a conflict, then
        upsert each offset into ``consumer_offsets`` (conflict target per dialect), setting
        ``committed_offset``, ``metadata`` and ``committed_at`` (now, ms). Re-committing the
        same offsets is harmless. Partitions must exist (TopicNotFoundError otherwise).

        ``forward_only`` adds a condition to the upsert's update: a row changes only when its
        committed offset is below the new one. The check and the write are one statement, so
        two processes committing one partition at once cannot leave the lower offset (the read
        commits this way; StreamHouse's own path, the default, overwrites).

        On SQLite the conflict target is StreamHouse's ``(group_id, topic, partition_id)``,
        which is not org-scoped: committing the same group/topic/partition from another
        organization overwrites that organization's row, which keeps its ``organization_id``
        (the SQLite migrations never added the organization to that unique key). This is reproduced on purpose, since StreamHouse itself does it.
        """
        _check_text("group_id", group_id)
        if metadata is not None and not isinstance(metadata, str):
            raise TypeError(f"metadata must be a str or None, got {type(metadata).__name__}")
        items = []
        for tp, offset in offsets.items():
            topic, partition = tp
            _check_text("topic", topic)
            _check_partition(partition)
            _check_offset(f"offset for {topic}/{partition}", offset)
            items.append((str(topic), int(partition), int(offset)))
        if not items:
            return
        org = self.organization_id
        for topic in sorted({t for t, _, _ in items}):
            known = {p.partition for p in self.partitions(topic)}
            bad = sorted(p for t, p, _ in items if t == topic and p not in known)
            if bad:
                raise TopicNotFoundError(
                    f"cannot commit offsets for group {group_id!r}: topic {topic!r} in "
                    f"organization {org!r} has no partition(s) {bad}"
                )
        now = _now_ms()
        org_param = self._org_param(org)
        statements: list[Statement] = [
            (
                "INSERT INTO consumer_groups (organization_id, group_id, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (org_param, group_id, now, now),
            )
        ]
        upsert = (
            "INSERT INTO consumer_offsets (organization_id, group_id, topic, partition_id, "
            "committed_offset, metadata, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT {self._OFFSETS_CONFLICT_TARGET} DO UPDATE SET "
            "committed_offset = excluded.committed_offset, metadata = excluded.metadata, "
            "committed_at = excluded.committed_at"
        )
        if forward_only:
            upsert += " WHERE consumer_offsets.committed_offset < excluded.committed_offset"
        for topic, partition, offset in items:
            statements.append(
                (upsert, (org_param, group_id, topic, partition, offset, metadata, now))
            )
        self._write(f"commit offsets of group {group_id!r}", statements)

    def close(self) -> None:
        with self._lock:
            self._drop_connections()
