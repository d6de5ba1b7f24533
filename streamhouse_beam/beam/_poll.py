"""One ``process()`` call's poll: the limits its reads share, and the chunks they return.

A :class:`Poll` is made for each ``process()`` call; it holds what the call may still read
(``max_poll_records`` records, ``max_poll_bytes`` key and value bytes, ``max_poll_seconds``)
and what every chunk needs on its way out (the output kind, the transform's record budget,
the watermark estimator). A :class:`Cursor` is where one partition's read stands within the
poll: the next offset to read and the last one claimed. :meth:`Cursor.read` returns the next
:class:`Chunk`, read **before** anything is claimed, so a slow read never holds the tracker's
lock while a runner asks for a split.

Every chunk, whether of a partition's own range or of a partition found by discovery, and
whatever the output kind, then goes the same way out, in :meth:`Chunk.emit`:

1. cut before its first record at or after the stop time (:meth:`Cursor.read`, when the read
   has one); the read ends there;
2. take its records from the record budget (``max_records``); a short grant ends the read;
3. claim them on the tracker, with one claim (the output kind's ``claim``); a refused claim
   means a split took the rest, and the records not claimed go back to the budget;
4. convert the claimed records (the output kind's ``convert``);
5. report their largest event time to the watermark estimator, before any of them is
   returned.

:meth:`Chunk.emit` is the only place the read makes outputs, which is what lets the watermark
estimator ignore Beam's per-output ``observe_timestamp`` calls (a lock and a comparison per
record): step 5 has already reported the same maximum, once per chunk.
``tests/test_watermark_contract.py`` fails when an output of ``process()`` does not come from
here or leaves before its event time was reported.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from apache_beam.utils.timestamp import Duration, Timestamp

from streamhouse_beam.beam._claims import OffsetClaims
from streamhouse_beam.beam._descriptors import ReadConfig
from streamhouse_beam.beam._emit import timestamp_micros
from streamhouse_beam.beam._outputs import OutputKind
from streamhouse_beam.beam._worker_state import RecordBudget
from streamhouse_beam.partition_reader import PartitionReader, ReadBatch
from streamhouse_beam.records import TopicPartition

__all__ = ["Chunk", "Cursor", "Poll"]

#: The record count a read asks for when the poll has no record limit (bytes end it).
NO_RECORD_LIMIT = sys.maxsize


class Poll:
    """One ``process()`` call's reads: the limits they share and what their chunks go through.

    Args:
        kind: the read's output kind.
        config: the read's configuration (poll limits, event-time policy).
        budget: the transform's record budget in this process, or None.
        watermark_estimator: the call's watermark estimator.
        counted: counts one read's metrics (polls, bytes, cache, retries).
        metrics: the read's counters (``records_read``, ``empty_polls``), or None.
        chunk_records: records per read of a partition's range, between which the time limit
            is checked (ignored by output kinds that read the whole poll at once).
        idle_delay: how far behind now an idle partition's watermark goes.
    """

    __slots__ = (
        "_counted",
        "_deadline",
        "_idle_delay",
        "_metrics",
        "_processing_time",
        "budget",
        "bytes_left",
        "chunk_records",
        "kind",
        "records_left",
        "watermark_estimator",
    )

    def __init__(
        self,
        kind: OutputKind,
        config: ReadConfig,
        budget: RecordBudget | None,
        watermark_estimator: Any,
        counted: Callable[[ReadBatch[Any]], None],
        metrics: dict[str, Any] | None,
        chunk_records: int,
        idle_delay: Duration,
    ) -> None:
        self.kind = kind
        self.budget = budget
        self.watermark_estimator = watermark_estimator
        limit = config.max_poll_records
        self.records_left = NO_RECORD_LIMIT if limit is None else limit
        self.bytes_left = config.max_poll_bytes
        self.chunk_records: int | None = None if kind.whole_poll else chunk_records
        self._deadline = time.monotonic() + config.max_poll_seconds
        self._processing_time = config.event_time.kind == "processing_time"
        self._counted = counted
        self._metrics = metrics
        self._idle_delay = idle_delay

    def cursor(
        self,
        tp: TopicPartition,
        reader: PartitionReader,
        offsets: OffsetClaims,
        start: int,
        stop: int | None = None,
        *,
        stop_ms: int | None = None,
        chunked: bool = True,
    ) -> Cursor:
        """A cursor reading ``tp`` from ``start`` within this poll.

        Args:
            tp: the partition.
            reader: its reader.
            offsets: where its chunks claim their offsets.
            start: the first offset to read (nothing before it is claimed in this call).
            stop: the offset to stop before, or None.
            stop_ms: the stop time (ms) of an open-ended read: the read ends before the first
                record at or after it.
            chunked: read in chunks of :attr:`chunk_records` (else each read takes what is
                left of the poll).
        """
        return Cursor(self, tp, reader, offsets, start, stop, stop_ms, chunked)

    @property
    def spent(self) -> bool:
        """Whether the poll's record or byte limit is reached."""
        return self.records_left <= 0 or (self.bytes_left is not None and self.bytes_left <= 0)

    def out_of_time(self) -> bool:
        """Whether ``max_poll_seconds`` have passed since the poll began."""
        return time.monotonic() >= self._deadline

    def advance_idle(self) -> Timestamp:
        """Move the watermark of a caught-up, idle read to now minus the idle delay; return it."""
        return self.watermark_estimator.advance_idle(  # type: ignore[no-any-return]
            Timestamp.now(), self._idle_delay
        )

    def count_empty(self) -> None:
        """Count a poll that found nothing new."""
        if self._metrics is not None:
            self._metrics["empty_polls"].inc()

    def _took(self, batch: ReadBatch[Any]) -> None:
        self.records_left -= len(batch.records)
        if self.bytes_left is not None:
            self.bytes_left -= batch.bytes_read
        self._counted(batch)

    def _stamp(self) -> Timestamp | None:
        """Under processing time, now (never behind the watermark): every output's timestamp."""
        if not self._processing_time:
            return None
        now = Timestamp.now()
        watermark = self.watermark_estimator.current_watermark()
        return timestamp_micros(max(now, watermark).micros)


class Cursor:
    """Where one partition's read stands within a :class:`Poll`; made by :meth:`Poll.cursor`.

    Attributes:
        tp: the partition.
        start: the offset the read started at in this call.
        next_offset: where the next read starts: past everything the reads so far scanned.
        last_done: the last offset claimed in this call (a record's, or one the reads scanned
            past), or None.
        readable_end: the partition's readable end as the last read saw it.
        caught_up: the last read found nothing and reached the readable end.
    """

    __slots__ = (
        "_chunked",
        "_poll",
        "_reader",
        "_stop",
        "_stop_ms",
        "caught_up",
        "last_done",
        "next_offset",
        "offsets",
        "readable_end",
        "start",
        "tp",
    )

    def __init__(
        self,
        poll: Poll,
        tp: TopicPartition,
        reader: PartitionReader,
        offsets: OffsetClaims,
        start: int,
        stop: int | None,
        stop_ms: int | None,
        chunked: bool,
    ) -> None:
        self._poll = poll
        self.tp = tp
        self._reader = reader
        self.offsets = offsets
        self.start = start
        self._stop = stop
        self._stop_ms = stop_ms
        self._chunked = chunked
        self.next_offset = start
        self.last_done: int | None = None
        self.readable_end = start
        self.caught_up = False

    @property
    def position(self) -> int:
        """The next offset to claim: after the last one claimed, else where the call started."""
        return self.start if self.last_done is None else self.last_done + 1

    @property
    def at_stop(self) -> bool:
        """Whether the reads reached the stop offset the cursor was made with."""
        return self._stop is not None and self.next_offset >= self._stop

    def read(self) -> Chunk:
        """Read the next chunk, claiming nothing yet; cut it at the stop time."""
        poll = self._poll
        limit = poll.records_left
        if self._chunked and poll.chunk_records is not None:
            limit = min(limit, poll.chunk_records)
        batch = poll.kind.read(self._reader, self.next_offset, self._stop, limit, poll.bytes_left)
        poll._took(batch)
        records = batch.records
        self.next_offset = batch.next_offset
        self.readable_end = batch.readable_end
        self.caught_up = not len(records) and batch.next_offset >= batch.readable_end
        chunk = Chunk(self, records, len(records) < limit)
        if self._stop_ms is not None:
            cut = poll.kind.first_at_or_after(records, self._stop_ms)
            if cut is not None:
                chunk.records = records[:cut]
                chunk.ended = True
        return chunk

    def claim_scanned(self) -> bool:
        """Claim the offsets the reads scanned past without a record (gaps, lost ranges).

        A checkpoint then resumes after them instead of scanning them again.

        Returns:
            False when the claim was refused: a split took the rest of the restriction.
        """
        if self.next_offset <= self.position:
            return True
        if not self.offsets.try_claim(self.next_offset - 1):
            return False
        self.last_done = self.next_offset - 1
        return True


class Chunk:
    """One read's records of one partition, on their way out through :meth:`emit`.

    Attributes:
        records: the records read (cut at the stop time, then to what was claimed).
        short: the read returned fewer records than it asked for.
        ended: the read ends with this chunk (the stop time or the record budget cut it).
        split: a claim was refused: a split took the rest of the restriction.
    """

    __slots__ = ("_cursor", "ended", "records", "short", "split")

    def __init__(self, cursor: Cursor, records: Any, short: bool) -> None:
        self._cursor = cursor
        self.records = records
        self.short = short
        self.ended = False
        self.split = False

    def emit(self) -> Iterable[Any]:
        """Take the chunk from the budget, claim it, convert it and report its event time.

        Everything happens before this returns; the outputs are made as they are iterated
        (records in the global window) or already made.

        Returns:
            The outputs of the records this call claimed (none when a split came first).
        """
        cursor = self._cursor
        poll = cursor._poll
        records = self.records
        wanted = len(records)
        if not wanted:
            return ()
        budget = poll.budget
        granted = wanted if budget is None else budget.take(wanted)
        if granted < wanted:
            self.ended = True
            if not granted:
                return ()
            records = records[:granted]
        kind = poll.kind
        claimed, last = kind.claim(records, cursor.offsets)
        if claimed < granted:
            self.split = True
            if budget is not None:
                budget.give_back(granted - claimed)
            if not claimed:
                return ()
            records = records[:claimed]
        self.records = records
        cursor.last_done = last
        outputs, event_micros = kind.convert(cursor.tp, records, poll._stamp())
        if event_micros is not None:
            # Before the outputs leave: the estimator ignores Beam's per-output calls.
            poll.watermark_estimator.observe_event_time(event_micros)
        if poll._metrics is not None:
            poll._metrics["records_read"].inc(claimed)
        return outputs
