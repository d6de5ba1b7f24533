"""Opening a partition's segments through the segment cache, for a partition reader.

:class:`SegmentOpener` positions a reader on one segment at a time (:class:`OpenSegment`: its
parsed :class:`~streamhouse_beam.segment.reader.SegmentReader`, its cache lease and its last
decoded block) and keeps it between reads, so successive reads of one segment neither re-parse
nor re-decode. It

* opens a segment with one whole-object GET through the cache, or with ranged GETs (footer,
  header, index, then only the blocks needed) when ``range_reads`` is on and a read starts
  inside a segment that is neither cached nor downloading;
* re-fetches a segment once when its bytes fail the CRC or do not decode (the cache entry is
  invalidated first), then raises the :class:`~streamhouse_beam.errors.SegmentError` naming
  the object key;
* checks that a segment's header covers the offsets its metadata row claims;
* applies the missing-object policy: :class:`~streamhouse_beam.errors.DataLossError`, or the
  range skipped and reported (logged once);
* hands the next segments of the metadata list to the cache's background prefetch once a read
  has consumed ``prefetch_threshold`` of the current one, doubling the look-ahead (up to
  ``max_prefetch_segments``) each time a read still waits for a prefetched segment.

The current segment stays pinned in the cache until the reader moves past it, is closed, or is
garbage collected (then the pin is handed back at the cache's next operation).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, TypeVar

from streamhouse_beam._segment_list import SegmentList
from streamhouse_beam.cache import CacheLease, SegmentCache
from streamhouse_beam.errors import (
    CorruptSegmentError,
    DataLossError,
    InconsistentMetadataError,
    ObjectNotFoundError,
    SegmentError,
)
from streamhouse_beam.records import SegmentInfo
from streamhouse_beam.segment.reader import Record, SegmentReader
from streamhouse_beam.storage.base import ObjectStore

if TYPE_CHECKING:
    from streamhouse_beam.partition_reader import ReadOptions
    from streamhouse_beam.segment.columns import BlockColumns

__all__ = ["OpenSegment", "SegmentOpener", "Tally", "segment_cache_key"]

_LOG = logging.getLogger(__name__)

DecodedT = TypeVar("DecodedT")


def segment_cache_key(store: ObjectStore, segment: SegmentInfo) -> tuple[str, str, str, int]:
    """The cache identity of a segment's bytes: store, bucket, object key and ``created_at``."""
    return (store.url, segment.bucket, segment.key, segment.created_at)


class OpenSegment:
    """The segment a reader is positioned in: its parsed reader, lease and last block."""

    __slots__ = (
        "block",
        "block_columns",
        "block_offsets",
        "block_records",
        "cache_key",
        "columns_block",
        "lease",
        "prefetched",
        "reader",
        "refetched",
        "segment",
    )

    def __init__(
        self,
        segment: SegmentInfo,
        cache_key: Hashable,
        reader: SegmentReader,
        lease: CacheLease | None,
    ) -> None:
        self.segment = segment
        self.cache_key = cache_key
        self.reader = reader
        self.lease = lease
        self.block = -1
        self.block_records: list[Record] = []
        self.block_offsets: list[int] = []
        # read_columns' decoded block, kept apart from read()'s records.
        self.columns_block = -1
        self.block_columns: BlockColumns | None = None
        self.prefetched = False
        self.refetched = False

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None


class Tally:
    """One read call's segment counters (folded into its ReadBatch)."""

    __slots__ = ("bytes_fetched", "hits", "lost", "misses", "prefetch_hits", "prefetches")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.prefetches = 0
        self.prefetch_hits = 0
        self.bytes_fetched = 0
        self.lost: list[tuple[int, int]] = []


def _release_lease(holder: list[OpenSegment | None]) -> None:
    # A finalizer: the garbage collector may run it while this thread holds the cache's lock,
    # so the pin is handed back without taking it.
    current = holder[0]
    if current is not None:
        holder[0] = None
        if current.lease is not None:
            current.lease.release_later()
            current.lease = None


class SegmentOpener:
    """Opens the segments of one partition and keeps the current one; see the module docstring.

    Not thread-safe: one per partition reader.

    Args:
        store: the object store holding the segments.
        cache: the segment cache.
        topic: topic name (for messages).
        partition: partition number (for messages).
        options: the reader's options.
    """

    def __init__(
        self,
        store: ObjectStore,
        cache: SegmentCache,
        topic: str,
        partition: int,
        options: ReadOptions,
    ) -> None:
        self.store = store
        self.cache = cache
        self.topic = topic
        self.partition = partition
        self.options = options
        self._store_url = store.url
        # A one-element holder so the finalizer can release the pin without keeping self alive.
        self._holder: list[OpenSegment | None] = [None]
        self._finalizer = weakref.finalize(self, _release_lease, self._holder)
        self._logged_lost: set[tuple[int, int]] = set()
        #: Segments the next prefetch looks ahead; grows while reads wait for prefetches.
        self.depth = options.prefetch_segments
        self._max_depth = max(options.prefetch_segments, options.max_prefetch_segments)

    @property
    def current(self) -> OpenSegment | None:
        """The segment the reader is positioned in, if any."""
        return self._holder[0]

    def fetcher(self, seg: SegmentInfo) -> Callable[[], bytes]:
        """A callable downloading ``seg``'s whole object (what the cache is given)."""
        store = self.store
        key = seg.key
        bucket = seg.bucket or None

        def fetch() -> bytes:
            return store.get(key, bucket=bucket)

        return fetch

    def drop_current(self) -> None:
        """Release the current segment's pin and forget its decoded state."""
        current = self._holder[0]
        if current is not None:
            current.release()
            self._holder[0] = None

    def open(self, seg: SegmentInfo, cur: int, tally: Tally) -> OpenSegment | None:
        """Position on ``seg``; ``None`` when its object is missing and the policy skips it."""
        key = segment_cache_key(self.store, seg)
        current = self._holder[0]
        if current is not None and current.cache_key == key:
            if current.segment != seg:
                # Another piece of the same object (overlap resolution): keep the bytes.
                current.segment = seg
                current.prefetched = False
            self._check_row(seg, current.reader)
            return current
        self.drop_current()
        try:
            if (
                self.options.range_reads
                and cur > seg.base_offset
                and not self.cache.contains(key)
                and not self.cache.in_flight(key)
            ):
                opened = self._open_ranged(seg, key, tally)
                if opened is None:
                    opened = self._open_whole(seg, key, tally)
            else:
                opened = self._open_whole(seg, key, tally)
        except ObjectNotFoundError as exc:
            self._missing(seg, cur, exc, tally)
            return None
        self._holder[0] = opened
        return opened

    def _open_whole(self, seg: SegmentInfo, key: Hashable, tally: Tally) -> OpenSegment:
        fetch = self.fetcher(seg)
        for attempt in (1, 2):
            lease = self.cache.get(key, fetch, size_hint=seg.size_bytes or None)
            if lease.hit:
                tally.hits += 1
            else:
                tally.misses += 1
                tally.bytes_fetched += lease.size
            if lease.prefetched:
                tally.prefetch_hits += 1
                if lease.waited > 0.0 and self.depth:
                    # The prefetch was issued but had not landed (the get joined it in
                    # flight): look further ahead.
                    self.depth = min(self.depth * 2, self._max_depth)
            try:
                reader = SegmentReader(
                    lease.data,
                    key=seg.key,
                    verify_crc=self.options.verify_crc,
                    max_block_bytes=self.options.max_block_bytes,
                )
            except CorruptSegmentError as exc:
                lease.release()
                self.cache.invalidate(key)
                if attempt == 2:
                    raise exc.with_key(seg.key) from None
                _LOG.warning(
                    "segment %r of %s/%d is corrupt (%s); fetching it once more",
                    seg.key,
                    self.topic,
                    self.partition,
                    exc,
                )
                continue
            except BaseException:
                lease.release()
                raise
            try:
                self._check_row(seg, reader)
            except BaseException:
                lease.release()
                raise
            opened = OpenSegment(seg, key, reader, lease)
            opened.refetched = attempt == 2
            return opened
        raise AssertionError("unreachable")

    def _open_ranged(self, seg: SegmentInfo, key: Hashable, tally: Tally) -> OpenSegment | None:
        """Open ``seg`` with ranged GETs; ``None`` to fall back to a whole-object read.

        The CRC-32 covers the whole file, so it cannot be verified on this path.
        """
        store = self.store
        bucket = seg.bucket or None
        fetched = [0]

        def fetch_range(start: int, end: int) -> bytes:
            data = store.get_range(seg.key, start, end, bucket=bucket)
            fetched[0] += len(data)
            return data

        size = seg.size_bytes if seg.size_bytes > 0 else store.size(seg.key, bucket=bucket)
        try:
            reader = SegmentReader.from_ranges(
                size, fetch_range, key=seg.key, max_block_bytes=self.options.max_block_bytes
            )
        except SegmentError as exc:
            # A stale size_bytes or a damaged tail: the whole-object path re-checks everything
            # (CRC included) and reports corruption properly.
            _LOG.info("range read of %r failed (%s); reading the whole object", seg.key, exc)
            tally.bytes_fetched += fetched[0]
            return None
        tally.misses += 1
        tally.bytes_fetched += fetched[0]
        self._check_row(seg, reader)
        return OpenSegment(seg, key, reader, None)

    def _check_row(self, seg: SegmentInfo, reader: SegmentReader) -> None:
        header = reader.header
        # Overlap resolution may narrow a row to a stretch of its object, so the header must
        # cover the row's range rather than equal it.
        if not header.base_offset <= seg.base_offset <= seg.end_offset <= header.end_offset:
            raise InconsistentMetadataError(
                f"segment {seg.key!r} of {self.topic!r} partition {self.partition} holds offsets "
                f"{header.base_offset}..{header.end_offset} (its header) but its metadata row "
                f"claims {seg.base_offset}..{seg.end_offset}"
            )

    def _missing(self, seg: SegmentInfo, cur: int, exc: ObjectNotFoundError, tally: Tally) -> None:
        lost = (max(cur, seg.base_offset), seg.end_offset)
        # A store whose root or bucket is not there is misconfigured, not missing a segment:
        # that is never skipped, or a typo in the url would read as an empty topic.
        self.store.check_root(bucket=seg.bucket or None)
        if self.options.on_missing_segment == "fail":
            raise DataLossError(
                f"segment object {seg.key!r} is missing from {self._store_url}; its records "
                "cannot be read (pass on_missing_segment='skip' to skip them)",
                topic=self.topic,
                partition=self.partition,
                start_offset=lost[0],
                end_offset=lost[1],
            ) from exc
        tally.lost.append(lost)
        if (seg.base_offset, seg.end_offset) not in self._logged_lost:
            self._logged_lost.add((seg.base_offset, seg.end_offset))
            _LOG.error(
                "skipping offsets %d..%d of %s/%d: segment object %r is missing",
                lost[0],
                lost[1],
                self.topic,
                self.partition,
                seg.key,
            )

    # ------------------------------------------------------------------------ decoded blocks

    def block(self, opened: OpenSegment, i: int) -> tuple[list[Record], list[int]]:
        """Block ``i``'s records and their offsets (the last block decoded is kept)."""
        if opened.block != i:
            records = self._decode(opened, lambda reader: reader.decode_block(i))
            opened.block = i
            opened.block_records = records
            opened.block_offsets = [r[0] for r in records]
        return opened.block_records, opened.block_offsets

    def block_columns(self, opened: OpenSegment, i: int) -> BlockColumns:
        """Block ``i`` decoded into Arrow columns (the last block decoded is kept)."""
        if opened.columns_block != i or opened.block_columns is None:
            opened.block_columns = self._decode(
                opened, lambda reader: reader.decode_block_columns(i)
            )
            opened.columns_block = i
        return opened.block_columns

    def _decode(self, opened: OpenSegment, decode: Callable[[SegmentReader], DecodedT]) -> DecodedT:
        """``decode(opened.reader)``, after one re-fetch of the segment if it is corrupt."""
        try:
            return decode(opened.reader)
        except CorruptSegmentError:
            if not self._refetch(opened):
                raise
            return decode(opened.reader)

    def _refetch(self, opened: OpenSegment) -> bool:
        """Replace ``opened``'s bytes by a fresh download; ``False`` when that was done already.

        Bytes that passed (or skipped) the CRC but do not decode are fetched once more; a
        range-read segment (no lease) is not re-fetched.
        """
        if opened.refetched or opened.lease is None:
            return False
        self.cache.invalidate(opened.cache_key)
        opened.refetched = True
        opened.lease.release()
        fresh = self._open_whole(opened.segment, opened.cache_key, Tally())
        opened.reader, opened.lease = fresh.reader, fresh.lease
        return True

    # ------------------------------------------------------------------------ prefetch

    def maybe_prefetch(
        self, opened: OpenSegment, cur: int, limit: int, segments: SegmentList, tally: Tally
    ) -> None:
        """Prefetch the segments after ``opened`` once the read at ``cur`` is far enough in it."""
        if opened.prefetched or self.depth == 0:
            return
        seg = opened.segment
        span = seg.end_offset - seg.base_offset + 1
        if (cur - seg.base_offset) < self.options.prefetch_threshold * span:
            return
        opened.prefetched = True
        items: list[tuple[Hashable, Callable[[], bytes], int | None]] = []
        for nxt in segments.following(seg.end_offset):
            if len(items) >= self.depth or nxt.base_offset >= limit:
                break
            key = segment_cache_key(self.store, nxt)
            if key == opened.cache_key:
                continue  # another piece of the object we already hold
            items.append((key, self.fetcher(nxt), nxt.size_bytes or None))
        if items:
            tally.prefetches += self.cache.prefetch(items)
