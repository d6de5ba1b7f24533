"""Read the records of one partition range: metadata + segment cache + segment decoding.

:class:`PartitionReader` is the Beam-free core of the connector. Given a metadata store, an
object store and a :class:`~streamhouse_beam.cache.SegmentCache`, it returns the records of one
partition with ``start <= offset < stop`` in offset order, in batches (the splittable DoFn calls
:meth:`PartitionReader.read` once per ``process()`` call). It fixes the shortcomings of
StreamHouse's own reader, which stops at the first offset no segment covers (failing when it
has read nothing yet), trusts the high watermark alone, and prefetches the segment at
``base + 10000`` under a cache key its reads never look up:

* **Gaps are skipped forward.** Offsets no segment row covers (before the first segment, between
  segments, or a hole inside ``[earliest, readable_end)`` whose rows were removed) do not exist
  and are not data loss: the read continues at the next segment's ``base_offset``. A hole at the
  tail (readable end above every segment) is skipped to the readable end. Inside a compacted
  segment missing offsets are simply absent.
* **Readable end** is ``max(high_watermark, max(end_offset) + 1)`` as the metadata store
  reports it (a restored store can leave the watermark below its segments). It is always read
  *before* the segment list, so a segment the watermark promises is never missed: both are
  committed in one transaction by StreamHouse, and a later query sees at least what an earlier
  one saw (:class:`~streamhouse_beam._segment_list.SegmentList` keeps both).
* **Exact prefetch.** Once this read has consumed ``prefetch_threshold`` of the current
  segment's offsets, the next ``prefetch_segments`` segments *of the metadata list* are handed to
  the cache's background prefetch. When a prefetched segment is still downloading as the read
  reaches it, the look-ahead doubles (up to ``max_prefetch_segments``): a consumer faster than
  one round trip per segment needs several downloads in flight. Cache keys are
  ``(store url, bucket, s3_key, created_at)``, so an object re-written under the same key is
  never served stale.
* **Range reads** (``ReadOptions.range_reads``): a read that starts inside a segment that is not
  cached fetches the footer, header and index, then only the blocks it needs. The CRC-32 covers
  the whole file and **cannot be verified** on this path; segments read after it use whole-object
  GETs again (and the cache and its prefetch).
* **Failures are named.** A missing object raises :class:`DataLossError` naming the topic,
  partition and offset range (or, with ``on_missing_segment="skip"``, the range is skipped,
  reported in :attr:`ReadBatch.lost_ranges` and logged once). A CRC mismatch or a truncated or
  corrupt body is re-fetched once (the cache entry is invalidated first), then raised as the
  :class:`SegmentError` naming the object key. A segment whose header does not cover the offsets
  its row claims raises :class:`InconsistentMetadataError` naming the key and both ranges.

Hot path: the parsed :class:`~streamhouse_beam.segment.reader.SegmentReader` of the current segment and its last decoded block are
kept between calls, so successive reads of one segment neither re-parse nor re-decode; a read
resumes at the block containing its start offset and finds its position by binary search. The
current segment stays pinned in the cache until the reader moves past it or is closed. Opening,
re-fetching and prefetching segments is :class:`~streamhouse_beam._open_segment.SegmentOpener`'s
work; this module holds the read loop.

Columnar reads: :meth:`PartitionReader.read_columns` is :meth:`PartitionReader.read` (same loop,
same bookkeeping) returning the records as one ``pyarrow.RecordBatch``: blocks are decoded
straight into Arrow buffers, a read inside one block is a zero-copy slice of them, and only a
read spanning blocks or segments concatenates (``output="batches"`` polls this way).
"""

from __future__ import annotations

import bisect
import dataclasses
import operator
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from streamhouse_beam._open_segment import SegmentOpener, Tally, segment_cache_key
from streamhouse_beam._segment_list import SegmentList
from streamhouse_beam.cache import SegmentCache
from streamhouse_beam.metadata.base import MetadataStore
from streamhouse_beam.records import SegmentInfo
from streamhouse_beam.segment.format import DEFAULT_MAX_BLOCK_BYTES
from streamhouse_beam.segment.reader import Record
from streamhouse_beam.storage.base import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

    from streamhouse_beam.segment.columns import Piece

__all__ = ["PartitionReader", "ReadBatch", "ReadOptions", "segment_cache_key"]

MissingPolicy = Literal["fail", "skip"]


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How a :class:`PartitionReader` reads segments: the read transforms' reader settings.

    The first five are arguments of the read transforms (see :mod:`streamhouse_beam.settings`,
    whose defaults for them are these); the others are tuned here.

    Attributes:
        verify_crc: check each whole segment's CRC-32 (never possible on the range-read path).
        prefetch_threshold: fraction of the current segment's offsets consumed after which the
            next segments are prefetched (StreamHouse's 80 %).
        prefetch_segments: how many following segments to prefetch; 0 disables prefetch.
        on_missing_segment: ``"fail"`` raises :class:`DataLossError` for a segment object that
            no longer exists; ``"skip"`` skips its offsets and reports them in ``lost_ranges``.
        range_reads: start inside an uncached segment with ranged GETs (footer, index, blocks)
            instead of downloading the whole object.
        max_prefetch_segments: the look-ahead doubles, up to this many segments, each time a
            read still has to wait for a segment that was prefetched (the consumer is
            faster than one download); the cache's budget bounds it in any case.
        max_block_bytes: largest declared uncompressed block accepted (corruption guard).
        metadata_refresh_seconds: the segment list and readable end are re-read when older.

    Raises:
        TypeError: a setting of the wrong type (named, with the value).
        ValueError: a setting out of range (named, with the value).
    """

    verify_crc: bool = True
    prefetch_threshold: float = 0.8
    prefetch_segments: int = 2
    on_missing_segment: MissingPolicy = "fail"
    range_reads: bool = False
    max_prefetch_segments: int = 16
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES
    metadata_refresh_seconds: float = 30.0

    def __post_init__(self) -> None:
        for flag in ("verify_crc", "range_reads"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        threshold: object = self.prefetch_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"prefetch_threshold must be a number, got {threshold!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"prefetch_threshold must be within [0, 1], got {threshold!r}")
        object.__setattr__(self, "prefetch_threshold", float(threshold))
        for count in ("prefetch_segments", "max_prefetch_segments"):
            value = getattr(self, count)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{count} must be an int, got {value!r}")
            if value < 0:
                raise ValueError(f"{count} must be >= 0, got {value!r}")
        if self.on_missing_segment not in ("fail", "skip"):
            raise ValueError(
                f"on_missing_segment must be 'fail' or 'skip', got {self.on_missing_segment!r}"
            )
        if not isinstance(self.max_block_bytes, int) or self.max_block_bytes <= 0:
            raise ValueError(
                f"max_block_bytes must be a positive int, got {self.max_block_bytes!r}"
            )
        if not self.metadata_refresh_seconds >= 0:
            raise ValueError(
                f"metadata_refresh_seconds must be >= 0, got {self.metadata_refresh_seconds!r}"
            )


RecordsT = TypeVar("RecordsT")


@dataclasses.dataclass
class ReadBatch(Generic[RecordsT]):
    """What one :meth:`PartitionReader.read` or :meth:`~PartitionReader.read_columns` call returns.

    Attributes:
        records: the records in offset order: ``(offset, timestamp, key, value)`` tuples from
            ``read``, a ``pyarrow.RecordBatch`` with
            :data:`streamhouse_beam.segment.columns.BATCH_SCHEMA` from ``read_columns``.
        next_offset: where the next read continues: the last returned offset + 1, or further
            when the read scanned past a gap, the rest of a segment or a lost range. Never above
            the stop offset or the readable end.
        readable_end: the exclusive readable end observed
            (``max(high_watermark, max(end_offset) + 1)``).
        bytes_read: key and value bytes of the returned records.
        bytes_fetched: segment bytes this call downloaded itself (cache misses and range GETs).
        cache_hits: segments served by the cache without a download of their own.
        cache_misses: segments this call had to download.
        prefetches: background downloads this call started.
        prefetch_hits: segments this call found already prefetched.
        lost_ranges: inclusive offset ranges skipped because their object is missing (only
            with ``on_missing_segment="skip"``).
    """

    records: RecordsT
    next_offset: int
    readable_end: int
    bytes_read: int = 0
    bytes_fetched: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    prefetches: int = 0
    prefetch_hits: int = 0
    lost_ranges: list[tuple[int, int]] = dataclasses.field(default_factory=list)


def _check_read_args(
    start_offset: int, stop_offset: int | None, max_records: int, max_bytes: int | None
) -> None:
    if not isinstance(start_offset, int) or start_offset < 0:
        raise ValueError(f"start_offset must be an int >= 0, got {start_offset!r}")
    if stop_offset is not None and (not isinstance(stop_offset, int) or stop_offset < 0):
        raise ValueError(f"stop_offset must be None or an int >= 0, got {stop_offset!r}")
    if not isinstance(max_records, int) or max_records <= 0:
        raise ValueError(f"max_records must be a positive int, got {max_records!r}")
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0
    ):
        raise ValueError(f"max_bytes must be None or a positive int, got {max_bytes!r}")


def _payload_bytes(records: Sequence[Record]) -> int:
    """Key and value bytes of ``records``, without a Python-level step per record (hot path)."""
    values = sum(map(len, map(_VALUE, records)))
    # filter(None) drops absent keys (and empty ones, which count 0 bytes anyway).
    return values + sum(map(len, filter(None, map(_KEY, records))))


_KEY = operator.itemgetter(2)
_VALUE = operator.itemgetter(3)


def _records_reaching(records: Sequence[Record], budget: int) -> int:
    """How many of ``records`` (from the first) it takes for their key and value bytes to
    reach ``budget`` (> 0); ``len(records)`` when they all stay below it."""
    total = 0
    for i, (_, _, key, value) in enumerate(records):
        total += len(value) + (len(key) if key else 0)
        if total >= budget:
            return i + 1
    return len(records)


def _batch(
    tally: Tally, records: RecordsT, next_offset: int, readable_end: int, bytes_read: int
) -> ReadBatch[RecordsT]:
    """A read call's result: ``records`` and its positions with the call's segment counters."""
    return ReadBatch(
        records=records,
        next_offset=next_offset,
        readable_end=readable_end,
        bytes_read=bytes_read,
        bytes_fetched=tally.bytes_fetched,
        cache_hits=tally.hits,
        cache_misses=tally.misses,
        prefetches=tally.prefetches,
        prefetch_hits=tally.prefetch_hits,
        lost_ranges=tally.lost,
    )


class PartitionReader:
    """Records of one StreamHouse partition, read through a shared segment cache.

    Not thread-safe: use one reader per thread (they may share the cache, the metadata store and
    the object store). Readers hold open metadata state only; pickling is not supported.

    Args:
        metadata: the metadata store (one organization).
        store: the object store holding the segments.
        cache: the (usually per-worker) segment cache.
        topic: topic name.
        partition: partition number.
        options: how to read.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        store: ObjectStore,
        cache: SegmentCache,
        topic: str,
        partition: int,
        options: ReadOptions = ReadOptions(),
    ) -> None:
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty str, got {topic!r}")
        if not isinstance(partition, int) or partition < 0:
            raise ValueError(f"partition must be an int >= 0, got {partition!r}")
        self.metadata = metadata
        self.store = store
        self.cache = cache
        self.topic = topic
        self.partition = partition
        self.options = options
        self._store_url = store.url
        self._list = SegmentList(metadata, topic, partition, options.metadata_refresh_seconds)
        self._opener = SegmentOpener(store, cache, topic, partition, options)

    def __repr__(self) -> str:
        return f"PartitionReader({self.topic!r}, {self.partition}, store={self._store_url!r})"

    # ------------------------------------------------------------------------------- public

    def read(
        self,
        start_offset: int,
        stop_offset: int | None,
        max_records: int,
        max_bytes: int | None = None,
    ) -> ReadBatch[list[Record]]:
        """Return up to ``max_records`` records with ``start_offset <= offset < stop_offset``.

        Args:
            start_offset: first offset wanted.
            stop_offset: exclusive end; ``None`` reads up to the readable end. A stop beyond the
                readable end returns what is readable now.
            max_records: most records returned (> 0).
            max_bytes: when given (> 0), the read also ends at the first record with which
                the key and value bytes returned reach ``max_bytes`` (so it returns at least
                one record, and exceeds ``max_bytes`` by less than that record's bytes).

        Returns:
            The batch; ``next_offset`` is where the following call should start. An empty batch
            with ``next_offset == start_offset`` means nothing is readable there yet.

        Raises:
            DataLossError: a segment object is missing and the policy is ``"fail"``.
            SegmentError: a segment is corrupt even after one re-fetch (names the object key).
            InconsistentMetadataError: a segment's header does not cover its row's offsets.
            StorageError, MetadataError: the stores failed past their retry budgets.
        """
        _check_read_args(start_offset, stop_offset, max_records, max_bytes)
        out: list[Record] = []
        next_offset, end, tally = self._scan(
            start_offset, stop_offset, max_records, max_bytes, out, None
        )
        return _batch(tally, out, next_offset, end, _payload_bytes(out))

    def read_columns(
        self,
        start_offset: int,
        stop_offset: int | None,
        max_records: int,
        max_bytes: int | None = None,
    ) -> ReadBatch[pa.RecordBatch]:
        """:meth:`read` with the records as one Arrow ``RecordBatch`` (needs ``pyarrow``).

        Exactly the semantics of :meth:`read` (the same records for the same ``max_records``
        and ``max_bytes``, ``next_offset``, readable end, lost ranges, missing-segment policy,
        re-fetch of a corrupt segment and counters), but
        blocks are decoded straight into Arrow columns and the records are zero-copy slices of
        them, concatenated only when the read spans blocks: no Python object per record. The
        batch has :data:`streamhouse_beam.segment.columns.BATCH_SCHEMA` (``large_binary``
        key/value past 2 GiB of bytes). Decoded blocks are cached separately from
        :meth:`read`'s, so mixing both on one reader is correct but decodes twice.

        Raises:
            The same as :meth:`read`.
        """
        from streamhouse_beam.segment.columns import assemble_batch

        _check_read_args(start_offset, stop_offset, max_records, max_bytes)
        pieces: list[Piece] = []
        next_offset, end, tally = self._scan(
            start_offset, stop_offset, max_records, max_bytes, None, pieces
        )
        payload = 0
        for block, first, count in pieces:
            payload += block.key_bytes(first, first + count)
            payload += block.value_bytes(first, first + count)
        return _batch(
            tally, assemble_batch(self.topic, self.partition, pieces), next_offset, end, payload
        )

    def _scan(
        self,
        start_offset: int,
        stop_offset: int | None,
        max_records: int,
        max_bytes: int | None,
        out: list[Record] | None,
        pieces: list[Piece] | None,
    ) -> tuple[int, int, Tally]:
        """The read loop of :meth:`read` and :meth:`read_columns`.

        Appends records to ``out`` (or block runs to ``pieces``); returns ``(next_offset,
        readable end, tally)``.
        """
        end = self._list.end_for(start_offset, stop_offset)
        limit = end if stop_offset is None else min(stop_offset, end)
        tally = Tally()
        got = 0
        # Key and value bytes still wanted; the byte budget is spent once this is <= 0.
        byte_room = max_bytes
        cur = start_offset
        while got < max_records and cur < limit and (byte_room is None or byte_room > 0):
            seg = self._list.segment_at(cur, limit)
            if seg is None:
                # Nothing at or after `cur` below the readable end: a hole at the tail.
                cur = limit
                break
            if seg.base_offset > cur:
                cur = min(seg.base_offset, limit)
                continue
            cur, took, took_bytes = self._read_segment(
                seg, cur, limit, max_records - got, byte_room, out, pieces, tally
            )
            got += took
            if byte_room is not None:
                byte_room -= took_bytes
        if cur > limit:
            cur = limit
        return max(cur, start_offset), end, tally

    def readable_end(self, refresh: bool = True) -> int:
        """The exclusive readable end (``max(high_watermark, max(end_offset) + 1)``).

        Args:
            refresh: query the metadata store; otherwise return the last observed value (and
                query only if none was observed yet).
        """
        return self._list.readable_end(refresh)

    def earliest_offset(self) -> int:
        """The partition's first existing offset (``min(base_offset)``; the readable end if none)."""
        return self._list.refresh_end().earliest_offset

    def offset_for_timestamp(self, timestamp_ms: int) -> int:
        """The first offset whose record timestamp is ``>= timestamp_ms``; the readable end if none.

        Candidate segments come from the metadata store (by their last record's timestamp).
        Within a candidate, timestamps may be out of order, so every block before the first
        block whose index timestamp reaches ``timestamp_ms`` is decoded and searched; that block's
        first record is the answer when none of them has one.
        """
        if not isinstance(timestamp_ms, int) or timestamp_ms < 0:
            raise ValueError(f"timestamp_ms must be an int >= 0, got {timestamp_ms!r}")
        end = self.readable_end(refresh=True)
        for seg in self.metadata.segments_for_timestamp(self.topic, self.partition, timestamp_ms):
            if seg.base_offset >= end:
                break
            found = self._first_at_or_after(seg, timestamp_ms)
            if found is not None:
                return found
        return end

    def estimate_bytes(self, start: int, stop: int) -> float:
        """Estimated segment bytes holding offsets ``[start, stop)``, without any I/O.

        Uses the segment list this reader already holds, prorating each segment's size by the
        share of its offset range that falls in ``[start, stop)``; offsets beyond the known list
        count nothing.
        """
        return self._list.estimate_bytes(start, stop)

    def first_segment_fetch(
        self, start_offset: int
    ) -> tuple[Hashable, Callable[[], bytes], int] | None:
        """The ``(cache key, fetch, size)`` of the first segment a read from ``start_offset`` needs.

        The DoFn hands these for every partition of a bundle to :meth:`SegmentCache.prefetch` at
        once, so a worker with many partitions pays one round trip instead of one per partition.
        Returns ``None`` when no segment holds offsets at or after ``start_offset``.
        """
        self._list.ensure(start_offset)
        seg = self._list.find(start_offset)
        if seg is None:
            return None
        return (
            segment_cache_key(self.store, seg),
            self._opener.fetcher(seg),
            seg.size_bytes if seg.size_bytes > 0 else 0,
        )

    def refresh_metadata(self, from_offset: int = 0) -> None:
        """Re-read the readable end, then the segment list from ``from_offset``.

        Useful before :meth:`estimate_bytes` in a process that has not read yet (a restriction
        provider): one partition query and one segment query.
        """
        if not isinstance(from_offset, int) or from_offset < 0:
            raise ValueError(f"from_offset must be an int >= 0, got {from_offset!r}")
        self._list.refresh_end()
        self._list.load(from_offset)

    def segments(self) -> list[SegmentInfo]:
        """The segment list this reader currently holds (a copy, for diagnostics and tests)."""
        return list(self._list.segments)

    def close(self) -> None:
        """Release the pinned segment and forget decoded state; the reader stays usable."""
        self._opener.drop_current()

    def __enter__(self) -> PartitionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_segment(
        self,
        seg: SegmentInfo,
        cur: int,
        limit: int,
        room: int,
        byte_room: int | None,
        out: list[Record] | None,
        pieces: list[Piece] | None,
        tally: Tally,
    ) -> tuple[int, int, int]:
        """Add records of ``seg`` from ``cur`` to ``out`` (or block runs to ``pieces``).

        At most ``room`` records; with ``byte_room`` (> 0), up to the first record with which
        the key and value bytes added reach it.

        Returns:
            ``(offset to continue at, records added, their key and value bytes)``; the bytes
            are counted only when ``byte_room`` is given (0 otherwise).
        """
        after = seg.end_offset + 1
        opener = self._opener
        opened = opener.open(seg, cur, tally)
        if opened is None:
            return after, 0, 0
        reader = opened.reader
        seg_stop = min(limit, after)
        index = reader.index
        blocks = len(index)
        wanted = room
        added_bytes = 0
        records: list[Record] = []
        offsets: Sequence[int]
        while room > 0 and cur < seg_stop and (byte_room is None or added_bytes < byte_room):
            if not blocks:
                cur = after
                break
            bi = reader.block_for_offset(cur)
            if pieces is None:
                records, offsets = opener.block(opened, bi)
            else:
                columns = opener.block_columns(opened, bi)
                offsets = columns.offset_list
            pos = bisect.bisect_left(offsets, cur)
            stop_pos = bisect.bisect_left(offsets, seg_stop, pos)
            take = min(stop_pos - pos, room)
            if take > 0 and byte_room is not None:
                # The byte budget may end the read inside this run: keep the shortest prefix
                # whose bytes reach what is left of it.
                left = byte_room - added_bytes
                if pieces is None:
                    run = records[pos : pos + take]
                    run_bytes = _payload_bytes(run)
                    if run_bytes >= left:
                        take = _records_reaching(run, left)
                        run_bytes = _payload_bytes(run[:take])
                else:
                    take = columns.records_reaching(pos, pos + take, left)
                    run_bytes = columns.key_bytes(pos, pos + take) + columns.value_bytes(
                        pos, pos + take
                    )
                added_bytes += run_bytes
            if take > 0:
                if pieces is None:
                    assert out is not None
                    out.extend(records[pos : pos + take])
                else:
                    pieces.append((columns, pos, take))
                room -= take
                cur = offsets[pos + take - 1] + 1
            if pos + take < stop_pos:
                break  # room exhausted inside the block
            if stop_pos < len(offsets):
                cur = max(cur, seg_stop)  # the next record of the block is at or past the stop
                break
            # This block is exhausted: move to the next one or past the segment.
            cur = index[bi + 1].offset if bi + 1 < blocks else after
            if cur > after:
                cur = after
        opener.maybe_prefetch(opened, cur, limit, self._list, tally)
        return cur, wanted - room, added_bytes

    def _first_at_or_after(self, seg: SegmentInfo, timestamp_ms: int) -> int | None:
        opened = self._opener.open(seg, seg.base_offset, Tally())
        if opened is None:
            return None
        reader = opened.reader
        # Timestamps may go backwards, so blocks are searched in order from the one holding the
        # row's first offset. The scan ends at the latest in the first block whose index
        # timestamp (its first record's) reaches the target, as that record qualifies.
        for i in range(reader.block_for_offset(seg.base_offset), reader.block_count):
            records, _ = self._opener.block(opened, i)
            for off, ts, _k, _v in records:
                if off > seg.end_offset:
                    return None
                if off >= seg.base_offset and ts >= timestamp_ms:
                    return off
        return None
