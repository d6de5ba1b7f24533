"""claim_prefix: one claim per chunk leaves the tracker exactly as per-record claims would."""

from __future__ import annotations

from typing import Any

import pytest
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker

from streamhouse_beam.beam.claims import claim_each, claim_prefix
from streamhouse_beam.beam.restriction import PartitionRestriction, PartitionRestrictionTracker


class _Opaque:
    """A tracker wrapper claim_prefix does not know (no lock to hold)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def try_claim(self, position: int) -> bool:
        return bool(self.inner.try_claim(position))


@pytest.mark.parametrize("stop", [6, 7, 8, 9, 10, 30, 100])
@pytest.mark.parametrize("wrap", ["bare", "view", "opaque"])
def test_claim_prefix_matchesclaim_each_claims(stop: int, wrap: str) -> None:
    records = [(o,) for o in (6, 7, 9, 12, 20)]
    results = []
    for claim in (claim_prefix, claim_each):
        tracker = PartitionRestrictionTracker(PartitionRestriction(5, stop))
        assert tracker.try_claim(5)
        wrapped: Any = tracker
        if wrap == "view":
            wrapped = RestrictionTrackerView(ThreadsafeRestrictionTracker(tracker))
        elif wrap == "opaque":
            wrapped = _Opaque(tracker)
        take = claim(records, wrapped)
        done_error = None
        try:
            tracker.check_done()
        except ValueError as exc:
            done_error = str(exc)
        results.append((take, tracker.current_restriction(), done_error))
    assert results[0] == results[1]


def test_claim_prefix_after_a_checkpoint_claims_nothing() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction(0, 100))
    assert tracker.try_claim(3)
    assert tracker.try_split(0) is not None
    assert claim_prefix([(4,), (5,)], tracker) == 0
    tracker.check_done()
