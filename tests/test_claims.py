"""claim_prefix: one claim per chunk leaves the tracker exactly as per-record claims would.

The chunk claim holds the lock of Beam's tracker view, a private attribute, only on the Beam
releases known to have it; elsewhere every record is claimed with the public ``try_claim``.
Both paths are exercised here (the fallback forced).
"""

from __future__ import annotations

from typing import Any

import pytest
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.version import __version__ as beam_version

from streamhouse_beam.beam import _claims as claims
from streamhouse_beam.beam._claims import claim_each, claim_prefix
from streamhouse_beam.beam._restriction import PartitionRestriction, PartitionRestrictionTracker


class _Opaque:
    """A tracker wrapper claim_prefix does not know (no lock to hold)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def try_claim(self, position: int) -> bool:
        return bool(self.inner.try_claim(position))


class _CountingTracker(PartitionRestrictionTracker):
    """A partition tracker that records every claim attempted on it."""

    def __init__(self, restriction: PartitionRestriction) -> None:
        super().__init__(restriction)
        self.claims: list[int] = []

    def try_claim(self, position: int) -> bool:
        self.claims.append(position)
        return super().try_claim(position)


class _CheckpointedAfter(_CountingTracker):
    """Checkpointed by its runner (through the thread-safe tracker) after ``n`` claims."""

    def __init__(self, restriction: PartitionRestriction, n: int) -> None:
        super().__init__(restriction)
        self.threadsafe = ThreadsafeRestrictionTracker(self)
        self._left = n

    def try_claim(self, position: int) -> bool:
        claimed = super().try_claim(position)
        self._left -= 1
        if self._left == 0:
            assert self.threadsafe.try_split(0) is not None
        return claimed


@pytest.fixture(params=["locked", "per-record"])
def claim_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the chunk-claim path and again with the public-API fallback forced."""
    if request.param == "per-record":
        monkeypatch.setattr(claims, "LOCKED_CLAIMS", False)
    return str(request.param)


@pytest.mark.parametrize("stop", [6, 7, 8, 9, 10, 30, 100])
@pytest.mark.parametrize("wrap", ["bare", "view", "opaque"])
def test_claim_prefix_matches_per_record_claims(stop: int, wrap: str, claim_path: str) -> None:
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


def test_claim_prefix_after_a_checkpoint_claims_nothing(claim_path: str) -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction(0, 100))
    assert tracker.try_claim(3)
    assert tracker.try_split(0) is not None
    assert claim_prefix([(4,), (5,)], tracker) == 0
    tracker.check_done()


def test_the_view_is_claimed_with_one_claim_on_the_locked_path_else_per_record(
    claim_path: str,
) -> None:
    tracker = _CountingTracker(PartitionRestriction(0, 100))
    view = RestrictionTrackerView(ThreadsafeRestrictionTracker(tracker))
    assert claim_prefix([(o,) for o in range(10)], view) == 10
    assert tracker.claims == ([9] if claim_path == "locked" else list(range(10)))


def test_a_checkpoint_between_per_record_claims_keeps_exactly_the_claimed_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the lock a split can land between two claims: the later ones are refused, the
    # claimed records are this restriction's (emitted), the rest the residual's (none lost).
    monkeypatch.setattr(claims, "LOCKED_CLAIMS", False)
    tracker = _CheckpointedAfter(PartitionRestriction(0, 100), 3)
    view = RestrictionTrackerView(tracker.threadsafe)
    assert claim_prefix([(o,) for o in range(10)], view) == 3
    assert tracker.claims == [0, 1, 2, 3]
    assert tracker.current_restriction() == PartitionRestriction(0, 3)
    tracker.check_done()


def test_the_installed_beam_takes_the_locked_path() -> None:
    # Fails when Beam moves past LOCKED_CLAIM_BEAM_VERSIONS: read the new release's
    # apache_beam/runners/sdf_utils.py, then widen the range (or claims go per record).
    assert claims.LOCKED_CLAIMS, f"Beam {beam_version} is outside the chunk-claim range"


@pytest.mark.parametrize(
    ("version", "locked"),
    [
        ("2.77.0", True),
        ("2.77.1rc2", True),
        ("2.76.0", False),
        ("2.78.0", False),
        ("3.0.0", False),
        ("dev", False),
    ],
)
def test_the_lock_is_used_only_on_the_known_beam_releases(version: str, locked: bool) -> None:
    assert claims._lock_layout_ok(version) is locked


def test_a_view_without_the_known_layout_is_claimed_per_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracker = _CountingTracker(PartitionRestriction(0, 100))
    view = RestrictionTrackerView(ThreadsafeRestrictionTracker(tracker))
    view._threadsafe_restriction_tracker = _Opaque(tracker)  # type: ignore[assignment]
    assert claim_prefix([(o,) for o in range(4)], view) == 4
    assert tracker.claims == [0, 1, 2, 3]
