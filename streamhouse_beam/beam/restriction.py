"""The partition restriction, its tracker and its versioned coder.

A :class:`PartitionRestriction` is an :class:`~apache_beam.io.restriction_trackers.OffsetRange`
of one partition plus a flag saying whether the range is open-ended (a tailing read):

* **Bounded** (a stop offset is known): :class:`PartitionRestrictionTracker` behaves exactly
  like Beam's ``OffsetRestrictionTracker`` — offsets may be claimed with gaps (compacted
  segments, holes), and the range is dynamically splittable at any fraction, so a runner can
  hand the second half of a big partition to another worker.
* **Unbounded**: the range is ``[start, UNBOUNDED_STOP)``. Python Beam has no growable tracker,
  so the tracker accepts only checkpoints (``try_split(0)``) — the residual keeps the open end,
  the primary becomes the finite range already claimed — and reports ``is_bounded() == False``.
  ``truncate`` on drain returns ``None``: an open-ended read has nothing left to finish.

Partitions created while a tailing read runs are read by one more element per topic, whose
:class:`NewPartitionsRestriction` lists the partitions it discovered and their next offsets
(:class:`NewPartitionsTracker`; checkpoints only). Discovery lives inside the read stage so it
works on every runner, including FnApiRunner, which runs a stage only after its upstream
stages have finished.

To end an open-ended read early (``max_records`` reached, a stop timestamp seen), the DoFn claims
the range's stop, which is refused and leaves nothing unclaimed: ``check_done`` then passes.
"""

from __future__ import annotations

import struct
from typing import Any

from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker

from streamhouse_beam.beam.coders import DeterministicCoder
from streamhouse_beam.errors import StreamHouseError

__all__ = [
    "UNBOUNDED_STOP",
    "NewPartitionsRestriction",
    "NewPartitionsTracker",
    "PartitionRestriction",
    "PartitionRestrictionCoder",
    "PartitionRestrictionTracker",
]

#: The stop of an open-ended range: the largest signed 64-bit offset (never a real offset).
UNBOUNDED_STOP = (1 << 63) - 1


class PartitionRestriction:
    """An offset range of one partition, bounded or open-ended. Immutable."""

    __slots__ = ("range", "unbounded")

    range: OffsetRange
    unbounded: bool

    def __init__(self, start: int, stop: int, unbounded: bool = False) -> None:
        if unbounded and stop != UNBOUNDED_STOP:
            # A residual of an unbounded checkpoint always keeps the open end.
            raise ValueError(f"an unbounded restriction must stop at UNBOUNDED_STOP, got {stop}")
        object.__setattr__(self, "range", OffsetRange(start, stop))
        object.__setattr__(self, "unbounded", bool(unbounded))

    @classmethod
    def open_ended(cls, start: int) -> PartitionRestriction:
        """``[start, ∞)``: a tailing read."""
        return cls(start, UNBOUNDED_STOP, unbounded=True)

    @property
    def start(self) -> int:
        return int(self.range.start)

    @property
    def stop(self) -> int:
        return int(self.range.stop)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PartitionRestriction is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (PartitionRestriction, (self.start, self.stop, self.unbounded))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PartitionRestriction)
            and self.start == other.start
            and self.stop == other.stop
            and self.unbounded == other.unbounded
        )

    def __hash__(self) -> int:
        return hash((self.start, self.stop, self.unbounded))

    def __repr__(self) -> str:
        if self.unbounded:
            return f"PartitionRestriction({self.start}, ∞)"
        return f"PartitionRestriction({self.start}, {self.stop})"

    def size(self) -> int:
        """Number of offsets in a bounded range (not meaningful when open-ended)."""
        return self.stop - self.start


class PartitionRestrictionTracker(RestrictionTracker):  # type: ignore[misc]
    """Tracks claims in a :class:`PartitionRestriction`; see the module docstring."""

    def __init__(self, restriction: PartitionRestriction) -> None:
        if not isinstance(restriction, PartitionRestriction):
            raise TypeError(
                f"restriction must be a PartitionRestriction, got {type(restriction).__name__}"
            )
        self._unbounded = restriction.unbounded
        self._offsets = OffsetRestrictionTracker(restriction.range)
        self._claimed = 0

    def current_restriction(self) -> PartitionRestriction:
        rng = self._offsets.current_restriction()
        return PartitionRestriction(
            rng.start, rng.stop, self._unbounded and rng.stop == UNBOUNDED_STOP
        )

    def try_claim(self, position: int) -> bool:
        claimed = bool(self._offsets.try_claim(position))
        if claimed:
            self._claimed += 1
        return claimed

    def try_split(
        self, fraction_of_remainder: float
    ) -> tuple[PartitionRestriction, PartitionRestriction] | None:
        if self._unbounded and fraction_of_remainder != 0:
            # An open end cannot be divided by a fraction; only checkpoints are allowed.
            return None
        split = self._offsets.try_split(fraction_of_remainder)
        if not split:
            return None
        primary, residual = split
        return (
            PartitionRestriction(primary.start, primary.stop),
            PartitionRestriction(
                residual.start, residual.stop, self._unbounded and residual.stop == UNBOUNDED_STOP
            ),
        )

    def check_done(self) -> None:
        self._offsets.check_done()

    def current_progress(self) -> RestrictionProgress:
        if not self._unbounded:
            return self._offsets.current_progress()
        # The remaining work of a tailing read is unknown; report what was done and a token
        # remainder so runners keep treating the restriction as live.
        return RestrictionProgress(completed=float(self._claimed), remaining=1.0)

    def is_bounded(self) -> bool:
        return not self._unbounded


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

    # Shared shape with PartitionRestriction for the DoFn's book-keeping.
    unbounded = True


class NewPartitionsTracker(RestrictionTracker):  # type: ignore[misc]
    """Tracks a :class:`NewPartitionsRestriction`: discovery claims and per-partition offsets.

    Positions claimed are ``("partition", p)`` (partition ``p`` was discovered; must be the next
    one), ``("offset", p, offset)`` (a record of ``p``, or the last offset a read scanned past)
    and ``("end",)`` (finish: refused, leaves nothing to do). Only checkpoints split it: the
    residual carries every position claimed so far; after a checkpoint every claim is refused.
    """

    def __init__(self, restriction: NewPartitionsRestriction) -> None:
        if not isinstance(restriction, NewPartitionsRestriction):
            raise TypeError(
                f"restriction must be a NewPartitionsRestriction, got {type(restriction).__name__}"
            )
        self._initial = restriction
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


class PartitionRestrictionCoder(DeterministicCoder):
    """Deterministic, versioned encoding of both restriction types.

    Layout (big-endian): version ``u8`` (1), kind ``u8``; kind 0 (:class:`PartitionRestriction`):
    start ``i64``, stop ``i64``, flags ``u8`` (bit 0: unbounded); kind 1
    (:class:`NewPartitionsRestriction`): flags ``u8`` (bit 0: done), next partition ``i32``,
    count ``i32``, then ``count`` times partition ``i32`` and next offset ``i64``. Unknown
    versions and kinds are refused rather than guessed.
    """

    VERSION = 1
    _RANGE = struct.Struct(">BBqqB")
    _NEW_HEAD = struct.Struct(">BBBii")
    _NEW_ITEM = struct.Struct(">iq")

    def encode(self, value: PartitionRestriction | NewPartitionsRestriction) -> bytes:
        if isinstance(value, PartitionRestriction):
            return self._RANGE.pack(
                self.VERSION, 0, value.start, value.stop, 1 if value.unbounded else 0
            )
        head = self._NEW_HEAD.pack(
            self.VERSION, 1, 1 if value.done else 0, value.next_partition, len(value.positions)
        )
        return head + b"".join(self._NEW_ITEM.pack(p, o) for p, o in value.positions)

    def decode(self, encoded: bytes) -> PartitionRestriction | NewPartitionsRestriction:
        if len(encoded) < 2 or encoded[0] != self.VERSION:
            raise StreamHouseError(
                f"cannot decode a partition restriction: expected version {self.VERSION}, got "
                f"{encoded[:1].hex() or 'nothing'} ({len(encoded)} bytes; written by a newer "
                "streamhouse-beam?)"
            )
        kind = encoded[1]
        if kind == 0 and len(encoded) == self._RANGE.size:
            _, _, start, stop, flags = self._RANGE.unpack(encoded)
            return PartitionRestriction(start, stop, bool(flags & 1))
        if kind == 1 and len(encoded) >= self._NEW_HEAD.size:
            _, _, flags, next_partition, count = self._NEW_HEAD.unpack_from(encoded)
            if len(encoded) == self._NEW_HEAD.size + count * self._NEW_ITEM.size:
                positions = tuple(
                    self._NEW_ITEM.unpack_from(
                        encoded, self._NEW_HEAD.size + i * self._NEW_ITEM.size
                    )
                    for i in range(count)
                )
                return NewPartitionsRestriction(next_partition, positions, bool(flags & 1))
        raise StreamHouseError(
            f"cannot decode a partition restriction: kind {kind} with {len(encoded)} bytes"
        )
