"""The partition restriction, its tracker and its versioned coder.

A :class:`PartitionRestriction` is an :class:`~apache_beam.io.restriction_trackers.OffsetRange`
of one partition plus a flag saying whether the range is open-ended (a tailing read):

* **Bounded** (a stop offset is known): :class:`PartitionRestrictionTracker` behaves exactly
  like Beam's ``OffsetRestrictionTracker`` — offsets may be claimed with gaps (compacted
  segments, holes), and the range is dynamically splittable at any fraction, so a runner can
  hand the second half of a big partition to another worker. A read that commits offsets
  (``checkpoint_only``) accepts checkpoints only: see :class:`PartitionRestrictionTracker`.
* **Unbounded**: the range is ``[start, UNBOUNDED_STOP)``. Python Beam has no growable tracker,
  so the tracker accepts only checkpoints (``try_split(0)``) — the residual keeps the open end,
  the primary becomes the finite range already claimed — and reports ``is_bounded() == False``.
  ``truncate`` on drain returns ``None``: an open-ended read has nothing left to finish.

Partitions created while a tailing read runs have a restriction of their own, in
:mod:`streamhouse_beam.beam._discovery`.

To end an open-ended read early (``max_records`` reached, a stop timestamp seen), the DoFn claims
the range's stop, which is refused and leaves nothing unclaimed: ``check_done`` then passes.
"""

from __future__ import annotations

import struct
from typing import Any

from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker

from streamhouse_beam.beam._coders import DeterministicCoder
from streamhouse_beam.errors import StreamHouseError

__all__ = [
    "RESTRICTION_CODER_VERSION",
    "UNBOUNDED_STOP",
    "PartitionRestriction",
    "PartitionRestrictionCoder",
    "PartitionRestrictionTracker",
    "restriction_kind",
]

#: The stop of an open-ended range: the largest signed 64-bit offset (never a real offset).
UNBOUNDED_STOP = (1 << 63) - 1
#: Byte 0 of every encoded restriction of the read stage, whatever its kind (byte 1).
RESTRICTION_CODER_VERSION = 1


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
    """Tracks claims in a :class:`PartitionRestriction`; see the module docstring.

    Args:
        restriction: the range to track.
        checkpoint_only: refuse splits at a fraction above 0 also when the range is bounded.
            A read that commits each partition's next offset needs it: a commit says every
            offset below it was read, which holds only while a partition's ranges are read one
            after another. After a dynamic split the second range is read next to the first
            one (on another worker), and a commit from it could pass offsets the first one has
            not read yet, which a restart from the commits would then skip.
    """

    def __init__(self, restriction: PartitionRestriction, *, checkpoint_only: bool = False) -> None:
        if not isinstance(restriction, PartitionRestriction):
            raise TypeError(
                f"restriction must be a PartitionRestriction, got {type(restriction).__name__}"
            )
        self._checkpoint_only = checkpoint_only
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
        if (self._unbounded or self._checkpoint_only) and fraction_of_remainder != 0:
            # An open end cannot be divided by a fraction, and a committing read's ranges must
            # be read in order: only checkpoints are allowed.
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


def restriction_kind(encoded: bytes) -> int:
    """The kind byte of an encoded read-stage restriction, after checking its version byte.

    Raises:
        StreamHouseError: the encoding is not of :data:`RESTRICTION_CODER_VERSION`.
    """
    if len(encoded) < 2 or encoded[0] != RESTRICTION_CODER_VERSION:
        raise StreamHouseError(
            "cannot decode a partition restriction: expected version "
            f"{RESTRICTION_CODER_VERSION}, got {encoded[:1].hex() or 'nothing'} ({len(encoded)} "
            "bytes; written by a newer streamhouse-beam?)"
        )
    return encoded[1]


class PartitionRestrictionCoder(DeterministicCoder):
    """Deterministic, versioned encoding of a :class:`PartitionRestriction`.

    Layout (big-endian): version ``u8`` (:data:`RESTRICTION_CODER_VERSION`), kind ``u8`` (0),
    start ``i64``, stop ``i64``, flags ``u8`` (bit 0: unbounded). Partition discovery's
    restriction is kind 1 of the same envelope
    (:class:`~streamhouse_beam.beam._discovery.NewPartitionsRestrictionCoder`); the read DoFn's
    coder picks between the two by the kind byte. Unknown versions and kinds are refused
    rather than guessed.
    """

    KIND = 0
    _RANGE = struct.Struct(">BBqqB")

    def encode(self, value: PartitionRestriction) -> bytes:
        return self._RANGE.pack(
            RESTRICTION_CODER_VERSION,
            self.KIND,
            value.start,
            value.stop,
            1 if value.unbounded else 0,
        )

    def decode(self, encoded: bytes) -> PartitionRestriction:
        kind = restriction_kind(encoded)
        if kind == self.KIND and len(encoded) == self._RANGE.size:
            _, _, start, stop, flags = self._RANGE.unpack(encoded)
            return PartitionRestriction(start, stop, bool(flags & 1))
        raise StreamHouseError(
            f"cannot decode a partition restriction: kind {kind} with {len(encoded)} bytes"
        )
