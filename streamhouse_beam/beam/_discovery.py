"""Partition discovery: the partitions a read starts with, and those created while it tails.

:class:`DiscoverPartitionsFn` lists each topic's partitions when the pipeline starts and emits
one :class:`~streamhouse_beam.beam._descriptors.PartitionDescriptor` per partition. For a
tailing read it also emits one :class:`NewPartitionsDescriptor` per topic, the partitions
numbered after those.

That element is read by the same splittable DoFn as the partitions
(:mod:`streamhouse_beam.beam._read_fn`), not by a watching DoFn of its own upstream of the read:
runners such as FnApiRunner run a stage only once every stage upstream of it has finished, and
a stage that watches a topic for new partitions never finishes, so the read would never start.
Within the read's DoFn, the element has its own source, :class:`NewPartitionsSource`, which
owns its restriction (:class:`NewPartitionsRestriction`), tracker (:class:`NewPartitionsTracker`),
coder and poll loop. Each ``process()`` call of it

1. ends the restriction when the transform's ``max_records`` budget is spent;
2. waits out ``poll_interval`` after a poll that found nothing, as a partition does;
3. every ``partition_discovery_interval``, lists the topic and claims each partition created
   since (``("partition", p, earliest offset)``), so it is read from its earliest offset;
4. reads the partitions discovered so far, one read each, sharing the poll's record and byte
   limits and its ``max_poll_seconds`` (a call that stops early starts the next at the
   partition it did not reach), each chunk going out through
   :meth:`Chunk.emit <streamhouse_beam.beam._poll.Chunk.emit>` exactly as a partition's own
   chunks do, its offsets claimed through :class:`NewPartitionOffsets`;
5. checkpoints: after ``poll_interval`` when every partition was caught up (counted as an
   empty poll; the idle watermark advances), at once otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.runners.sdf_utils import RestrictionTrackerView
from apache_beam.utils.timestamp import Duration

from streamhouse_beam.beam._claims import claim_each
from streamhouse_beam.beam._coders import DeterministicCoder
from streamhouse_beam.beam._descriptors import PartitionDescriptor, ReadConfig
from streamhouse_beam.beam._restriction import RESTRICTION_CODER_VERSION, restriction_kind
from streamhouse_beam.beam._source import Source, Worker
from streamhouse_beam.beam._worker_state import worker_resources
from streamhouse_beam.errors import StreamHouseError
from streamhouse_beam.records import TopicPartition

__all__ = [
    "DiscoverPartitionsFn",
    "NewPartitionOffsets",
    "NewPartitionsDescriptor",
    "NewPartitionsRestriction",
    "NewPartitionsRestrictionCoder",
    "NewPartitionsSource",
    "NewPartitionsTracker",
]

_LOG = logging.getLogger(__name__)

#: The claim that ends the restriction (refused, leaving nothing to do).
_END = ("end",)


class DiscoverPartitionsFn(beam.DoFn):  # type: ignore[misc]
    """Emits one :class:`PartitionDescriptor` per existing partition of each input topic.

    For a tailing read with partition discovery it also emits one
    :class:`NewPartitionsDescriptor` per topic for the partitions created later.
    """

    def __init__(self, config: ReadConfig, start: Any, stop: Any) -> None:
        self.config = config
        self.start = start
        self.stop = stop

    def process(self, topic: str) -> Iterator[PartitionDescriptor | NewPartitionsDescriptor]:
        metadata = worker_resources(self.config).metadata
        partitions = metadata.partitions(topic)
        for info in partitions:
            yield PartitionDescriptor(topic, info.partition, self.start, self.stop)
        if self.stop is None and self.config.partition_discovery_interval > 0:
            first = max((info.partition for info in partitions), default=-1) + 1
            yield NewPartitionsDescriptor(topic, first)


@dataclasses.dataclass(frozen=True)
class NewPartitionsDescriptor:
    """The partitions of ``topic`` numbered ``first_partition`` and above, once they exist.

    A tailing read emits one per topic next to the existing partitions' descriptors; its
    restriction discovers partitions created while the pipeline runs and reads each from its
    earliest offset.
    """

    topic: str
    first_partition: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.first_partition}+"


class NewPartitionsRestriction:
    """What the reader of partitions created after launch has left to do. Immutable.

    Attributes:
        next_partition: the lowest partition number not discovered yet.
        positions: ``(partition, next offset)`` of every partition discovered so far, sorted.
        done: True once the read ended (``max_records``); nothing is left.
    """

    __slots__ = ("done", "next_partition", "positions")

    next_partition: int
    positions: tuple[tuple[int, int], ...]
    done: bool

    def __init__(
        self, next_partition: int, positions: tuple[tuple[int, int], ...] = (), done: bool = False
    ) -> None:
        object.__setattr__(self, "next_partition", int(next_partition))
        object.__setattr__(self, "positions", tuple(sorted((int(p), int(o)) for p, o in positions)))
        object.__setattr__(self, "done", bool(done))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("NewPartitionsRestriction is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (NewPartitionsRestriction, (self.next_partition, self.positions, self.done))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, NewPartitionsRestriction)
            and self.next_partition == other.next_partition
            and self.positions == other.positions
            and self.done == other.done
        )

    def __hash__(self) -> int:
        return hash((self.next_partition, self.positions, self.done))

    def __repr__(self) -> str:
        state = (
            "done" if self.done else f"next={self.next_partition}, positions={dict(self.positions)}"
        )
        return f"NewPartitionsRestriction({state})"


class NewPartitionsTracker(RestrictionTracker):  # type: ignore[misc]
    """Tracks a :class:`NewPartitionsRestriction`: discovery claims and per-partition offsets.

    Positions claimed are ``("partition", p, earliest)`` (partition ``p`` was discovered, read
    from offset ``earliest``; must be the next one), ``("offset", p, offset)`` (a record of
    ``p``, or the last offset a read scanned past) and ``("end",)`` (finish: refused, leaves
    nothing to do). Only checkpoints split it: the residual carries every position claimed so
    far; after a checkpoint every claim is refused.
    """

    def __init__(self, restriction: NewPartitionsRestriction) -> None:
        if not isinstance(restriction, NewPartitionsRestriction):
            raise TypeError(
                f"restriction must be a NewPartitionsRestriction, got {type(restriction).__name__}"
            )
        self._next = restriction.next_partition
        self._positions = dict(restriction.positions)
        self._done = restriction.done
        self._checkpointed = False

    def current_restriction(self) -> NewPartitionsRestriction:
        return NewPartitionsRestriction(self._next, tuple(self._positions.items()), self._done)

    def try_claim(self, position: tuple[Any, ...]) -> bool:
        if self._checkpointed or self._done:
            return False
        kind = position[0]
        if kind == "end":
            self._done = True
            return False
        if kind == "partition":
            partition = position[1]
            if partition != self._next:
                raise ValueError(f"partition {partition} claimed while {self._next} is next")
            self._next += 1
            self._positions[partition] = int(position[2]) if len(position) > 2 else 0
            return True
        if kind == "offset":
            _, partition, offset = position
            current = self._positions.get(partition)
            if current is None or offset < current:
                raise ValueError(
                    f"offset {offset} of partition {partition} claimed below its position {current}"
                )
            self._positions[partition] = offset + 1
            return True
        raise ValueError(f"unknown claim {position!r}")

    def try_split(
        self, fraction_of_remainder: float
    ) -> tuple[NewPartitionsRestriction, NewPartitionsRestriction] | None:
        if fraction_of_remainder != 0 or self._checkpointed or self._done:
            return None
        self._checkpointed = True
        residual = self.current_restriction()
        # The primary is the work this call did; it is finished when process() returns.
        return NewPartitionsRestriction(residual.next_partition, (), True), residual

    def check_done(self) -> None:
        if not (self._checkpointed or self._done):
            raise ValueError(
                "the new-partitions reader returned without a checkpoint or an end claim"
            )

    def current_progress(self) -> RestrictionProgress:
        return RestrictionProgress(completed=0.0, remaining=0.0 if self._done else 1.0)

    def is_bounded(self) -> bool:
        return False


class NewPartitionsRestrictionCoder(DeterministicCoder):
    """Deterministic, versioned encoding of a :class:`NewPartitionsRestriction`.

    Layout (big-endian): version ``u8``
    (:data:`~streamhouse_beam.beam._restriction.RESTRICTION_CODER_VERSION`), kind ``u8`` (1),
    flags ``u8`` (bit 0: done), next partition ``i32``, count ``i32``, then ``count`` times
    partition ``i32`` and next offset ``i64``: kind 1 of the envelope whose kind 0 is
    :class:`~streamhouse_beam.beam._restriction.PartitionRestrictionCoder`.
    """

    KIND = 1
    _HEAD = struct.Struct(">BBBii")
    _ITEM = struct.Struct(">iq")

    def encode(self, value: NewPartitionsRestriction) -> bytes:
        head = self._HEAD.pack(
            RESTRICTION_CODER_VERSION,
            self.KIND,
            1 if value.done else 0,
            value.next_partition,
            len(value.positions),
        )
        return head + b"".join(self._ITEM.pack(p, o) for p, o in value.positions)

    def decode(self, encoded: bytes) -> NewPartitionsRestriction:
        kind = restriction_kind(encoded)
        if kind == self.KIND and len(encoded) >= self._HEAD.size:
            _, _, flags, next_partition, count = self._HEAD.unpack_from(encoded)
            if len(encoded) == self._HEAD.size + count * self._ITEM.size:
                positions = tuple(
                    self._ITEM.unpack_from(encoded, self._HEAD.size + i * self._ITEM.size)
                    for i in range(count)
                )
                return NewPartitionsRestriction(next_partition, positions, bool(flags & 1))
        raise StreamHouseError(
            f"cannot decode a partition restriction: kind {kind} with {len(encoded)} bytes"
        )


class NewPartitionOffsets:
    """One partition's offsets of a new-partitions tracker, claimed like a partition's own.

    ``try_claim(offset)`` claims ``("offset", partition, offset)``. A chunk is claimed with
    one claim of its last offset when the tracker is a bare :class:`NewPartitionsTracker` or
    Beam's ``RestrictionTrackerView`` of the call's restriction, and record by record through
    any other wrapper, which is exact whatever the wrapper does.

    The one claim is exact: the tracker has no stop, and refuses an offset claim only once
    checkpointed or ended, which no offset claim changes. So claiming the chunk's last offset
    claims the whole chunk, leaving the position at last + 1 as per-record claims would, or
    nothing, as when a checkpoint lands before the first per-record claim; no split can land
    between per-record claims in a way the one claim would miss. This needs no lock and no
    private attribute of Beam's view.

    Args:
        tracker: the ``process()`` call's tracker of a :class:`NewPartitionsRestriction`.
        partition: the partition whose offsets are claimed.
    """

    __slots__ = ("_chunked", "_partition", "_tracker")

    def __init__(self, tracker: Any, partition: int) -> None:
        self._tracker = tracker
        self._partition = partition
        self._chunked = isinstance(tracker, NewPartitionsTracker) or (
            type(tracker) is RestrictionTrackerView
            and isinstance(tracker.current_restriction(), NewPartitionsRestriction)
        )

    def try_claim(self, offset: int) -> bool:
        """Claim one offset of the partition (a record, or the last offset a read passed)."""
        return bool(self._tracker.try_claim(("offset", self._partition, offset)))

    def claim_prefix(self, records: Sequence[tuple[Any, ...]]) -> int:
        """Claim the longest prefix of ``records`` the restriction holds; return its length."""
        if not records:
            return 0
        if self._chunked:
            return len(records) if self.try_claim(records[-1][0]) else 0
        return claim_each(records, self)


class NewPartitionsSource(Source):
    """Discovers and reads the partitions of a :class:`NewPartitionsDescriptor`.

    One ``process()`` call reads the discovered partitions one after another, in one
    :class:`~streamhouse_beam.beam._poll.Poll` whose limits they share, until the poll is spent
    or ``max_poll_seconds`` have passed (checked after each partition, so a call always reads
    at least one). A call that stops early starts the next one at the partition it did not
    reach, so a partition with a backlog cannot starve the others.
    """

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker)
        # Per topic: the partition the next call starts at (the first one a call did not reach).
        self._turns: dict[str, int] = {}

    def initial_restriction(self, element: NewPartitionsDescriptor) -> NewPartitionsRestriction:
        return NewPartitionsRestriction(element.first_partition)

    def create_tracker(self, restriction: NewPartitionsRestriction) -> NewPartitionsTracker:
        return NewPartitionsTracker(restriction)

    def restriction_size(
        self, element: NewPartitionsDescriptor, restriction: NewPartitionsRestriction
    ) -> float:
        # The partitions to come are unknown: a token size while the restriction is live.
        return 0.0 if restriction.done else 1.0

    def truncate(
        self, element: NewPartitionsDescriptor, restriction: NewPartitionsRestriction
    ) -> None:
        # On drain, partitions yet to be discovered are not waited for.
        return None

    def process(
        self,
        element: NewPartitionsDescriptor,
        bundle_finalizer: Any,
        tracker: Any,
        watermark_estimator: Any,
    ) -> Iterator[Any]:
        worker = self._worker
        config = worker.config
        budget = worker.budget()
        if budget is not None and budget.exhausted:
            tracker.try_claim(_END)
            return
        key = (config.run_id, ("new", element.topic))
        worker.pace(key)
        if worker.listing_due(element.topic) and not self._discover(element.topic, tracker):
            return

        poll = worker.poll(tracker, watermark_estimator)
        caught_up = True
        positions = tracker.current_restriction().positions
        turn = self._turns.pop(element.topic, 0)
        in_turn = [p for p in positions if p[0] >= turn] + [p for p in positions if p[0] < turn]
        for index, (partition, offset) in enumerate(in_turn):
            # The poll's limits are shared by the partitions it reads.
            if index and (poll.spent or poll.out_of_time()):
                self._turns[element.topic] = partition
                caught_up = False
                break
            tp = TopicPartition(element.topic, partition)
            offsets = NewPartitionOffsets(tracker, partition)
            cursor = poll.cursor(tp, worker.reader(tp), offsets, offset, chunked=False)
            # Read before claiming: the read may be slow and must not hold the tracker's lock.
            chunk = cursor.read()
            # Records claimed before a refused claim belong to this restriction: emit them, or
            # they would be lost (the residual starts after the last successful claim).
            yield from chunk.emit()
            if chunk.split:
                worker.note_progress(cursor, bundle_finalizer)
                return
            if budget is not None and budget.exhausted:
                worker.note_progress(cursor, bundle_finalizer)
                tracker.try_claim(_END)
                return
            if not cursor.claim_scanned():
                worker.note_progress(cursor, bundle_finalizer)
                return
            worker.note_progress(cursor, bundle_finalizer)
            caught_up = caught_up and cursor.caught_up

        worker.note_caught_up(key, caught_up)
        if caught_up:
            poll.count_empty()
            poll.advance_idle()
            tracker.defer_remainder(Duration.of(config.poll_interval))
        else:
            tracker.defer_remainder()

    def _discover(self, topic: str, tracker: Any) -> bool:
        """Claim every partition of ``topic`` created since the last listing.

        Returns:
            False when a claim was refused (a checkpoint came first).
        """
        worker = self._worker
        count = len(worker.resources().metadata.partitions(topic))
        for partition in range(tracker.current_restriction().next_partition, count):
            tp = TopicPartition(topic, partition)
            earliest = worker.reader(tp).earliest_offset()
            if not tracker.try_claim(("partition", partition, earliest)):
                return False
            _LOG.info("%s: new partition discovered, reading from offset %d", tp, earliest)
        return True
