"""``streamhouse-beam read``: JSON lines, positions, metrics file, errors."""

from __future__ import annotations

import base64
import json
import pathlib

import pytest

from streamhouse_beam.cli import main
from tests.read_helpers import local_streamhouse


@pytest.fixture()
def store(tmp_path: pathlib.Path) -> pathlib.Path:
    lsh = local_streamhouse(tmp_path, segment_max_records=4)
    lsh.create_topic("t", 2)
    for p in range(2):
        lsh.append(
            "t",
            p,
            [(b"k%d" % p, b"v%d" % i) if i % 2 else b"v%d" % i for i in range(10)],
            flush=True,
        )
    lsh.create_topic("u", 1)
    lsh.append("u", 0, ["u0"], flush=True)
    return tmp_path


def _args(store: pathlib.Path, *more: str) -> list[str]:
    return [
        "read",
        "--metadata-url",
        f"sqlite:///{store}/metadata.db",
        "--storage-url",
        f"file://{store}/segments",
        "--output",
        str(store / "out.jsonl"),
        *more,
    ]


def _lines(store: pathlib.Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (store / "out.jsonl").read_text().splitlines()]


def test_read_writes_one_json_line_per_record_and_the_metrics(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        _args(
            store,
            "--topic",
            "t",
            "--topic",
            "u",
            "--stop",
            "latest",
            "--metrics-out",
            str(store / "m.json"),
        )
    )
    assert status == 0
    lines = _lines(store)
    assert len(lines) == 21
    line = next(x for x in lines if (x["topic"], x["partition"], x["offset"]) == ("t", 1, 3))
    assert set(line) == {"topic", "partition", "offset", "timestamp", "key", "value"}
    assert (
        base64.b64decode(str(line["key"])) == b"k1"
        and base64.b64decode(str(line["value"])) == b"v3"
    )
    assert next(x for x in lines if x["offset"] == 0 and x["topic"] == "t")["key"] is None
    metrics = json.loads((store / "m.json").read_text())
    assert metrics["records_read"] == 21 and metrics["bytes_read"] > 0
    assert "21 records" in capsys.readouterr().err


def test_read_positions_and_max_records(store: pathlib.Path) -> None:
    assert main(_args(store, "--topic", "t", "--start", "offset:6", "--stop", "offset:8")) == 0
    assert sorted((x["partition"], x["offset"]) for x in _lines(store)) == [
        (0, 6),
        (0, 7),
        (1, 6),
        (1, 7),
    ]
    assert (
        main(
            _args(store, "--topic", "t", "--max-records", "5", "--poll-interval", "0.05", "--quiet")
        )
        == 0
    )
    assert len(_lines(store)) == 5


def test_read_passes_unknown_arguments_to_beam(store: pathlib.Path) -> None:
    assert (
        main(
            _args(store, "--topic", "u", "--stop", "latest", "--runner=FnApiRunner", "--job_name=x")
        )
        == 0
    )
    assert len(_lines(store)) == 1


def test_bad_positions_and_topics_are_one_line_errors(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(store, "--topic", "t", "--start", "yesterday")) == 1
    assert "--start 'yesterday'" in capsys.readouterr().err
    assert main(_args(store, "--topic", "t", "--stop", "offset:x")) == 1
    assert "--stop" in capsys.readouterr().err


def test_read_on_a_file_writing_runner_needs_a_stop(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Beam's WriteToText writes an unbounded (tailing) read only in windows: refused up front.
    assert main(_args(store, "--topic", "t", "--runner=PrismRunner")) == 1
    assert "needs a bounded read: give --stop" in capsys.readouterr().err


def test_read_in_streaming_mode_on_flink_is_refused_before_it_runs(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Beam's one-shard WriteToText of a bounded input fails on Flink in streaming mode
    # (docs/flink.md); FlinkRunner starts no job server until the pipeline runs.
    args = _args(store, "--topic", "t", "--stop", "latest", "--runner=FlinkRunner", "--streaming")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "--streaming on Flink" in err
    assert "drop --streaming" in err
