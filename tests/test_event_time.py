"""Event-time policies: validation, the estimator's math, pickling, and out-of-order data.

The data of every read test is one partition whose records arrive out of order::

    offset      0    1    2    3    4    5    6    7
    seconds     0    1   12    8   13    9   25    3     (after T0; FixedWindows(10))

Under record time the watermark after offset 2 is T0+12 s, so offsets 3, 5 and 7 are late;
a 5 s bound makes 3 and 5 on time (at most 4 s behind the newest before them) and leaves 7
(22 s behind) late. FnApiRunner's bounded reads drop nothing whatever the watermark (a stage
runs to its end before the next starts), so the pipeline tests here check what each policy
stamps and which windows the records land in; which records are late is checked per
``process()`` call against the watermark before it (the harness), and on Prism
(``integration/test_runner_prism.py``), whose windows do drop late records.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import pickle
import time
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp

from streamhouse_beam import (
    EventTimeError,
    EventTimePolicy,
    ReadAllFromStreamHouse,
    ReadFromStreamHouse,
    StartPosition,
    StopPosition,
    StreamHouseRecord,
)
from streamhouse_beam.beam._descriptors import PartitionDescriptor
from streamhouse_beam.beam._read_fn import ReadPartitionsFn
from streamhouse_beam.beam._watermark import (
    PartitionWatermarkEstimatorProvider,
    WatermarkStateCoder,
    _PartitionWatermarkEstimator,
)
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS
from tests.process_harness import Harness
from tests.read_helpers import new_sink, run, sink, urls, write_topic

T0 = DEFAULT_CLOCK_START_MS  # 2026-01-01T00:00:00Z, a multiple of 10 s
SECONDS = [0, 1, 12, 8, 13, 9, 25, 3]
#: What each record's value says its event time is: 100 s after its record time, reversed
#: within pairs, so a timestamp function sees its own out-of-order sequence.
VALUE_SECONDS = [101, 100, 113, 112, 109, 108, 125, 104]


def _micros(seconds: float) -> int:
    return T0 * 1000 + round(seconds * 1_000_000)


@pytest.fixture()
def topic(tmp_path: pathlib.Path) -> pathlib.Path:
    records = [
        (None, json.dumps({"at": T0 + 1000 * v}), T0 + 1000 * s)
        for s, v in zip(SECONDS, VALUE_SECONDS, strict=True)
    ]
    write_topic(tmp_path, "t", [records], segment_max_records=3)
    return tmp_path


def _value_time(record: StreamHouseRecord) -> int:
    return int(record.value["at"])


# ---------------------------------------------------------------- the policies and validation


def test_factories_build_the_four_policies() -> None:
    assert EventTimePolicy.record_time() == EventTimePolicy("record_time")
    assert EventTimePolicy.record_time().is_default
    bounded = EventTimePolicy.bounded_out_of_orderness(datetime.timedelta(seconds=5))
    assert (bounded.kind, bounded.max_out_of_orderness, bounded.bound_micros) == (
        "record_time",
        5.0,
        5_000_000,
    )
    assert not bounded.is_default
    assert EventTimePolicy.bounded_out_of_orderness(0) == EventTimePolicy.record_time()
    assert EventTimePolicy.processing_time().kind == "processing_time"
    fn = EventTimePolicy.from_record(_value_time, 2.5)
    assert (fn.kind, fn.timestamp_fn, fn.bound_micros) == ("timestamp_fn", _value_time, 2_500_000)
    assert bounded.describe() == "bounded_out_of_orderness(5 s)"
    assert fn.describe() == "from_record(_value_time, 2.5 s)"


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: EventTimePolicy.bounded_out_of_orderness(-1), ValueError, ">= 0 seconds"),
        (lambda: EventTimePolicy.bounded_out_of_orderness(float("nan")), ValueError, "finite"),
        (lambda: EventTimePolicy.bounded_out_of_orderness(float("inf")), ValueError, "finite"),
        (lambda: EventTimePolicy.bounded_out_of_orderness("5"), TypeError, "str '5'"),
        (lambda: EventTimePolicy.bounded_out_of_orderness(True), TypeError, "bool"),
        (lambda: EventTimePolicy.from_record("at"), TypeError, "needs a callable"),
        (lambda: EventTimePolicy.from_record(_value_time, -2), ValueError, ">= 0"),
        (lambda: EventTimePolicy("log_append"), ValueError, "use the factories"),
        (lambda: EventTimePolicy("processing_time", 3), ValueError, "no out-of-orderness"),
        (lambda: EventTimePolicy("record_time", 0, _value_time), ValueError, "no timestamp_fn"),
    ],
)
def test_invalid_policies_are_refused_naming_the_argument(
    build: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build()


def test_the_transforms_validate_event_time_when_built(tmp_path: pathlib.Path) -> None:
    write_topic(tmp_path, "t", [["a"]])
    with pytest.raises(TypeError, match=r"event_time must be an EventTimePolicy .* got float"):
        ReadFromStreamHouse("t", **urls(tmp_path), event_time=5.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event_time must be an EventTimePolicy"):
        ReadAllFromStreamHouse(**urls(tmp_path), event_time="processing_time")
    with pytest.raises(ValueError, match=r"from_record.*output='batches'"):
        ReadFromStreamHouse(
            "t",
            **urls(tmp_path),
            output="batches",
            event_time=EventTimePolicy.from_record(_value_time),
        )
    read = ReadFromStreamHouse(
        "t", **urls(tmp_path), event_time=EventTimePolicy.bounded_out_of_orderness(30)
    )
    assert read.display_data()["event_time"] == "bounded_out_of_orderness(30 s)"
    assert ReadFromStreamHouse("t", **urls(tmp_path)).config.event_time.is_default


def test_timestamp_function_results_convert_or_fail_naming_the_record() -> None:
    from streamhouse_beam.beam._event_time import call_timestamp_fn

    rec = StreamHouseRecord("t", 2, 7, T0, None, {"at": 5})
    assert call_timestamp_fn(lambda r: T0, rec) == T0 * 1000
    assert call_timestamp_fn(lambda r: Timestamp(micros=12_345_678), rec) == 12_345_678
    aware = datetime.datetime(2026, 1, 1, 0, 0, 1, 500, tzinfo=datetime.timezone.utc)
    assert call_timestamp_fn(lambda r: aware, rec) == T0 * 1000 + 1_000_500
    before_1970 = datetime.datetime(1969, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)
    assert call_timestamp_fn(lambda r: before_1970, rec) == -1_000_000
    for fn, match in [
        (lambda r: r.value["missing"], "raised KeyError: 'missing'"),
        (lambda r: "2026-01-01", "got str '2026-01-01'"),
        (lambda r: 1.5, "got float"),
        (lambda r: datetime.datetime(2026, 1, 1), "naive datetime"),
        (lambda r: 2**62, "outside Beam's timestamp range"),
    ]:
        with pytest.raises(EventTimeError, match=match) as info:
            call_timestamp_fn(fn, rec)
        assert (info.value.topic, info.value.partition, info.value.offset) == ("t", 2, 7)
        assert "'t' partition 2 offset 7" in str(info.value)


def test_policies_and_the_read_dofn_survive_pickling(tmp_path: pathlib.Path) -> None:
    write_topic(tmp_path, "t", [["a"]])
    bound = 7

    policy = EventTimePolicy.from_record(lambda r: r.timestamp + bound, 3)  # a closure
    restored = pickler.loads(pickler.dumps(policy))
    assert restored.kind == "timestamp_fn" and restored.max_out_of_orderness == 3
    assert restored.timestamp_fn(StreamHouseRecord("t", 0, 0, 10, None, b"")) == 17
    plain = EventTimePolicy.bounded_out_of_orderness(4)
    assert pickle.loads(pickle.dumps(plain)) == plain

    config = ReadFromStreamHouse("t", **urls(tmp_path), event_time=policy).config
    fn = pickler.loads(pickler.dumps(ReadPartitionsFn(config)))
    assert fn.config.event_time.max_out_of_orderness == 3
    estimator = fn.create_watermark_estimator(fn.initial_estimator_state(None, None))
    estimator.observe_event_time(_micros(10))
    assert estimator.current_watermark() == Timestamp(micros=_micros(7))


# ---------------------------------------------------------------- the estimator's math


def test_a_bound_keeps_the_watermark_that_far_behind_the_largest_event_time() -> None:
    est = _PartitionWatermarkEstimator(None, bound_micros=5_000_000)
    assert est.current_watermark() == MIN_TIMESTAMP
    for seconds, expected in [(0, -5), (1, -4), (12, 7), (8, 7), (13, 8), (9, 8), (25, 20)]:
        est.observe_event_time(_micros(seconds))
        assert est.current_watermark() == Timestamp(micros=_micros(expected))
    # Idle: now minus max_delay, only when that is later; never backwards.
    assert est.advance_idle(Timestamp(micros=_micros(30)), Duration(60)) == Timestamp(
        micros=_micros(20)
    )
    assert est.advance_idle(Timestamp(micros=_micros(100)), Duration(60)) == Timestamp(
        micros=_micros(40)
    )
    est.observe_event_time(_micros(44))
    assert est.current_watermark() == Timestamp(micros=_micros(40))
    # The state is the watermark alone, in the unchanged versioned coder.
    coder = WatermarkStateCoder()
    state = est.get_estimator_state()
    assert coder.decode(coder.encode(state)) == state == Timestamp(micros=_micros(40))
    assert coder.encode(state)[0] == 1


def test_each_policy_seeds_and_idles_its_own_way() -> None:
    timestamp_start = PartitionDescriptor("t", 0, StartPosition.timestamp(T0), None)
    earliest = PartitionDescriptor("t", 0, StartPosition.earliest(), None)
    seeds = {
        "record": (PartitionWatermarkEstimatorProvider(), Timestamp(micros=_micros(0))),
        "bounded": (
            PartitionWatermarkEstimatorProvider(EventTimePolicy.bounded_out_of_orderness(5)),
            Timestamp(micros=_micros(-5)),
        ),
        # A start position is a record time: it says nothing of these policies' timestamps.
        "processing": (
            PartitionWatermarkEstimatorProvider(EventTimePolicy.processing_time()),
            MIN_TIMESTAMP,
        ),
        "fn": (
            PartitionWatermarkEstimatorProvider(EventTimePolicy.from_record(_value_time, 5)),
            MIN_TIMESTAMP,
        ),
    }
    for provider, seed in seeds.values():
        assert provider.initial_estimator_state(timestamp_start, None) == seed
        assert provider.initial_estimator_state(earliest, None) == MIN_TIMESTAMP
    assert seeds["processing"][0].idle_delay(60) == Duration(0)
    assert seeds["fn"][0].idle_delay(60) == Duration(60)
    assert seeds["bounded"][0].idle_delay(60) == Duration(60)


# ---------------------------------------------------------------- process() call by call


def _late_offsets(tmp: pathlib.Path, policy: EventTimePolicy, **kwargs: Any) -> dict[str, Any]:
    """Read the topic one record per process() call; which records were behind the watermark
    of the call that emitted them (late), the outputs' timestamps and the final watermark."""
    h = Harness(tmp, max_poll_records=1, stop=StopPosition.latest(), event_time=policy, **kwargs)
    element = PartitionDescriptor("t", 0, StartPosition.earliest(), StopPosition.latest())
    restriction, wm = h.start(element)
    late, stamps = [], []
    while restriction is not None:
        before = wm
        out, tracker, estimator, _ = h.call(element, restriction, wm)
        for o in out:
            stamps.append(o.timestamp)
            if o.timestamp < before:
                late.append(o.value.offset)
        wm = estimator.current_watermark()
        deferred = tracker.deferred_status()
        restriction = None if deferred is None else deferred[0]
    return {"late": late, "stamps": stamps, "watermark": wm}


def test_record_time_makes_every_older_record_late(topic: pathlib.Path) -> None:
    got = _late_offsets(topic, EventTimePolicy.record_time())
    assert got["late"] == [3, 5, 7]
    assert got["stamps"] == [Timestamp(micros=_micros(s)) for s in SECONDS]
    assert got["watermark"] == Timestamp(micros=_micros(25))


def test_a_bound_lets_records_within_it_through_and_no_further(topic: pathlib.Path) -> None:
    got = _late_offsets(topic, EventTimePolicy.bounded_out_of_orderness(5))
    assert got["late"] == [7]  # 22 s behind the newest; 3 and 5 are 4 s behind
    assert got["stamps"] == [Timestamp(micros=_micros(s)) for s in SECONDS]
    assert got["watermark"] == Timestamp(micros=_micros(20))
    assert _late_offsets(topic, EventTimePolicy.bounded_out_of_orderness(22))["late"] == []


def test_processing_time_stamps_the_read_and_nothing_is_late(topic: pathlib.Path) -> None:
    before = Timestamp.now()
    got = _late_offsets(topic, EventTimePolicy.processing_time())
    after = Timestamp.now()
    assert got["late"] == []
    assert all(before <= ts <= after for ts in got["stamps"])
    assert got["stamps"] == sorted(got["stamps"])
    assert before <= got["watermark"] <= after


def test_a_timestamp_function_stamps_its_own_times_with_its_bound(topic: pathlib.Path) -> None:
    got = _late_offsets(topic, EventTimePolicy.from_record(_value_time), value_decoder="json")
    assert got["stamps"] == [Timestamp(micros=_micros(v)) for v in VALUE_SECONDS]
    # 101 100 113 112 109 108 125 104: each behind the largest before it is late.
    assert got["late"] == [1, 3, 4, 5, 7]
    bounded = _late_offsets(
        topic, EventTimePolicy.from_record(_value_time, 4), value_decoder="json"
    )
    assert bounded["late"] == [5, 7]  # 5 s and 21 s behind; the others at most 4 s
    assert bounded["watermark"] == Timestamp(micros=_micros(121))


def test_an_idle_partition_advances_under_every_policy(topic: pathlib.Path) -> None:
    """A caught-up tailing read: the idle advance is kept (processing time: to now)."""
    for policy, lag in [
        (EventTimePolicy.bounded_out_of_orderness(5), 30.0),
        (EventTimePolicy.from_record(_value_time, 5), 30.0),
        (EventTimePolicy.processing_time(), 0.0),
    ]:
        h = Harness(
            topic,
            max_poll_records=100,
            event_time=policy,
            max_delay_seconds=30,
            value_decoder="json",
        )
        element = PartitionDescriptor("t", 0, StartPosition.earliest(), None)
        restriction, wm = h.start(element)
        out, tracker, estimator, _ = h.call(element, restriction, wm)
        assert len(out) == 8
        restriction = tracker.deferred_status()[0]
        before = Timestamp.now()
        _, _, estimator, _ = h.call(element, restriction, estimator.current_watermark())
        after = Timestamp.now()
        watermark = estimator.current_watermark()
        assert before - Duration.of(lag) <= watermark <= after - Duration.of(lag), policy


def test_undecodable_values_keep_their_record_time_under_a_timestamp_function(
    tmp_path: pathlib.Path,
) -> None:
    records = [(None, json.dumps({"at": T0 + 50_000}), T0), (None, "{not json", T0 + 1000)]
    write_topic(tmp_path, "t", [records])
    h = Harness(
        tmp_path,
        stop=StopPosition.latest(),
        value_decoder="json",
        dead_letter=True,
        event_time=EventTimePolicy.from_record(_value_time),
    )
    element = PartitionDescriptor("t", 0, StartPosition.earliest(), StopPosition.latest())
    restriction, wm = h.start(element)
    out, _, estimator, _ = h.call(element, restriction, wm)
    good, dead = out[0], out[1].value
    assert good.timestamp == Timestamp(micros=_micros(50))
    assert (dead.value.offset, dead.timestamp) == (1, Timestamp(micros=_micros(1)))
    # The dead letter did not move the watermark: the function's times alone do.
    assert estimator.current_watermark() == Timestamp(micros=_micros(50))


def test_a_failing_timestamp_function_fails_the_read_naming_the_record(
    topic: pathlib.Path,
) -> None:
    with pytest.raises(EventTimeError, match=r"'t' partition 0 offset 0.*KeyError"):
        run(
            lambda p: (
                p
                | ReadFromStreamHouse(
                    "t",
                    **urls(topic),
                    stop=StopPosition.latest(),
                    value_decoder="json",
                    event_time=EventTimePolicy.from_record(lambda r: r.value["nope"]),
                )
            )
        )


# ---------------------------------------------------------------- pipelines on FnApiRunner


class _PerWindow(beam.DoFn):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        self.name = name

    def process(self, element: Any, window: Any = beam.DoFn.WindowParam) -> None:
        sink(self.name).append((window.start, element[1]))


def _window_counts(read: beam.PTransform, *, via_read_all: bool = False) -> dict[Timestamp, int]:
    name = new_sink()

    def build(p: beam.Pipeline) -> None:
        if via_read_all:
            # Windowed descriptors: records take Beam's own window assignment (Python path).
            records = (
                p
                | beam.Create([("t", 0)])
                | "WindowDescriptors" >> beam.WindowInto(FixedWindows(10))
                | read
            )
        else:
            records = p | read
        _ = (
            records
            | beam.Map(lambda _: ("n", 1))
            | beam.WindowInto(FixedWindows(10))
            | beam.CombinePerKey(sum)
            | beam.ParDo(_PerWindow(name))
        )

    run(build)
    return dict(sorted(sink(name)))


def _expected(seconds: list[int]) -> dict[Timestamp, int]:
    counts: dict[Timestamp, int] = {}
    for s in seconds:
        start = Timestamp(micros=_micros(s - s % 10))
        counts[start] = counts.get(start, 0) + 1
    return dict(sorted(counts.items()))


@pytest.mark.parametrize("output", ["records", "rows", "kv"])
def test_bounded_out_of_orderness_windows_count_every_record(
    topic: pathlib.Path, output: str
) -> None:
    policy = EventTimePolicy.bounded_out_of_orderness(5)
    kwargs: dict[str, Any] = {"stop": StopPosition.latest(), "max_poll_records": 1}
    counts = _window_counts(
        ReadFromStreamHouse("t", **urls(topic), output=output, event_time=policy, **kwargs)
    )
    assert (
        counts
        == _expected(SECONDS)
        == {
            Timestamp(micros=_micros(0)): 5,
            Timestamp(micros=_micros(10)): 2,
            Timestamp(micros=_micros(20)): 1,
        }
    )
    read_all = ReadAllFromStreamHouse(**urls(topic), output=output, event_time=policy, **kwargs)
    assert _window_counts(read_all, via_read_all=True) == _expected(SECONDS)


def test_a_timestamp_function_windows_records_by_their_value(topic: pathlib.Path) -> None:
    policy = EventTimePolicy.from_record(_value_time, 5)
    kwargs: dict[str, Any] = {
        "stop": StopPosition.latest(),
        "value_decoder": "json",
        "event_time": policy,
    }
    expected = _expected(VALUE_SECONDS)
    assert expected == {
        Timestamp(micros=_micros(100)): 5,
        Timestamp(micros=_micros(110)): 2,
        Timestamp(micros=_micros(120)): 1,
    }
    assert _window_counts(ReadFromStreamHouse("t", **urls(topic), **kwargs)) == expected
    assert _window_counts(ReadFromStreamHouse("t", **urls(topic), output="kv", **kwargs)) == (
        expected
    )
    assert _window_counts(ReadAllFromStreamHouse(**urls(topic), **kwargs), via_read_all=True) == (
        expected
    )


@pytest.mark.parametrize("output", ["records", "batches"])
def test_processing_time_windows_hold_the_read_time(topic: pathlib.Path, output: str) -> None:
    before = time.time()
    counts = _window_counts(
        ReadFromStreamHouse(
            "t",
            **urls(topic),
            stop=StopPosition.latest(),
            output=output,
            event_time=EventTimePolicy.processing_time(),
        )
    )
    after = time.time()
    if output == "records":
        assert sum(counts.values()) == len(SECONDS)
    else:
        assert sum(counts.values()) >= 1  # one element per batch
    for start in counts:
        assert before - 10 <= start.micros / 1e6 <= after


def test_a_records_timestamp_field_stays_the_streamhouse_timestamp(topic: pathlib.Path) -> None:
    name = new_sink()

    class _Keep(beam.DoFn):  # type: ignore[misc]
        def process(self, record: Any, ts: Any = beam.DoFn.TimestampParam) -> None:
            sink(name).append((record.offset, record.timestamp, ts))

    run(
        lambda p: (
            p
            | ReadFromStreamHouse(
                "t",
                **urls(topic),
                stop=StopPosition.latest(),
                value_decoder="json",
                event_time=EventTimePolicy.from_record(_value_time),
            )
            | beam.ParDo(_Keep())
        )
    )
    got = sorted(sink(name))
    assert [r[1] for r in got] == [T0 + 1000 * s for s in SECONDS]
    assert [r[2] for r in got] == [Timestamp(micros=_micros(v)) for v in VALUE_SECONDS]


@pytest.mark.parametrize("tailing", [False, True])
@pytest.mark.parametrize("group", [None, "g"])
def test_every_partition_reading_dofn_takes_its_watermark_from_the_policy(
    tmp_path: pathlib.Path, tailing: bool, group: str | None
) -> None:
    """Bounded or tailing, committing or not: the runner asks the DoFn itself for estimators."""
    from apache_beam.runners.common import DoFnSignature

    from streamhouse_beam.beam._read_fn import partitions_fn

    policy = EventTimePolicy.bounded_out_of_orderness(5)
    config = ReadFromStreamHouse(
        "t", **urls(tmp_path), event_time=policy, commit_offsets_group=group
    ).config
    fn = partitions_fn(config, tailing=tailing)
    provider = DoFnSignature(fn).get_watermark_estimator_provider()
    assert provider is fn, f"{type(fn).__name__} uses {provider!r}, not the read's policy"
    estimator = provider.create_watermark_estimator(None)
    estimator.observe_event_time(100_000_000)
    assert estimator.current_watermark() == Timestamp.of(95)
