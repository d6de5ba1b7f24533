"""The metadata-store interface: StreamHouse's SQL schema seen by a reader.

The tables a reader needs are ``organizations``, ``topics``, ``partitions`` (with each
partition's high watermark), ``segments`` (one row per uploaded object: offsets, timestamps,
bucket and key) and, to commit, ``consumer_groups`` and ``consumer_offsets``.

Both backends (SQLite, PostgreSQL) implement it with the same SQL where the dialects allow.
All methods act in one organization (:attr:`MetadataStore.organization_id`), resolved on first
use when none was given: the store's only organization, or an OrganizationError listing them.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from streamhouse_beam.records import PartitionInfo, SegmentInfo, TopicInfo, TopicPartition


class MetadataStore(abc.ABC):
    """Read StreamHouse metadata and commit consumer offsets.

    Implementations are picklable (connections are opened lazily and dropped on pickling),
    parameterize every query, retry transient failures with backoff under a bounded budget, and
    raise :mod:`streamhouse_beam.errors` types.
    """

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The store URL with any password removed (safe to log and display)."""

    @property
    @abc.abstractmethod
    def organization_id(self) -> str:
        """The organization every query is scoped to (resolved lazily)."""

    @abc.abstractmethod
    def list_organizations(self) -> list[str]:
        """Ids of all organizations, sorted."""

    @abc.abstractmethod
    def list_topics(self) -> list[TopicInfo]:
        """The organization's topics, sorted by name."""

    @abc.abstractmethod
    def get_topic(self, topic: str) -> TopicInfo:
        """One topic; TopicNotFoundError when missing."""

    @abc.abstractmethod
    def partitions(self, topic: str) -> list[PartitionInfo]:
        """Every partition of the topic with earliest offset, readable end and totals."""

    @abc.abstractmethod
    def partition(self, topic: str, partition: int) -> PartitionInfo:
        """One partition; TopicNotFoundError when the topic or partition is missing."""

    def topic_partitions(self, topic: str) -> list[TopicPartition]:
        """The topic's partitions as TopicPartition values; TopicNotFoundError when missing."""
        return [TopicPartition(topic, p.partition) for p in self.partitions(topic)]

    @abc.abstractmethod
    def segments(
        self, topic: str, partition: int, from_offset: int = 0, limit: int | None = None
    ) -> list[SegmentInfo]:
        """Segments with ``end_offset >= from_offset`` in offset order, overlaps resolved.

        Overlapping rows are resolved so the result never covers an offset twice: the most
        recently created row wins, and a row whose range is fully covered by a chosen one is
        dropped; ``limit`` caps the number returned. A row only partly covered by newer ones
        is returned narrowed to its uncovered stretch(es): ``base_offset``/``end_offset`` then
        name the sub-range to read from that object (its id, key, bucket, created_at,
        record_count and size_bytes are unchanged), so a reader reads exactly
        ``[base_offset, end_offset]`` of each element's object and skips its other records.
        """

    @abc.abstractmethod
    def segment_for_offset(self, topic: str, partition: int, offset: int) -> SegmentInfo | None:
        """The segment containing ``offset``, or the first one after it (a gap), or None."""

    @abc.abstractmethod
    def segments_for_timestamp(
        self, topic: str, partition: int, timestamp: int
    ) -> list[SegmentInfo]:
        """Segments from the first one that may hold a record with timestamp >= ``timestamp``.

        Uses ``max_timestamp`` (last record's timestamp; 0 = unknown, never skipped); the caller
        refines with the block index timestamps and the records.
        """

    @abc.abstractmethod
    def committed_offset(self, group_id: str, topic: str, partition: int) -> int | None:
        """The group's committed offset (next offset to read), or None."""

    @abc.abstractmethod
    def commit_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, int],
        metadata: str | None = None,
        *,
        forward_only: bool = False,
    ) -> None:
        """Commit next-offsets-to-read exactly as StreamHouse's org-scoped path does; idempotent.

        With ``forward_only`` an offset replaces a committed one only when it is higher, in the
        same statement, so committers in other processes cannot interleave a lower one.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Close connections; the store stays usable (they are re-opened)."""

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
