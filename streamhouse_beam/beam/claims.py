"""Claiming a polled chunk of offsets with one tracker claim instead of one per record.

A per-record ``try_claim`` goes through Beam's thread-safe tracker (a lock), the partition
tracker and Beam's offset tracker: about a microsecond per record, a large share of a read's
per-record cost. A claim of the chunk's last offset covers every earlier offset (the
restriction is an offset range), so :func:`claim_prefix` reads the current stop and claims the
last offset below it. That is exact only if no split moves the stop between the read and the
claim: a split landing there could leave the stop below the claimed offset, the claim is
refused, and the records between the last claim and the new stop would belong to this
restriction without ever being claimed or emitted (lost), since a tracker accepts only
increasing claims. So the chunk claim holds the thread-safe tracker's lock across both steps;
a tracker wrapper without that lock is claimed record by record (:func:`claim_each`).

Under the lock the outcome is one that per-record claims could also have produced (a split
lands before or after the chunk's claims), and the tracker ends in the same state: when some
records do not fit, the first one past the stop is attempted (and refused) as the per-record
loop would, so ``check_done`` sees the same last attempt.

The chunk code does not call :func:`claim_prefix` directly: it claims through an
:class:`OffsetClaims` target, :class:`PartitionOffsets` for a partition's own tracker here, and
``NewPartitionOffsets`` (:mod:`streamhouse_beam.beam.discovery`) for a partition read by
partition discovery.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

from streamhouse_beam.beam.restriction import PartitionRestrictionTracker

__all__ = [
    "OffsetClaims",
    "PartitionOffsets",
    "claim_each",
    "claim_prefix",
]


def claim_prefix(records: Sequence[tuple[Any, ...]], tracker: Any) -> int:
    """Claim the longest prefix of ``records`` the restriction holds; return its length.

    Args:
        records: ``(offset, ...)`` tuples in increasing offset order, after every offset
            claimed so far.
        tracker: the ``process()`` call's tracker of a :class:`PartitionRestriction`: Beam's
            ``RestrictionTrackerView`` or a bare :class:`PartitionRestrictionTracker`; any
            other wrapper is claimed record by record, which is exact whatever it does.

    Returns:
        How many leading records are claimed (and must be emitted).
    """
    if not records:
        return 0
    inner = getattr(tracker, "_threadsafe_restriction_tracker", None)
    lock = getattr(inner, "_lock", None)
    if lock is None and not isinstance(tracker, PartitionRestrictionTracker):
        return claim_each(records, tracker)
    with lock if lock is not None else contextlib.nullcontext():
        stop = tracker.current_restriction().stop
        take = len(records)
        if records[-1][0] >= stop:
            take = bisect.bisect_left([r[0] for r in records], stop)
        if take and not tracker.try_claim(records[take - 1][0]):
            take = 0  # only a checkpoint taken before this call gets here: nothing is ours
        elif take < len(records):
            tracker.try_claim(records[take][0])
    return take


def claim_each(records: Sequence[tuple[Any, ...]], tracker: Any) -> int:
    """Claim ``records`` one offset at a time until a claim is refused; return how many.

    The definition the chunk claims are measured against, and their fallback for trackers
    whose wrapper logic they cannot see through.
    """
    take = 0
    for rec in records:
        if not tracker.try_claim(rec[0]):
            break
        take += 1
    return take


class OffsetClaims(Protocol):
    """Where a chunk of one partition claims its offsets."""

    def try_claim(self, offset: int) -> bool:
        """Claim one offset (the last one a read scanned past); False: a split took it."""
        ...

    def claim_prefix(self, records: Sequence[tuple[Any, ...]]) -> int:
        """Claim the longest prefix of ``records`` the restriction holds; return its length."""
        ...


class PartitionOffsets:
    """The offsets of a partition's own restriction, claimed on the ``process()`` call's tracker.

    Args:
        tracker: the call's tracker of a :class:`PartitionRestriction`.
    """

    __slots__ = ("_tracker",)

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker

    def try_claim(self, offset: int) -> bool:
        return bool(self._tracker.try_claim(offset))

    def claim_prefix(self, records: Sequence[tuple[Any, ...]]) -> int:
        return claim_prefix(records, self._tracker)
