"""Records-mode output elements (streamhouse_beam.beam._emit): C and Python paths agree."""

from __future__ import annotations

import gc
import operator
import os
from typing import Any

import pytest
from apache_beam.transforms.window import GlobalWindow, IntervalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from streamhouse_beam.beam import _emit as emit
from streamhouse_beam.beam._coders import StreamHouseRow, StreamHouseTextRow
from streamhouse_beam.errors import StreamHouseError
from streamhouse_beam.records import StreamHouseRecord

GLOBAL = (GlobalWindow(),)
MAX_MS = (2**63 - 1) // 1000

records_strategy = st.lists(
    st.tuples(
        st.integers(0, 2**64 - 1),
        st.integers(0, MAX_MS),
        st.none() | st.binary(max_size=20),
        st.binary(max_size=40),
    ),
    max_size=60,
)


def _flat(outputs: Any) -> list[tuple[Any, ...]]:
    return [(type(o.value), o.value, o.timestamp, o.windows, o.pane_info) for o in outputs]


@pytest.mark.skipif(
    bool(os.environ.get("STREAMHOUSE_BEAM_PURE_PYTHON")), reason="pure Python forced"
)
def test_the_accelerator_is_used_on_this_machine() -> None:
    # CI builds the extension; a silent fallback would only show up as a slow benchmark.
    assert emit.ACCELERATED


def _utc(timestamp: Timestamp) -> Any:
    """``to_utc_datetime()``, or the type of the error it raises (past year 9999)."""
    try:
        return timestamp.to_utc_datetime()
    except OverflowError as exc:
        return type(exc)


#: The last millisecond a datetime can hold (9999-12-31T23:59:59.999Z).
LAST_DATETIME_MS = 253_402_300_799_999


def test_a_directly_filled_timestamp_equals_beams_own() -> None:
    for ms in (0, 1, 999, 1000, 1_767_225_600_123, LAST_DATETIME_MS, LAST_DATETIME_MS + 1, MAX_MS):
        direct, built = emit.timestamp_ms(ms), Timestamp(micros=ms * 1000)
        assert direct == built and hash(direct) == hash(built)
        assert direct.micros == ms * 1000 and repr(direct) == repr(built)
        # Both give the same datetime, or both overflow past year 9999.
        assert _utc(direct) == _utc(built)
    assert _utc(emit.timestamp_ms(LAST_DATETIME_MS)).year == 9999
    assert _utc(emit.timestamp_ms(MAX_MS)) is OverflowError


@settings(max_examples=examples(150), deadline=None)
@given(records=records_strategy, row=st.sampled_from([StreamHouseRecord, StreamHouseRow, None]))
def test_c_and_python_outputs_are_identical(records: list[Any], row: Any) -> None:
    got, got_max = emit.windowed_records(list(records), None, "t", 4, row, GLOBAL)
    want, want_max = emit.windowed_records_py(list(records), None, "t", 4, row, GLOBAL)
    assert got_max == want_max == max((r[1] for r in records), default=0)
    assert _flat(got) == _flat(want)


@settings(max_examples=examples(100), deadline=None)
@given(
    records=records_strategy,
    row=st.sampled_from([StreamHouseRecord, StreamHouseRow, None]),
    micros=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=60, max_size=60),
    shared=st.booleans(),
)
def test_c_and_python_agree_on_timestamps_an_event_time_policy_gives(
    records: list[Any], row: Any, micros: list[int], shared: bool
) -> None:
    """Processing time gives one timestamp for a chunk; a timestamp function one per record."""
    stamps = [emit.timestamp_micros(us) for us in micros[: len(records)]]
    times: Any = emit.timestamp_micros(micros[0]) if shared else stamps
    got, got_max = emit.windowed_records(list(records), None, "t", 4, row, GLOBAL, times)
    want, want_max = emit.windowed_records_py(list(records), None, "t", 4, row, GLOBAL, times)
    assert got_max == want_max == max((r[1] for r in records), default=0)
    got_flat, want_flat = _flat(got), _flat(want)
    assert got_flat == want_flat
    expected = [times] * len(records) if shared else stamps
    assert [o[2] for o in got_flat] == expected
    # The rows still carry the record timestamp.
    if row is not None:
        assert [o[1].timestamp for o in got_flat] == [r[1] for r in records]


def test_a_directly_filled_microsecond_timestamp_equals_beams_own() -> None:
    for us in (0, 1, -1, -1_000_001, 1_767_225_600_123_456, -(2**63), 2**63 - 1):
        direct, built = emit.timestamp_micros(us), Timestamp(micros=us)
        assert direct == built and hash(direct) == hash(built) and repr(direct) == repr(built)
        assert direct.micros == us


def test_outputs_carry_the_record_its_event_time_and_the_given_windows() -> None:
    window = IntervalWindow(0, 10)
    records = [(5, 1_000, b"k", b"a"), (6, 1_000, None, b"b"), (9, 2_500, b"k2", b"c")]
    outputs, largest = emit.windowed_records(
        records, None, "topic", 2, StreamHouseRecord, (window,)
    )
    outs = list(outputs)
    assert largest == 2_500
    assert [o.value for o in outs] == [
        StreamHouseRecord("topic", 2, 5, 1_000, b"k", b"a"),
        StreamHouseRecord("topic", 2, 6, 1_000, None, b"b"),
        StreamHouseRecord("topic", 2, 9, 2_500, b"k2", b"c"),
    ]
    assert all(isinstance(o, WindowedValue) and o.windows == (window,) for o in outs)
    assert [o.timestamp for o in outs] == [Timestamp(1), Timestamp(1), Timestamp(2.5)]
    assert outs[0].timestamp is outs[1].timestamp  # one Timestamp per millisecond


def test_decoded_values_and_kv_pairs_replace_the_raw_bytes() -> None:
    records = [(0, 10, b"k", b"raw0"), (1, 11, None, b"raw1")]
    rows, _ = emit.windowed_records(records, ["v0", "v1"], "t", 0, StreamHouseTextRow, GLOBAL)
    assert [o.value for o in rows] == [
        StreamHouseTextRow("t", 0, 0, 10, b"k", "v0"),
        StreamHouseTextRow("t", 0, 1, 11, None, "v1"),
    ]
    pairs, _ = emit.windowed_records(records, None, "t", 0, None, GLOBAL)
    assert [o.value for o in pairs] == [(b"k", b"raw0"), (None, b"raw1")]


@pytest.mark.parametrize(
    "build", [emit.windowed_records, emit.windowed_records_py], ids=["default", "python"]
)
def test_outputs_are_made_lazily_and_the_input_list_may_change_meanwhile(build: Any) -> None:
    records = [(i, i, None, b"x") for i in range(100)]
    outputs, _ = build(records, None, "t", 0, StreamHouseRecord, GLOBAL)
    first = next(iter(outputs))
    records.clear()  # the iterator holds its own copy
    rest = list(outputs)
    assert first.value.offset == 0 and [o.value.offset for o in rest] == list(range(1, 100))


@pytest.mark.skipif(not emit.ACCELERATED, reason="the C emitter is not built")
def test_the_c_iterator_knows_how_many_outputs_it_will_make() -> None:
    records = [(i, i, None, b"x") for i in range(100)]
    outputs, _ = emit.windowed_records(records, None, "t", 0, StreamHouseRecord, GLOBAL)
    assert operator.length_hint(outputs) == 100
    next(outputs)
    assert operator.length_hint(outputs) == 99


def test_a_timestamp_beyond_beams_range_names_the_record() -> None:
    records = [(1, 5, None, b"ok"), (2, MAX_MS + 1, None, b"late")]
    for build in (emit.windowed_records, emit.windowed_records_py):
        with pytest.raises(StreamHouseError, match=r"'t' partition 3 offset 2 has timestamp"):
            build(records, None, "t", 3, StreamHouseRecord, GLOBAL)


def test_malformed_records_raise_type_errors_before_any_output() -> None:
    if not emit.ACCELERATED:
        pytest.skip("the C argument checks")
    from streamhouse_beam.beam._emit_speedups import windowed_records  # type: ignore[import-not-found]

    args = ("t", 0, StreamHouseRecord, False, WindowedValue, Timestamp, GLOBAL, None)
    with pytest.raises(TypeError, match=r"records\[1\]"):
        windowed_records([(0, 0, None, b""), (1, 2)], None, *args)
    with pytest.raises(TypeError, match="values must be"):
        windowed_records([(0, 0, None, b"")], [], *args)
    with pytest.raises(TypeError, match="row_type"):
        windowed_records([], None, "t", 0, dict, False, WindowedValue, Timestamp, GLOBAL, None)
    with pytest.raises(TypeError, match="times must be"):
        windowed_records([(0, 0, None, b"")], None, *args[:-1], [])


def test_abandoned_iterators_free_what_they_hold() -> None:
    records = [(i, i, None, b"x" * 10) for i in range(50)]
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(200):
        outputs, _ = emit.windowed_records(records, None, "t", 0, StreamHouseRecord, GLOBAL)
        next(iter(outputs))
    del outputs
    gc.collect()
    assert len(gc.get_objects()) - before < 50


def test_event_times_behave_as_timestamps_everywhere_a_user_meets_them() -> None:
    import pickle

    ts = emit.timestamp_ms(1_767_225_600_123)
    plain = Timestamp(micros=1_767_225_600_123_000)
    assert isinstance(ts, Timestamp) and Timestamp.of(ts) is ts
    assert ts == plain and not ts < plain and ts <= plain and ts + 1 == plain + 1
    assert sorted([plain + 1, ts]) == [plain, plain + 1]
    assert pickle.loads(pickle.dumps(ts)) == plain
    assert WindowedValue(None, ts, GLOBAL).timestamp_micros == plain.micros
