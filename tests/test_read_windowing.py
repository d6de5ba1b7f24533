"""Records carry the right windows on both emission paths of the read.

In the global window the read emits ready-made ``WindowedValue`` s (the fast path); when a
``ReadAllFromStreamHouse`` input is windowed otherwise, records go through Beam's window
assignment by their own timestamps, as ``TimestampedValue`` s always did.
"""

from __future__ import annotations

import pathlib
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import FixedWindows, GlobalWindow, IntervalWindow
from apache_beam.utils.timestamp import Timestamp

from streamhouse_beam import ReadAllFromStreamHouse, ReadFromStreamHouse, StopPosition
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS
from tests.read_helpers import local_streamhouse, new_sink, run, sink, urls

T0 = DEFAULT_CLOCK_START_MS


class _CollectWindows(beam.DoFn):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        self.name = name

    def process(
        self,
        record: Any,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> None:
        sink(self.name).append((record.offset, timestamp, window))


def _store(tmp: pathlib.Path) -> None:
    lsh = local_streamhouse(tmp, clock_step_ms=400)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [f"v{i}" for i in range(6)], flush=True)
    lsh.close()


def test_global_window_read_stamps_record_times(tmp_path: pathlib.Path) -> None:
    _store(tmp_path)
    name = new_sink()
    run(
        lambda p: (
            p
            | ReadFromStreamHouse("t", **urls(tmp_path), stop=StopPosition.latest())
            | beam.ParDo(_CollectWindows(name))
        )
    )
    got = sorted(sink(name), key=lambda x: x[0])
    assert [(o, ts) for o, ts, _ in got] == [
        (o, Timestamp(micros=(T0 + 400 * o) * 1000)) for o in range(6)
    ]
    assert all(w == GlobalWindow() for _, _, w in got)


def test_windowed_read_all_assigns_windows_by_record_time(tmp_path: pathlib.Path) -> None:
    _store(tmp_path)
    name = new_sink()
    run(
        lambda p: (
            p
            | beam.Create([("t", 0)])
            | beam.WindowInto(FixedWindows(1))
            | ReadAllFromStreamHouse(**urls(tmp_path), stop=StopPosition.latest())
            | beam.ParDo(_CollectWindows(name))
        )
    )
    got = sorted(sink(name), key=lambda x: x[0])
    assert len(got) == 6
    for offset, ts, window in got:
        assert ts == Timestamp(micros=(T0 + 400 * offset) * 1000)
        start = Timestamp(micros=(ts.micros // 1_000_000) * 1_000_000)
        assert window == IntervalWindow(start, start + 1)
