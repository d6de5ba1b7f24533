"""Every example under ``examples/`` runs as a script, as the README tells users to run it.

Each test writes a topic with LocalStreamHouse, runs ``python examples/<name>.py`` in a
subprocess and checks the files it wrote record by record. The streaming example also runs on
Prism, a runner that fires windows as the watermark moves rather than at the end.
"""

from __future__ import annotations

import collections
import datetime
import io
import json
import pathlib
import struct
import subprocess
from collections.abc import Iterator
from typing import Any

import fastavro
import pyarrow.parquet as pq
import pytest
from _runners_support import ensure_runners
from _scripts import run_python

from streamhouse_beam.testing import runners
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS, LocalStreamHouse
from streamhouse_beam.testing.registry import SchemaRegistryServer

pytestmark = [pytest.mark.slow]

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"


def run_example(name: str, *args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return run_python(str(EXAMPLES / name), *args, cwd=cwd)


class House:
    """A SQLite + local-directory StreamHouse under ``root``."""

    def __init__(self, root: pathlib.Path, **kwargs: Any) -> None:
        self.metadata_url = f"sqlite:///{root}/metadata.db"
        self.storage_url = f"file://{root}/segments"
        self.lsh = LocalStreamHouse(self.metadata_url, self.storage_url, **kwargs)
        self.lsh.create_schema()

    def args(self, *topics: str) -> list[str]:
        out = ["--metadata-url", self.metadata_url, "--storage-url", self.storage_url]
        for topic in topics:
            out += ["--topic", topic]
        return out


def _lines(pattern: str, directory: pathlib.Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob(pattern))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


# ----------------------------------------------------------------------------- export_topic


@pytest.fixture()
def orders(tmp_path: pathlib.Path) -> tuple[House, list[tuple[Any, ...]]]:
    house = House(tmp_path, segment_max_records=5)
    house.lsh.create_topic("orders", 2)
    expected = []
    for partition in range(2):
        records = []
        for i in range(13):
            key: bytes | None = None if i % 4 == 0 else f"customer-{i % 3}".encode()
            # One value in each partition is not UTF-8, to exercise the base64 fallback.
            value = b"\xff\xfe binary" if i == 7 else f'{{"order": {partition * 100 + i}}}'.encode()
            records.append((key, value))
        offsets = house.lsh.append("orders", partition, records, flush=True)
        for offset, (key, value) in zip(offsets, records, strict=True):
            ts = DEFAULT_CLOCK_START_MS + offset
            expected.append(("orders", partition, offset, ts, key, value))
    return house, sorted(expected)


def _export(house: House, fmt: str, tmp_path: pathlib.Path) -> pathlib.Path:
    """Run export_topic.py on ``orders`` in ``fmt``; return the directory it wrote."""
    out = tmp_path / "export"
    run_example(
        "export_topic.py",
        *house.args("orders"),
        f"--format={fmt}",
        f"--output={out}/orders",
        cwd=tmp_path,
    )
    return out


def test_export_topic_writes_every_record_as_json_lines(
    orders: tuple[House, list[tuple[Any, ...]]], tmp_path: pathlib.Path
) -> None:
    import base64

    house, expected = orders
    out = _export(house, "jsonl", tmp_path)
    got = []
    for doc in _lines("orders-*.jsonl", out):
        value = base64.b64decode(doc["value"]) if doc.get("value_base64") else doc["value"].encode()
        key = None if doc["key"] is None else doc["key"].encode()
        got.append((doc["topic"], doc["partition"], doc["offset"], doc["timestamp"], key, value))
    assert sorted(got) == expected


def test_export_topic_writes_every_record_to_parquet(
    orders: tuple[House, list[tuple[Any, ...]]], tmp_path: pathlib.Path
) -> None:
    house, expected = orders
    out = _export(house, "parquet", tmp_path)
    files = sorted(out.glob("orders-*.parquet"))
    assert files, "no Parquet file was written"
    got = []
    for path in files:
        table = pq.read_table(path)
        assert [f.name for f in table.schema] == [
            "topic",
            "partition",
            "offset",
            "timestamp",
            "key",
            "value",
        ]
        for row in table.to_pylist():
            ts = int(row["timestamp"].timestamp() * 1000)
            got.append(
                (row["topic"], row["partition"], row["offset"], ts, row["key"], row["value"])
            )
    assert sorted(got) == expected


# -------------------------------------------------------------------------- windowed_counts


def _windowed_counts(tmp_path: pathlib.Path, *beam_args: str) -> None:
    house = House(tmp_path, segment_max_records=8)
    house.lsh.create_topic("clicks", 3)
    expected: collections.Counter[tuple[str, str]] = collections.Counter()
    total = 0
    for partition in range(3):
        records = []
        for i in range(25):
            user = f"user-{(i + partition) % 4}"
            ts = DEFAULT_CLOCK_START_MS + i * 7_000 + partition * 500
            records.append((user, "click", ts))
            window = datetime.datetime.fromtimestamp(ts // 30_000 * 30, tz=datetime.timezone.utc)
            expected[(f"{window:%Y-%m-%dT%H:%M:%SZ}", user)] += 1
            total += 1
        house.lsh.append("clicks", partition, records, flush=True)
    out = tmp_path / "counts"
    run_example(
        "windowed_counts.py",
        *house.args("clicks"),
        "--window-seconds=30",
        "--poll-interval=0.2",
        f"--max-records={total}",
        f"--output={out}/clicks",
        *beam_args,
        cwd=tmp_path,
    )
    got: collections.Counter[tuple[str, str]] = collections.Counter()
    for path in out.glob("clicks-*"):
        for line in path.read_text(encoding="utf-8").splitlines():
            window, user, count = line.split("\t")
            got[(window, user)] += int(count)
    assert got == expected


def test_windowed_counts_counts_per_key_and_event_time_window(tmp_path: pathlib.Path) -> None:
    # FnApiRunner, no longer the default: it writes the windows once --max-records ends the read.
    _windowed_counts(tmp_path, "--runner=FnApiRunner")


@pytest.mark.runner
def test_windowed_counts_runs_streaming_on_prism(tmp_path: pathlib.Path) -> None:
    ensure_runners()
    _windowed_counts(tmp_path, "--runner=PrismRunner", f"--prism_location={runners.prism_binary()}")


def _tail_windowed_counts(
    tmp_path: pathlib.Path, *beam_args: str, timeout: float
) -> tuple[dict[tuple[str, str], int], collections.Counter[tuple[str, str]]]:
    """Run windowed_counts.py with no --max-records (it tails until stopped) for a while.

    Returns what it wrote while it was still running (window, user -> count) and the counts of
    the topic. The records span three 30-second windows of event time long past, so each
    window closes once the watermark passes it and the last once the partition is idle.
    """
    import os
    import signal
    import sys
    import time

    house = House(tmp_path, segment_max_records=8)
    house.lsh.create_topic("clicks", 2)
    expected: collections.Counter[tuple[str, str]] = collections.Counter()
    for partition in range(2):
        records = []
        for i in range(12):
            user = f"user-{i % 3}"
            ts = DEFAULT_CLOCK_START_MS + i * 7_000 + partition * 500
            records.append((user, "click", ts))
            window = datetime.datetime.fromtimestamp(ts // 30_000 * 30, tz=datetime.timezone.utc)
            expected[(f"{window:%Y-%m-%dT%H:%M:%SZ}", user)] += 1
        house.lsh.append("clicks", partition, records, flush=True)
    out = tmp_path / "counts"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "windowed_counts.py"),
            *house.args("clicks"),
            "--window-seconds=30",
            "--poll-interval=0.2",
            "--max-delay=1",
            f"--output={out}/clicks",
            *beam_args,
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its Prism too is stopped with the group below
    )
    got: dict[tuple[str, str], int] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            for path in out.glob("clicks-*"):
                for line in path.read_text(encoding="utf-8").splitlines():
                    window, user, count = line.split("\t")
                    got[(window, user)] = int(count)
            if set(got) == set(expected):
                break
            time.sleep(0.5)
        running = proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    assert running, f"windowed_counts.py ended while tailing:\n{stderr.decode()[-4000:]}"
    return got, expected


@pytest.mark.runner
def test_windowed_counts_writes_windows_while_it_tails_on_its_default_runner(
    tmp_path: pathlib.Path,
) -> None:
    """No --runner and no --max-records: every window is written while the read still tails."""
    ensure_runners()
    got, expected = _tail_windowed_counts(tmp_path, timeout=120)
    assert got == dict(expected)


@pytest.mark.runner
def test_examples_find_the_cached_prism_for_a_plain_prism_runner(
    orders: tuple[House, list[tuple[Any, ...]]], tmp_path: pathlib.Path
) -> None:
    """--runner=PrismRunner alone: no download (it would fail offline), the cached binary runs."""
    ensure_runners()
    house, expected = orders
    out = tmp_path / "export"
    run_example(
        "export_topic.py",
        *house.args("orders"),
        f"--output={out}/orders",
        "--runner=PrismRunner",
        cwd=tmp_path,
    )
    assert len(_lines("orders-*.jsonl", out)) == len(expected)


# ---------------------------------------------------------------------------- avro_registry

PAYMENT = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "cents", "type": "long"},
        {"name": "currency", "type": {"type": "enum", "name": "Cur", "symbols": ["EUR", "USD"]}},
    ],
}


@pytest.fixture()
def registry() -> Iterator[str]:
    with SchemaRegistryServer() as server:
        server.add(21, json.dumps(PAYMENT), subject="payments-value")
        yield server.url


def _framed(schema_id: int, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(PAYMENT), record)
    return b"\x00" + struct.pack(">i", schema_id) + buf.getvalue()


def test_avro_registry_decodes_framed_values_and_dead_letters_the_rest(
    registry: str, tmp_path: pathlib.Path
) -> None:
    house = House(tmp_path, segment_max_records=6)
    house.lsh.create_topic("payments", 2)
    good = []
    bad = []
    for partition in range(2):
        values = []
        for i in range(10):
            record = {"id": f"p{partition}-{i}", "cents": 100 * i + partition, "currency": "EUR"}
            if i == 4:
                values.append(_framed(99, record))  # an id the registry does not know
                bad.append((partition, i))
            elif i == 8:
                values.append(b'{"not": "framed"}')
                bad.append((partition, i))
            else:
                values.append(_framed(21, record))
                good.append((partition, i, record))
        house.lsh.append("payments", partition, [(f"k{i}", v) for i, v in enumerate(values)])
    house.lsh.flush()
    out = tmp_path / "decoded"
    run_example(
        "avro_registry.py",
        *house.args("payments"),
        f"--registry-url={registry}",
        f"--output={out}/payments",
        cwd=tmp_path,
    )
    decoded = _lines("payments-0*.jsonl", out)
    assert sorted((d["partition"], d["offset"], d["value"]) for d in decoded) == sorted(good)
    assert all(d["key"] == f"k{d['offset']}" for d in decoded)
    dead = _lines("payments-dead-letter-*.jsonl", out)
    assert sorted((d["partition"], d["offset"]) for d in dead) == sorted(bad)
    assert all(d["reason"] for d in dead)


# --------------------------------------------------------------------- resume_from_committed


def test_resume_from_committed_exports_each_record_once_across_runs(
    tmp_path: pathlib.Path,
) -> None:
    house = House(tmp_path, segment_max_records=4)
    house.lsh.create_topic("orders", 3)

    def append(per_partition: int) -> set[tuple[int, int]]:
        added = set()
        for partition in range(3):
            offsets = house.lsh.append(
                "orders", partition, [f"o{partition}"] * per_partition, flush=True
            )
            added |= {(partition, o) for o in offsets}
        return added

    def run(name: str) -> set[tuple[int, int]]:
        out = tmp_path / name
        run_example(
            "resume_from_committed.py",
            *house.args("orders"),
            "--group=nightly",
            f"--output={out}/orders",
            cwd=tmp_path,
        )
        rows = _lines("orders-*.jsonl", out)
        pairs = [(r["partition"], r["offset"]) for r in rows]
        assert len(pairs) == len(set(pairs)), "a record was exported twice in one run"
        return set(pairs)

    first_batch = append(9)
    assert run("run1") == first_batch
    second_batch = append(5)
    assert run("run2") == second_batch
    assert run("run3") == set()
    committed = {p: house.lsh.metadata().committed_offset("nightly", "orders", p) for p in range(3)}
    assert committed == {0: 14, 1: 14, 2: 14}
