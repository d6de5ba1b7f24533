"""Claiming a polled chunk of offsets with one tracker claim instead of one per record.

A per-record ``try_claim`` goes through Beam's thread-safe tracker (a lock), the partition
tracker and Beam's offset tracker: about a microsecond per record, a large share of a read's
per-record cost. A claim of the chunk's last offset covers every earlier offset (the
restriction is an offset range), so :func:`claim_prefix` reads the current stop and claims the
last offset below it. That is exact only if no split moves the stop between the read and the
claim: a split landing there could leave the stop below the claimed offset, the claim is
refused, and the records between the last claim and the new stop would belong to this
restriction without ever being claimed or emitted (lost), since a tracker accepts only
increasing claims. So the chunk claim holds the thread-safe tracker's lock across both steps.

That lock is private to Beam: ``RestrictionTrackerView._threadsafe_restriction_tracker`` and
its re-entrant ``_lock``. They are used only on the Beam releases in
:data:`LOCKED_CLAIM_BEAM_VERSIONS` (the project's pinned range, read in Beam's
``apache_beam/runners/sdf_utils.py``), and only after :func:`_lock_layout_ok` has seen them on
a view built at import. Any other release, or any other tracker wrapper, is claimed with
:func:`claim_each`: one public ``try_claim`` per record, exact by definition (a split between
two claims refuses the later one), about a microsecond per record slower. A bare
:class:`PartitionRestrictionTracker` (no wrapper, so no other thread) is claimed by chunk
without a lock.

Under the lock the outcome is one that per-record claims could also have produced (a split
lands before or after the chunk's claims), and the tracker ends in the same state: when some
records do not fit, the first one past the stop is attempted (and refused) as the per-record
loop would, so ``check_done`` sees the same last attempt.

The chunk code does not call :func:`claim_prefix` directly: it claims through an
:class:`OffsetClaims` target, :class:`PartitionOffsets` for a partition's own tracker here, and
``NewPartitionOffsets`` (:mod:`streamhouse_beam.beam._discovery`) for a partition read by
partition discovery.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.version import __version__ as _BEAM_VERSION

from streamhouse_beam.beam._restriction import PartitionRestriction, PartitionRestrictionTracker

__all__ = [
    "LOCKED_CLAIM_BEAM_VERSIONS",
    "OffsetClaims",
    "PartitionOffsets",
    "claim_each",
    "claim_prefix",
]

#: The Beam releases, as ``[(major, minor) low, (major, minor) high)``, whose
#: ``RestrictionTrackerView`` keeps its thread-safe tracker in ``_threadsafe_restriction_tracker``
#: and whose ``ThreadsafeRestrictionTracker`` guards every call with the re-entrant
#: ``threading.RLock`` in ``_lock``. Widen it only after reading the new release's
#: ``sdf_utils.py``; ``tests/test_claims.py`` fails while the installed Beam is outside it.
LOCKED_CLAIM_BEAM_VERSIONS = ((2, 77), (2, 78))

_RLOCK_TYPE = type(threading.RLock())


def _release(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Beam version string, or None when it does not parse."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def _lock_of(view: Any) -> Any:
    """The re-entrant lock guarding ``view``'s tracker, or None when it cannot be seen."""
    threadsafe = getattr(view, "_threadsafe_restriction_tracker", None)
    if type(threadsafe) is not ThreadsafeRestrictionTracker:
        return None
    lock = getattr(threadsafe, "_lock", None)
    return lock if type(lock) is _RLOCK_TYPE else None


def _lock_layout_ok(version: str) -> bool:
    """Whether chunk claims may hold the lock of Beam's tracker view in this Beam release."""
    release = _release(version)
    low, high = LOCKED_CLAIM_BEAM_VERSIONS
    if release is None or not low <= release < high:
        return False
    try:
        tracker = PartitionRestrictionTracker(PartitionRestriction(0, 1))
        view = RestrictionTrackerView(ThreadsafeRestrictionTracker(tracker))
        lock = _lock_of(view)
        if lock is None:
            return False
        with lock:  # the view's own calls take it again: it must be re-entrant
            return bool(view.try_claim(0))
    except Exception:  # any change in those internals means: claim record by record
        return False


#: Whether :func:`claim_prefix` holds the lock of Beam's tracker view (else: per-record claims).
LOCKED_CLAIMS = _lock_layout_ok(_BEAM_VERSION)


def claim_prefix(records: Sequence[tuple[Any, ...]], tracker: Any) -> int:
    """Claim the longest prefix of ``records`` the restriction holds; return its length.

    Args:
        records: ``(offset, ...)`` tuples in increasing offset order, after every offset
            claimed so far.
        tracker: the ``process()`` call's tracker of a :class:`PartitionRestriction`: Beam's
            ``RestrictionTrackerView`` or a bare :class:`PartitionRestrictionTracker`; any
            other wrapper, and Beam's view outside :data:`LOCKED_CLAIM_BEAM_VERSIONS`, is
            claimed record by record, which is exact whatever it does.

    Returns:
        How many leading records are claimed (and must be emitted).
    """
    if not records:
        return 0
    if isinstance(tracker, PartitionRestrictionTracker):
        lock: Any = contextlib.nullcontext()  # no wrapper: no other thread can split
    elif LOCKED_CLAIMS and type(tracker) is RestrictionTrackerView:
        lock = _lock_of(tracker)
        if lock is None:
            return claim_each(records, tracker)
    else:
        return claim_each(records, tracker)
    with lock:
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
