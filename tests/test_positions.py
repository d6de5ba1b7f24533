"""StartPosition / StopPosition: validation and per-partition resolution."""

from __future__ import annotations

import dataclasses
import pickle
import re

import pytest

from streamhouse_beam.positions import (
    NoCommittedOffsetError,
    ResolvedStop,
    StartPosition,
    StopPosition,
)
from streamhouse_beam.records import TopicPartition

TP = TopicPartition("orders", 1)


@dataclasses.dataclass
class View:
    """A partition with offsets [earliest, end) whose record at offset o has timestamp 10*o."""

    earliest: int = 5
    end: int = 20
    committed: dict[str, int] = dataclasses.field(default_factory=dict)

    def earliest_offset(self) -> int:
        return self.earliest

    def readable_end(self) -> int:
        return self.end

    def offset_for_timestamp(self, timestamp_ms: int) -> int:
        for offset in range(self.earliest, self.end):
            if offset * 10 >= timestamp_ms:
                return offset
        return self.end

    def committed_offset(self, group_id: str) -> int | None:
        return self.committed.get(group_id)


def test_earliest_and_latest_resolve_to_partition_bounds() -> None:
    assert StartPosition.earliest().resolve(TP, View()) == 5
    assert StartPosition.latest().resolve(TP, View()) == 20


def test_timestamp_start_is_first_record_at_or_after_it() -> None:
    assert StartPosition.timestamp(101).resolve(TP, View()) == 11
    assert StartPosition.timestamp(10_000).resolve(TP, View()) == 20


def test_committed_start_uses_commit_then_fallback() -> None:
    view = View(committed={"g": 12})
    assert StartPosition.committed("g").resolve(TP, view) == 12
    assert StartPosition.committed("other").resolve(TP, view) == 5
    assert StartPosition.committed("other", fallback="latest").resolve(TP, view) == 20
    with pytest.raises(NoCommittedOffsetError, match="'other'"):
        StartPosition.committed("other", fallback="fail").resolve(TP, view)


def test_start_below_earliest_is_raised_to_earliest() -> None:
    assert StartPosition.offsets({1: 0}).resolve(TP, View()) == 5
    assert StartPosition.committed("g").resolve(TP, View(committed={"g": 2})) == 5


def test_offsets_prefer_topic_key_and_apply_default() -> None:
    start = StartPosition.offsets({1: 7, ("orders", 1): 9, ("other", 1): 11})
    assert start.resolve(TP, View()) == 9
    assert start.resolve(TopicPartition("x", 1), View()) == 7
    assert start.resolve(TopicPartition("x", 0), View()) == 5
    latest = StartPosition.offsets({0: 6}, default="latest")
    assert latest.resolve(TP, View()) == 20
    with pytest.raises(ValueError, match="no offset for topic 'orders' partition 1"):
        StartPosition.offsets({0: 6}, default="fail").resolve(TP, View())


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: StartPosition.committed(""), ValueError, "group_id"),
        (lambda: StartPosition.committed("g", fallback="nope"), ValueError, "fallback"),  # type: ignore[arg-type]
        (lambda: StartPosition.offsets([1, 2]), TypeError, "mapping"),  # type: ignore[arg-type]
        (lambda: StartPosition.offsets({"a": 1}), TypeError, "key 'a'"),  # type: ignore[dict-item]
        (lambda: StartPosition.offsets({-1: 1}), ValueError, "negative partition"),
        (lambda: StartPosition.offsets({0: -1}), ValueError, r"offsets\[0\]"),
        (lambda: StartPosition.offsets({0: 1.5}), TypeError, "int offset"),  # type: ignore[dict-item]
        (lambda: StartPosition.timestamp(-5), ValueError, "timestamp_ms"),
        (lambda: StartPosition.timestamp(1.0), TypeError, "timestamp_ms"),  # type: ignore[arg-type]
        (lambda: StopPosition.offsets({0: 1}, default="x"), ValueError, "default"),  # type: ignore[arg-type]
        (lambda: StopPosition.timestamp(True), TypeError, "timestamp_ms"),  # type: ignore[arg-type]
    ],
)
def test_invalid_arguments_are_refused_naming_them(build, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        build()


def test_stop_latest_and_offsets() -> None:
    assert StopPosition.latest().resolve(TP, View(), 5) == ResolvedStop(20)
    assert StopPosition.offsets({1: 12}).resolve(TP, View(), 5) == ResolvedStop(12)
    # A stop before the start reads nothing rather than going backwards.
    assert StopPosition.offsets({1: 3}).resolve(TP, View(), 5) == ResolvedStop(5)
    assert StopPosition.offsets({0: 3}).resolve(TP, View(), 5) == ResolvedStop(20)
    unbounded = StopPosition.offsets({0: 3}, default="unbounded").resolve(TP, View(), 5)
    assert unbounded == ResolvedStop(None) and not unbounded.bounded


def test_stop_timestamp_is_bounded_when_reached_and_tails_otherwise() -> None:
    assert StopPosition.timestamp(150).resolve(TP, View(), 5) == ResolvedStop(15)
    assert StopPosition.timestamp(10_000).resolve(TP, View(), 5) == ResolvedStop(
        None, timestamp_ms=10_000
    )


def test_positions_are_hashable_picklable_and_describe_themselves() -> None:
    positions = [
        StartPosition.earliest(),
        StartPosition.committed("g", "latest"),
        StartPosition.offsets({("t", 0): 3, 1: 4}),
        StartPosition.timestamp(7),
        StopPosition.offsets({0: 1}),
        StopPosition.timestamp(9),
    ]
    for position in positions:
        assert pickle.loads(pickle.dumps(position)) == position
        assert hash(position) == hash(pickle.loads(pickle.dumps(position)))
        assert position.describe()
    assert StartPosition.offsets({0: 1, 1: 2}) == StartPosition.offsets({1: 2, 0: 1})


def test_an_offset_default_applies_to_every_unlisted_partition() -> None:
    start = StartPosition.offsets({0: 6}, default=9)
    assert start.resolve(TP, View()) == 9
    assert start.resolve(TopicPartition("orders", 0), View()) == 6
    # Below the earliest readable offset: raised to it, as a listed offset is.
    assert StartPosition.offsets({}, default=2).resolve(TP, View()) == 5
    stop = StopPosition.offsets({0: 6}, default=12)
    assert stop.resolve(TP, View(), 5) == ResolvedStop(12)
    assert stop.resolve(TP, View(), 14) == ResolvedStop(14)
    assert StartPosition.offsets({}, default=3).describe() == "offsets({}, default=3)"
    for bad, error in ((True, ValueError), (-1, ValueError), (1.5, ValueError)):
        with pytest.raises(error, match="default"):
            StartPosition.offsets({}, default=bad)  # type: ignore[arg-type]
        with pytest.raises(error, match="default"):
            StopPosition.offsets({}, default=bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ text forms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("earliest", StartPosition.earliest()),
        ("latest", StartPosition.latest()),
        ("offset:0", StartPosition.offsets({}, default=0)),
        ("offset:42", StartPosition.offsets({}, default=42)),
        ("timestamp:1767225600000", StartPosition.timestamp(1767225600000)),
        ("committed:billing", StartPosition.committed("billing")),
        # The group is everything after the first colon.
        ("committed:team:billing", StartPosition.committed("team:billing")),
    ],
)
def test_start_parse_reads_every_text_form(text: str, expected: StartPosition) -> None:
    assert StartPosition.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latest", StopPosition.latest()),
        ("offset:8", StopPosition.offsets({}, default=8)),
        ("timestamp:99", StopPosition.timestamp(99)),
    ],
)
def test_stop_parse_reads_every_text_form(text: str, expected: StopPosition) -> None:
    assert StopPosition.parse(text) == expected


def test_parsed_offsets_resolve_to_that_offset_in_every_partition() -> None:
    start = StartPosition.parse("offset:7")
    stop = StopPosition.parse("offset:9")
    for tp in (TP, TopicPartition("other", 3)):
        first = start.resolve(tp, View())
        assert (first, stop.resolve(tp, View(), first)) == (7, ResolvedStop(9))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "Earliest",
        " earliest",
        "earliest:",
        "offset:",
        "offset:-1",
        "offset:+5",
        "offset: 5",
        "offset:1_000",
        "offset:1.5",
        "offset:\u0661",  # an Arabic-Indic digit: int() would take it
        "timestamp:",
        "timestamp:soon",
        "committed:",
        "committed",
    ],
)
def test_start_parse_refuses_other_text_naming_it_and_the_forms(text: str) -> None:
    forms = "earliest, latest, offset:N, timestamp:MS or committed:GROUP"
    with pytest.raises(ValueError, match=f"^start {re.escape(repr(text))} is not {forms}$"):
        StartPosition.parse(text)
    with pytest.raises(ValueError, match=f"^--start {re.escape(repr(text))} is not"):
        StartPosition.parse(text, name="--start")


@pytest.mark.parametrize("text", ["earliest", "committed:g", "offset:x", "timestamp:-1", "none"])
def test_stop_parse_refuses_other_text_naming_it_and_the_forms(text: str) -> None:
    with pytest.raises(
        ValueError, match=f"^stop {re.escape(repr(text))} is not latest, offset:N or timestamp:MS$"
    ):
        StopPosition.parse(text)


def test_parse_names_numbers_out_of_range_and_refuses_non_text() -> None:
    huge = str(1 << 63)
    with pytest.raises(ValueError, match=rf"^--start 'offset:{huge}': default must be in"):
        StartPosition.parse(f"offset:{huge}", name="--start")
    with pytest.raises(ValueError, match=rf"^stop 'timestamp:{huge}': timestamp_ms must be"):
        StopPosition.parse(f"timestamp:{huge}")
    with pytest.raises(TypeError, match="start must be a str, got int 5"):
        StartPosition.parse(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stop must be a str, got NoneType None"):
        StopPosition.parse(None)  # type: ignore[arg-type]
