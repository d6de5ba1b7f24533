"""What a partition reader knows of one partition's metadata: its readable end and segment list.

:class:`SegmentList` keeps both and re-reads them only when that can matter:

* The **readable end** is ``max(high_watermark, max(end_offset) + 1)``: the high watermark is
  one past the last record of any registered segment, but a restored metadata store can leave
  it below the segments it holds. It never goes backwards here, since StreamHouse writes the
  watermark as a plain assignment that a stale writer or a restore can lower.
* The **segment list** is read in pages of :data:`SEGMENT_LIST_LIMIT` rows from the offset a
  read needs. StreamHouse registers a segment row and raises the high watermark in one
  transaction, so a list read *after* the watermark holds every segment that watermark
  promises. Every look is numbered: a gap in a list older than the end it bounds a read by is
  checked against a fresh list before it is skipped.
* Both are re-read after ``refresh_seconds``, and sooner when a read is caught up with them.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence

from streamhouse_beam.metadata.base import MetadataStore
from streamhouse_beam.records import PartitionInfo, SegmentInfo

__all__ = ["SEGMENT_LIST_LIMIT", "SegmentList"]

#: Segment rows fetched per metadata query; the list is extended as the read moves on.
SEGMENT_LIST_LIMIT = 1000


class SegmentList:
    """The readable end and the known segments of one partition. Not thread-safe.

    Args:
        metadata: the metadata store (one organization).
        topic: topic name.
        partition: partition number.
        refresh_seconds: the end and the list are re-read when older than this.
    """

    def __init__(
        self, metadata: MetadataStore, topic: str, partition: int, refresh_seconds: float
    ) -> None:
        self.metadata = metadata
        self.topic = topic
        self.partition = partition
        self.refresh_seconds = refresh_seconds
        self.segments: list[SegmentInfo] = []
        self.bases: list[int] = []
        self._from = 0
        self._complete = False  # the list reaches the newest segment (no limit hit)
        self._time = -math.inf
        self._seq = -1
        self.end: int | None = None
        self._end_time = -math.inf
        self._end_seq = -1
        self._looks = 0

    # ------------------------------------------------------------------------ readable end

    def _next_look(self) -> int:
        self._looks += 1
        return self._looks

    def note_end(self, hwm: int) -> None:
        """Take a high watermark the metadata store reported (never lowering the end)."""
        seq = self._next_look()
        self.end = hwm if self.end is None else max(self.end, hwm)
        self._end_time = time.monotonic()
        self._end_seq = seq

    def refresh_end(self) -> PartitionInfo:
        """Read the partition's row and take its high watermark; returns the row."""
        info = self.metadata.partition(self.topic, self.partition)
        self.note_end(info.high_watermark)
        return info

    def readable_end(self, refresh: bool) -> int:
        """The exclusive readable end; with ``refresh`` (or when unknown) read it first."""
        if refresh or self.end is None:
            self.refresh_end()
        assert self.end is not None
        return self.end

    def end_for(self, start: int, stop: int | None) -> int:
        """The readable end to bound a read of ``[start, stop)`` by, querying only when it can matter."""
        fresh = time.monotonic() - self._end_time < self.refresh_seconds
        if self.end is None or not fresh:
            self.refresh_end()
        elif (stop is None or stop > self.end) and start >= self.end:
            # Caught up with what we know: only a fresh look can show more.
            self.refresh_end()
        assert self.end is not None
        return self.end

    # ------------------------------------------------------------------------ segment list

    def load(self, from_offset: int) -> None:
        """Read the list from ``from_offset`` (one page)."""
        rows = self.metadata.segments(
            self.topic, self.partition, from_offset=from_offset, limit=SEGMENT_LIST_LIMIT
        )
        self.segments = rows
        self.bases = [s.base_offset for s in rows]
        self._from = from_offset
        self._complete = len(rows) < SEGMENT_LIST_LIMIT
        self._time = time.monotonic()
        self._seq = self._next_look()
        if rows and self.end is not None and rows[-1].end_offset + 1 > self.end:
            # A segment committed after our watermark look: its offsets are readable too. The
            # list itself is the evidence, so this does not make the list look stale.
            self.end = rows[-1].end_offset + 1

    def ensure(self, offset: int) -> None:
        """Make sure the list covers ``offset`` as well as a fresh query would."""
        stale = time.monotonic() - self._time >= self.refresh_seconds
        before = offset < self._from
        past = not self.segments or offset > self.segments[-1].end_offset
        if stale or before or (past and (not self._complete or self._seq < self._end_seq)):
            self.load(offset)

    def find(self, offset: int) -> SegmentInfo | None:
        """The known segment containing ``offset`` or the first one after it."""
        i = bisect.bisect_right(self.bases, offset) - 1
        if i >= 0 and self.segments[i].end_offset >= offset:
            return self.segments[i]
        if i + 1 < len(self.segments):
            return self.segments[i + 1]
        return None

    def segment_at(self, offset: int, limit: int) -> SegmentInfo | None:
        """The segment holding ``offset`` or the next one below ``limit``; ``None`` when none is."""
        self.ensure(offset)
        seg = self.find(offset)
        # Before calling it a gap, make sure the list is newer than the readable end we bound
        # the read by (a segment the watermark promises must be in the list).
        if (seg is None or seg.base_offset > offset) and (
            self._seq < self._end_seq or (seg is None and not self._complete)
        ):
            self.load(offset)
            seg = self.find(offset)
        if seg is not None and seg.base_offset >= limit:
            return None
        return seg

    def following(self, end_offset: int) -> Sequence[SegmentInfo]:
        """The known segments whose base offset is above ``end_offset``, in order."""
        return self.segments[bisect.bisect_right(self.bases, end_offset) :]

    def estimate_bytes(self, start: int, stop: int) -> float:
        """Segment bytes holding offsets ``[start, stop)``, prorated from the known list."""
        if stop <= start or not self.segments:
            return 0.0
        total = 0.0
        i = max(bisect.bisect_right(self.bases, start) - 1, 0)
        for seg in self.segments[i:]:
            if seg.base_offset >= stop:
                break
            lo = max(start, seg.base_offset)
            hi = min(stop, seg.end_offset + 1)
            if hi > lo:
                total += seg.size_bytes * (hi - lo) / (seg.end_offset - seg.base_offset + 1)
        return total
