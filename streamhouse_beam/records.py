"""Value objects shared by every layer: what a record, a partition and a segment are.

They are immutable and cheap: :class:`StreamHouseRecord` is a ``NamedTuple`` because one is
built per record on the hot path, the others are frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

__all__ = [
    "PartitionInfo",
    "SegmentInfo",
    "StreamHouseRecord",
    "TopicInfo",
    "TopicPartition",
]


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}"


class StreamHouseRecord(NamedTuple):
    """One record as read from a StreamHouse partition.

    Attributes:
        topic: topic name.
        partition: partition number.
        offset: the record's offset (u64).
        timestamp: the record's timestamp in milliseconds since the epoch (u64).
        key: the key bytes, or ``None`` (StreamHouse stores an empty key as no key).
        value: the value, ``bytes`` unless a value decoder was configured.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: object


@dataclasses.dataclass(frozen=True)
class SegmentInfo:
    """One row of StreamHouse's ``segments`` table.

    ``end_offset`` is inclusive. ``key`` is the raw ``s3_key`` column (before the object-store
    layer percent-encodes each path part: see :mod:`streamhouse_beam.storage.keys`); ``bucket`` may be empty (rows registered by the reconciler).
    ``min_timestamp``/``max_timestamp`` are the first/last appended record's timestamps, ``0``
    meaning unknown.
    """

    id: str
    topic: str
    partition: int
    base_offset: int
    end_offset: int
    record_count: int
    size_bytes: int
    bucket: str
    key: str
    created_at: int
    min_timestamp: int = 0
    max_timestamp: int = 0

    @property
    def cache_key(self) -> tuple[str, str, int]:
        """Identity of the object's bytes: the same key re-written later has a new ``created_at``."""
        return (self.bucket, self.key, self.created_at)

    def contains(self, offset: int) -> bool:
        return self.base_offset <= offset <= self.end_offset


@dataclasses.dataclass(frozen=True)
class PartitionInfo:
    """A partition's readable range.

    Attributes:
        earliest_offset: ``min(base_offset)`` over its segments (the high watermark when none).
        high_watermark: readable end, exclusive: ``max(high_watermark, max(end_offset) + 1)``.
        segment_count, size_bytes: totals over the partition's segment rows.
    """

    topic: str
    partition: int
    earliest_offset: int
    high_watermark: int
    segment_count: int = 0
    size_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    """A row of StreamHouse's ``topics`` table; ``config`` is the string map from its JSON column."""

    name: str
    partition_count: int
    retention_ms: int | None = None
    config: dict[str, str] = dataclasses.field(default_factory=dict)
    created_at: int = 0

    @property
    def cleanup_policy(self) -> str:
        return self.config.get("cleanup.policy", "delete")
