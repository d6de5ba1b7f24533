"""Claiming a polled chunk of offsets with one tracker claim instead of one per record.

A per-record ``try_claim`` goes through Beam's thread-safe tracker (a lock), the partition
tracker and Beam's offset tracker: about a microsecond per record, a large share of a read's
per-record cost. A claim of the chunk's last offset covers every earlier offset (the
restriction is an offset range), so :func:`claim_prefix` reads the current stop and claims the
last offset below it while holding the thread-safe tracker's lock, so no split can move the
stop in between. The outcome is one that per-record claims could also have produced (a split
lands before or after the chunk's claims), and the tracker ends in the same state: when some
records do not fit, the first one past the stop is attempted (and refused) as the per-record
loop would, so ``check_done`` sees the same last attempt.

Partitions found by partition discovery are read under a
:class:`~streamhouse_beam.beam.restriction.NewPartitionsTracker`, whose claims are
``("offset", partition, offset)``. :class:`NewPartitionOffsets` presents one partition of it as a
plain offset tracker, so the same chunk code (:func:`claim_prefix`, ``claim_batch``, the DoFn's
conversion) serves both paths. That tracker has no stop: it refuses an offset claim only once
checkpointed or ended, and no offset claim changes either. So a claim of the chunk's last offset
is exact on its own (Beam's thread-safe tracker makes the one claim atomic against a
checkpoint): it claims the whole chunk, leaving the position at last + 1 as per-record claims
would, or nothing, as when the checkpoint lands before the first per-record claim.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Sequence
from typing import Any

from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker

from streamhouse_beam.beam.restriction import NewPartitionsTracker, PartitionRestrictionTracker

__all__ = ["NewPartitionOffsets", "claim_each", "claim_prefix"]


def claim_prefix(records: Sequence[tuple[Any, ...]], tracker: Any) -> int:
    """Claim the longest prefix of ``records`` the restriction holds; return its length.

    Args:
        records: ``(offset, ...)`` tuples in increasing offset order, after every offset
            claimed so far.
        tracker: the ``process()`` call's tracker: Beam's ``RestrictionTrackerView`` or a
            bare :class:`PartitionRestrictionTracker`, or a :class:`NewPartitionOffsets`; any
            other wrapper is claimed record by record, which is exact whatever it does.

    Returns:
        How many leading records are claimed (and must be emitted).
    """
    if not records:
        return 0
    if isinstance(tracker, NewPartitionOffsets):
        return tracker.claim_prefix(records)
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


class NewPartitionOffsets:
    """One partition's offsets of a new-partitions tracker, claimed like a partition tracker.

    ``try_claim(offset)`` claims ``("offset", partition, offset)``; :func:`claim_prefix` claims
    a chunk with one claim of its last offset when the tracker is a bare
    :class:`NewPartitionsTracker` or Beam's view of one (see the module docstring), and record
    by record through any other wrapper, which is exact whatever the wrapper does.

    Args:
        tracker: the ``process()`` call's tracker of a ``NewPartitionsRestriction``.
        partition: the partition whose offsets are claimed.
    """

    __slots__ = ("_chunked", "_partition", "_tracker")

    def __init__(self, tracker: Any, partition: int) -> None:
        self._tracker = tracker
        self._partition = partition
        self._chunked = _is_new_partitions_tracker(tracker)

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


def _is_new_partitions_tracker(tracker: Any) -> bool:
    """Whether ``tracker`` claims exactly as a :class:`NewPartitionsTracker` (no wrapper logic)."""
    if isinstance(tracker, NewPartitionsTracker):
        return True
    if type(tracker) is not RestrictionTrackerView:
        return False
    threadsafe = tracker._threadsafe_restriction_tracker
    return type(threadsafe) is ThreadsafeRestrictionTracker and isinstance(
        threadsafe._restriction_tracker, NewPartitionsTracker
    )
