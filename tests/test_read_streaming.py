"""Tailing reads on FnApiRunner: live appends, partitions added mid-run, max_records."""

from __future__ import annotations

import collections
import pathlib
import threading
import time
from typing import Any

import pytest

from streamhouse_beam import ReadFromStreamHouse, StartPosition, StopPosition
from tests.read_helpers import local_streamhouse, read_all, urls


def _writer(tmp: pathlib.Path, org: str):  # type: ignore[no-untyped-def]
    from streamhouse_beam.testing.local import LocalStreamHouse

    return LocalStreamHouse(
        f"sqlite:///{tmp}/metadata.db", f"file://{tmp}/segments", organization_id=org
    )


@pytest.fixture()
def live(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    lsh = local_streamhouse(tmp_path, segment_max_records=5)
    lsh.create_topic("live", 2)
    lsh.append("live", 0, [f"before-{i}" for i in range(8)], flush=True)
    return tmp_path, lsh.organization_id


def test_records_appended_while_running_are_read_then_max_records_stops(live) -> None:  # type: ignore[no-untyped-def]
    tmp, org = live

    def produce() -> None:
        writer = _writer(tmp, org)
        for round_ in range(4):
            time.sleep(0.3)
            writer.append(
                "live", round_ % 2, [f"during-{round_}-{i}" for i in range(3)], flush=True
            )

    thread = threading.Thread(target=produce)
    thread.start()
    records = read_all(
        ReadFromStreamHouse(
            "live", **urls(tmp), max_records=20, poll_interval=0.1, max_poll_records=4
        )
    )
    thread.join()
    values = sorted(r.value.decode() for r in records)
    assert len(records) == 20 == len({(r.partition, r.offset) for r in records})
    assert [v for v in values if v.startswith("before")] == [f"before-{i}" for i in range(8)]
    assert sum(v.startswith("during") for v in values) == 12


def test_partition_added_mid_run_is_read_from_its_start(live) -> None:  # type: ignore[no-untyped-def]
    tmp, org = live

    def grow() -> None:
        writer = _writer(tmp, org)
        time.sleep(0.4)
        writer.add_partitions("live", 3)
        writer.append("live", 2, [f"new-{i}" for i in range(7)], flush=True)

    thread = threading.Thread(target=grow)
    thread.start()
    records = read_all(
        ReadFromStreamHouse(
            "live",
            **urls(tmp),
            max_records=15,
            poll_interval=0.1,
            partition_discovery_interval=0.2,
            max_poll_records=3,
        )
    )
    thread.join()
    by_partition = collections.defaultdict(list)
    for r in records:
        by_partition[r.partition].append(r.offset)
    assert sorted(by_partition[2]) == list(range(7))
    assert sorted(by_partition[0]) == list(range(8))


@pytest.mark.timeout(120)
def test_latest_start_reads_only_new_records(live, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    tmp, org = live
    # The new records must be written after the read resolved `latest` for partition 0, or
    # they count as old and the read waits for two more that never come. FnApiRunner runs
    # the DoFn in this process, so the resolution itself says when that has happened.
    resolved = threading.Event()
    resolve = StartPosition.resolve

    def noting_resolve(self: StartPosition, tp: Any, view: Any) -> int:
        offset = resolve(self, tp, view)
        if self.kind == "latest" and tp.partition == 0:
            resolved.set()
        return offset

    monkeypatch.setattr(StartPosition, "resolve", noting_resolve)
    written = threading.Event()

    def produce() -> None:
        if resolved.wait(60):
            _writer(tmp, org).append("live", 0, ["fresh-0", "fresh-1"], flush=True)
            written.set()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    records = read_all(
        ReadFromStreamHouse(
            "live", **urls(tmp), start=StartPosition.latest(), max_records=2, poll_interval=0.1
        )
    )
    thread.join()
    assert written.is_set(), "the read never resolved its latest start for partition 0"
    assert sorted(r.value for r in records) == [b"fresh-0", b"fresh-1"]


def test_timestamp_stop_in_the_future_tails_until_a_record_reaches_it(live) -> None:  # type: ignore[no-untyped-def]
    tmp, org = live
    writer = _writer(tmp, org)
    stop_ms = int(time.time() * 1000) + 1500

    def produce() -> None:
        time.sleep(0.4)
        writer.append(
            "live",
            1,
            [
                (None, "early", stop_ms - 1),
                (None, "at-stop", stop_ms),
                (None, "after", stop_ms + 1),
            ],
            flush=True,
        )

    thread = threading.Thread(target=produce)
    thread.start()
    records = read_all(
        ReadFromStreamHouse(
            "live",
            **urls(tmp),
            stop=StopPosition.timestamp(stop_ms),
            poll_interval=0.1,
            max_delay_seconds=0.2,
        )
    )
    thread.join()
    # Partition 1 ends at the record reaching the stop; partition 0, which never gets one,
    # ends once its idle watermark passes the stop time.
    assert sorted(r.value for r in records if r.partition == 1) == [b"early"]
    assert len([r for r in records if r.partition == 0]) == 8
