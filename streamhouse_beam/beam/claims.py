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
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Sequence
from typing import Any

from streamhouse_beam.beam.restriction import PartitionRestrictionTracker

__all__ = ["claim_prefix"]


def claim_prefix(records: Sequence[tuple[Any, ...]], tracker: Any) -> int:
    """Claim the longest prefix of ``records`` the restriction holds; return its length.

    Args:
        records: ``(offset, ...)`` tuples in increasing offset order, after every offset
            claimed so far.
        tracker: the ``process()`` call's tracker: Beam's ``RestrictionTrackerView`` or a
            bare :class:`PartitionRestrictionTracker`; any other wrapper is claimed record by
            record, which is exact whatever it does.

    Returns:
        How many leading records are claimed (and must be emitted).
    """
    if not records:
        return 0
    inner = getattr(tracker, "_threadsafe_restriction_tracker", None)
    lock = getattr(inner, "_lock", None)
    if lock is None and not isinstance(tracker, PartitionRestrictionTracker):
        take = 0
        for rec in records:
            if not tracker.try_claim(rec[0]):
                break
            take += 1
        return take
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
