"""Restrictions, trackers, the watermark estimator and the versioned coders."""

from __future__ import annotations

import pickle

import pytest
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp

from streamhouse_beam.beam._coders import (
    DeadLetterRecord,
    DeadLetterRecordCoder,
    StreamHouseRecordCoder,
)
from streamhouse_beam.beam._discovery import NewPartitionsRestriction, NewPartitionsTracker
from streamhouse_beam.beam._read_fn import _RestrictionCoder
from streamhouse_beam.beam._restriction import (
    UNBOUNDED_STOP,
    PartitionRestriction,
    PartitionRestrictionTracker,
)
from streamhouse_beam.beam._watermark import (
    PartitionWatermarkEstimatorProvider,
    WatermarkStateCoder,
    _PartitionWatermarkEstimator,
)
from streamhouse_beam.errors import StreamHouseError
from streamhouse_beam.positions import StartPosition
from streamhouse_beam.records import StreamHouseRecord


def test_bounded_tracker_claims_with_gaps_and_splits_dynamically() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction(10, 30))
    assert tracker.is_bounded()
    assert tracker.try_claim(10) and tracker.try_claim(14)
    primary, residual = tracker.try_split(0.5)  # type: ignore[misc]
    assert primary == PartitionRestriction(10, 22) and residual == PartitionRestriction(22, 30)
    assert tracker.try_claim(21)
    assert not tracker.try_claim(22)
    tracker.check_done()


def test_unbounded_tracker_only_checkpoints() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction.open_ended(5))
    assert not tracker.is_bounded()
    assert tracker.try_claim(5) and tracker.try_claim(9)
    assert tracker.try_split(0.5) is None
    primary, residual = tracker.try_split(0)  # type: ignore[misc]
    assert primary == PartitionRestriction(5, 10)
    assert residual == PartitionRestriction.open_ended(10) and residual.unbounded
    assert not tracker.try_claim(10)
    tracker.check_done()


def test_a_checkpoint_only_bounded_tracker_refuses_fraction_splits() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction(10, 30), checkpoint_only=True)
    assert tracker.is_bounded()
    assert tracker.try_claim(10) and tracker.try_claim(14)
    for fraction in (0.5, 0.01, 0.99):
        assert tracker.try_split(fraction) is None
    assert tracker.current_restriction() == PartitionRestriction(10, 30)
    primary, residual = tracker.try_split(0)  # type: ignore[misc]
    assert primary == PartitionRestriction(10, 15) and residual == PartitionRestriction(15, 30)
    assert not tracker.try_claim(15)
    tracker.check_done()


def test_unbounded_checkpoint_before_any_claim_keeps_the_whole_range() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction.open_ended(7))
    primary, residual = tracker.try_split(0)  # type: ignore[misc]
    assert primary == PartitionRestriction(7, 7) and residual == PartitionRestriction.open_ended(7)
    tracker.check_done()


def test_claiming_the_stop_ends_an_open_ended_read() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction.open_ended(3))
    assert tracker.try_claim(3)
    assert not tracker.try_claim(UNBOUNDED_STOP)
    tracker.check_done()


def test_unfinished_tracker_is_not_done() -> None:
    tracker = PartitionRestrictionTracker(PartitionRestriction(0, 4))
    tracker.try_claim(1)
    with pytest.raises(ValueError, match="not done"):
        tracker.check_done()


def test_restrictions_are_immutable_and_picklable() -> None:
    r = PartitionRestriction(1, 9)
    with pytest.raises(AttributeError):
        r.unbounded = True  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(r)) == r
    with pytest.raises(ValueError, match="UNBOUNDED_STOP"):
        PartitionRestriction(1, 9, unbounded=True)


def test_new_partitions_tracker_claims_partitions_and_offsets_then_checkpoints() -> None:
    tracker = NewPartitionsTracker(NewPartitionsRestriction(2))
    assert tracker.try_claim(("partition", 2, 0))
    assert tracker.try_claim(("offset", 2, 0)) and tracker.try_claim(("offset", 2, 4))
    with pytest.raises(ValueError, match="partition 4 claimed while 3 is next"):
        tracker.try_claim(("partition", 4, 0))
    with pytest.raises(ValueError, match="below its position"):
        tracker.try_claim(("offset", 2, 1))
    assert tracker.try_split(0.5) is None
    primary, residual = tracker.try_split(0)  # type: ignore[misc]
    assert residual == NewPartitionsRestriction(3, ((2, 5),)) and primary.done
    assert not tracker.try_claim(("offset", 2, 5))
    tracker.check_done()
    ended = NewPartitionsTracker(residual)
    assert not ended.try_claim(("end",))
    ended.check_done()
    assert ended.current_restriction().done


@pytest.mark.parametrize(
    "restriction",
    [
        PartitionRestriction(0, 0),
        PartitionRestriction(5, 1 << 40),
        PartitionRestriction.open_ended(123),
        NewPartitionsRestriction(0),
        NewPartitionsRestriction(4, ((4, 10), (5, 0)), done=False),
        NewPartitionsRestriction(6, (), done=True),
    ],
)
def test_restriction_coder_round_trips_deterministically(restriction: object) -> None:
    coder = _RestrictionCoder()
    encoded = coder.encode(restriction)
    assert coder.decode(encoded) == restriction
    assert coder.encode(coder.decode(encoded)) == encoded
    assert coder.is_deterministic()


@pytest.mark.parametrize(
    ("restriction", "encoded"),
    [
        (PartitionRestriction(5, 1 << 40), "01000000000000000005000001000000000000"),
        (PartitionRestriction.open_ended(123), "0100000000000000007b7fffffffffffffff01"),
        (
            NewPartitionsRestriction(4, ((4, 10), (5, 0))),
            "010100000000040000000200000004000000000000000a000000050000000000000000",
        ),
        (NewPartitionsRestriction(6, (), done=True), "0101010000000600000000"),
    ],
)
def test_restriction_coder_keeps_its_version_1_layout(restriction: object, encoded: str) -> None:
    # Restrictions checkpointed by an earlier release must decode, byte for byte.
    coder = _RestrictionCoder()
    assert coder.encode(restriction).hex() == encoded
    assert coder.decode(bytes.fromhex(encoded)) == restriction


def test_restriction_coder_refuses_unknown_versions() -> None:
    coder = _RestrictionCoder()
    encoded = bytearray(coder.encode(PartitionRestriction(1, 2)))
    encoded[0] = 9
    with pytest.raises(StreamHouseError, match="expected version 1"):
        coder.decode(bytes(encoded))
    with pytest.raises(StreamHouseError, match="kind"):
        coder.decode(b"\x01\x07")
    with pytest.raises(StreamHouseError, match="kind 1 with 4 bytes"):
        coder.decode(b"\x01\x01\x00\x00")


def test_watermark_is_monotonic_and_advances_when_idle() -> None:
    estimator = _PartitionWatermarkEstimator(None)
    assert estimator.current_watermark() == MIN_TIMESTAMP
    estimator.observe_event_time(100_000_000)
    estimator.observe_event_time(50_000_000)
    estimator.observe_timestamp(Timestamp(500))  # Beam's per-output call: chunks report instead
    assert estimator.current_watermark() == Timestamp(100)
    assert estimator.advance_idle(Timestamp(130), Duration(60)) == Timestamp(100)
    assert estimator.advance_idle(Timestamp(200), Duration(60)) == Timestamp(140)
    assert estimator.get_estimator_state() == Timestamp(140)


def test_watermark_is_seeded_from_a_timestamp_start() -> None:
    from streamhouse_beam.beam._descriptors import PartitionDescriptor

    provider = PartitionWatermarkEstimatorProvider()
    seeded = provider.initial_estimator_state(
        PartitionDescriptor("t", 0, StartPosition.timestamp(5_000)), None
    )
    assert seeded == Timestamp(5)
    assert provider.initial_estimator_state(PartitionDescriptor("t", 0), None) == MIN_TIMESTAMP


def test_watermark_state_coder_round_trips_and_is_versioned() -> None:
    coder = WatermarkStateCoder()
    for ts in (MIN_TIMESTAMP, Timestamp(0), Timestamp(micros=1_767_225_600_000_123)):
        assert coder.decode(coder.encode(ts)) == ts
    with pytest.raises(StreamHouseError, match="watermark state"):
        coder.decode(b"\x02" + bytes(8))


@pytest.mark.parametrize(
    "value",
    [b"raw", b"", "text", None, {"b": [1, 2], "a": {"x": b"y"}}, 3.5],
)
def test_record_coder_round_trips_every_value_kind(value: object) -> None:
    coder = StreamHouseRecordCoder()
    record = StreamHouseRecord("t", 3, (1 << 64) - 1, 1_767_225_600_000, b"k", value)
    assert coder.decode(coder.encode(record)) == record
    assert coder.is_deterministic()
    keyless = record._replace(key=None)
    assert coder.decode(coder.encode(keyless)) == keyless


def test_record_coder_is_registered_and_deterministic_for_dict_order() -> None:
    from apache_beam import coders

    import streamhouse_beam.beam  # noqa: F401 - registers the coders

    assert isinstance(coders.registry.get_coder(StreamHouseRecord), StreamHouseRecordCoder)
    coder = pickle.loads(pickle.dumps(StreamHouseRecordCoder()))
    one = StreamHouseRecord("t", 0, 1, 2, None, {"a": 1, "b": 2})
    two = StreamHouseRecord("t", 0, 1, 2, None, {"b": 2, "a": 1})
    assert coder.encode(one) == coder.encode(two)


def test_dead_letter_coder_round_trips() -> None:
    coder = DeadLetterRecordCoder()
    dead = DeadLetterRecord("t", 1, 2, 3, None, b"\xff", "not valid UTF-8")
    assert coder.decode(coder.encode(dead)) == dead
