"""``streamhouse-beam read``: JSON lines, positions, metrics file, errors."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import sys

import pytest

from streamhouse_beam.cli import main
from tests.read_helpers import local_streamhouse, write_topic

REPO = pathlib.Path(__file__).resolve().parents[1]


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


def test_read_poll_limits_bound_each_poll_and_are_validated(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for limits in (["--max-poll-bytes", "5"], ["--max-poll-bytes", "5", "--max-poll-records", "1"]):
        assert main(_args(store, "--topic", "t", "--stop", "latest", *limits)) == 0
        assert len(_lines(store)) == 20
    assert main(_args(store, "--topic", "t", "--stop", "latest", "--max-poll-bytes", "0")) == 1
    assert "max_poll_bytes must be > 0" in capsys.readouterr().err


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
    # (FnApiRunner and Prism run the DoFns in this process and write the file themselves.)
    args = _args(store, "--topic", "t", "--runner=PortableRunner", "--job_endpoint=localhost:1")
    assert main(args) == 1
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


# --------------------------------------------------------------------------------------------
# Failure paths: one line, nothing destroyed
# --------------------------------------------------------------------------------------------


def _cli(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """The installed command as a user runs it: a new process, real stderr and logging."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "streamhouse_beam.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _delete_a_segment(store: pathlib.Path) -> None:
    segments = sorted((store / "segments").glob("org-*/data/t/1/*.seg"))
    assert len(segments) == 3
    segments[1].unlink()


def test_a_read_failing_in_the_pipeline_prints_one_line_and_keeps_the_old_output(
    store: pathlib.Path,
) -> None:
    previous = "".join(f'{{"line": {i}}}\n' for i in range(2400))
    (store / "out.jsonl").write_text(previous)
    _delete_a_segment(store)
    done = _cli(*_args(store, "--topic", "t", "--stop", "latest"), cwd=store)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("streamhouse-beam read: DataLossError: ")
    assert "apache_beam" not in done.stderr and "Traceback" not in done.stderr
    assert (store / "out.jsonl").read_text() == previous
    assert sorted(p.name for p in store.iterdir()) == ["metadata.db", "out.jsonl", "segments"]


def test_a_successful_read_is_quiet_but_for_its_summary(store: pathlib.Path) -> None:
    done = _cli(*_args(store, "--topic", "u", "--stop", "latest"), cwd=store)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"streamhouse-beam read: done, 1 records -> {store / 'out.jsonl'}\n"
    assert len(_lines(store)) == 1


def test_a_failed_read_leaves_no_file_behind(store: pathlib.Path) -> None:
    _delete_a_segment(store)
    assert main(_args(store, "--topic", "t", "--stop", "latest")) == 1
    assert sorted(p.name for p in store.iterdir()) == ["metadata.db", "segments"]


def test_an_unknown_topic_is_refused_before_the_pipeline_naming_the_topics_there(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(store, "--topic", "t", "--topic", "nope", "--stop", "latest")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "TopicNotFoundError: topic 'nope' does not exist" in err
    assert "its topics are 't', 'u'" in err
    assert not (store / "out.jsonl").exists()


def test_a_storage_root_that_does_not_exist_is_refused_before_the_pipeline(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(store, "--topic", "t", "--stop", "latest")
    args[args.index("--storage-url") + 1] = f"file://{store}/segmnts"
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "StorageRootNotFoundError" in err and "segmnts" in err


def test_verbose_adds_the_traceback(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(store, "--topic", "nope", "--stop", "latest", "--verbose")) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("streamhouse-beam read: TopicNotFoundError")


# --------------------------------------------------------------------------------------------
# Output, format, version, progress
# --------------------------------------------------------------------------------------------


def test_output_dash_is_standard_output(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(store)
    args = _args(store, "--topic", "u", "--stop", "latest")
    args[args.index("--output") + 1] = "-"
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["value"] for line in out.splitlines()] == [
        base64.b64encode(b"u0").decode()
    ]
    assert "-> standard output" in err
    assert not (store / "-").exists()


def test_standard_output_is_the_default(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(store, "--topic", "u", "--stop", "latest")
    del args[args.index("--output") : args.index("--output") + 2]
    assert main(args) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_version_names_the_package_and_beam(capsys: pytest.CaptureFixture[str]) -> None:
    from streamhouse_beam import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"streamhouse-beam {__version__} (apache-beam 2.")


def test_format_text_and_json_write_keys_and_values_as_they_are(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [(b"k", b'{"a": [1, "x"]}'), b'"plain"'], flush=True)
    assert main(_args(tmp_path, "--topic", "t", "--stop", "latest", "--format", "json")) == 0
    assert [(x["key"], x["value"]) for x in _lines(tmp_path)] == [
        ("k", {"a": [1, "x"]}),
        (None, "plain"),
    ]
    assert main(_args(tmp_path, "--topic", "t", "--stop", "latest", "--format", "text")) == 0
    assert [x["value"] for x in _lines(tmp_path)] == ['{"a": [1, "x"]}', '"plain"']


def test_format_text_refuses_bytes_that_are_not_utf8_naming_the_record(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"ok", b"\xff\xfe"], flush=True)
    assert main(_args(tmp_path, "--topic", "t", "--stop", "latest", "--format", "text")) == 1
    err = capsys.readouterr().err
    assert "DecodeError" in err and "offset 1" in err and "--format base64" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_help_says_keys_and_values_are_base64_and_how_to_choose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["read", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Key and value are base64 unless --format says otherwise" in text
    assert "{base64,text,json}" in text


def test_progress_shows_done_of_total_and_a_rate_on_a_terminal_only(
    store: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamhouse_beam.cli._jsonl import Progress

    monkeypatch.setattr(Progress, "interval", 0.0)
    assert main(_args(store, "--topic", "t", "--stop", "latest")) == 0
    assert "records/s" not in capsys.readouterr().err  # not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(_args(store, "--topic", "t", "--start", "offset:2", "--stop", "latest")) == 0
    err = capsys.readouterr().err
    assert "\rstreamhouse-beam read: 16/16 records (100%), " in err
    assert "records/s" in err


def test_a_read_with_postgresql_down_prints_one_line(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("psycopg")
    from streamhouse_beam.testing.servers import free_port

    done = _cli(
        "read",
        "--metadata-url",
        f"postgresql://reader:pw@127.0.0.1:{free_port()}/streamhouse",
        "--storage-url",
        f"file://{tmp_path}",
        "--topic",
        "t",
        "--stop",
        "latest",
        "--output",
        str(tmp_path / "out.jsonl"),
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("streamhouse-beam read: MetadataUnavailableError: ")
    assert list(tmp_path.iterdir()) == []


def test_a_reader_closing_standard_output_ends_the_read_quietly(tmp_path: pathlib.Path) -> None:
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("big", 1)
    lsh.append("big", 0, [b"x" * 100] * 20_000, flush=True)  # far more than a pipe buffer
    args = _args(tmp_path, "--topic", "big", "--stop", "latest")
    del args[args.index("--output") : args.index("--output") + 2]  # standard output
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamhouse_beam.cli", *args],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1
    assert json.loads(first)["offset"] == 0
    assert err == ""


def test_an_interrupted_tailing_read_keeps_what_it_read(store: pathlib.Path) -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "streamhouse_beam.cli", *_args(store, "--topic", "t", "--quiet")],
        cwd=store,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    written = 0
    while written < 20 and time.monotonic() < deadline:  # every record is in the temp file
        time.sleep(0.2)
        written = sum(len(p.read_text().splitlines()) for p in store.glob(".out.jsonl.*.tmp"))
    assert written == 20
    assert not (store / "out.jsonl").exists()  # not before the read ends
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err == b""  # nothing from the runner's threads as it stops (Prism, when built)
    assert len(_lines(store)) == 20
    assert not list(store.glob(".out.jsonl.*.tmp"))


def test_format_json_names_the_record_whose_value_is_not_json(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"[1]", (b"\xff", b"2"), b"{nope"], flush=True)
    assert main(_args(tmp_path, "--topic", "t", "--stop", "offset:2", "--format", "json")) == 1
    assert "cannot decode key of 't' partition 0 offset 1: not UTF-8" in capsys.readouterr().err
    args = _args(tmp_path, "--topic", "t", "--start", "offset:2", "--stop", "latest")
    assert main([*args, "--format", "json"]) == 1
    err = capsys.readouterr().err
    assert "cannot decode value of 't' partition 0 offset 2: not JSON" in err


@pytest.mark.parametrize(
    ("positions", "planned"),
    [
        (["--stop", "latest"], 20),
        (["--start", "offset:6", "--stop", "offset:8"], 4),
        (["--start", "offset:12", "--stop", "latest"], 0),
        (["--start", "latest", "--stop", "latest"], 0),
        # Partition 0 committed 7 (3 left), partition 1 never (all 10 from earliest).
        (["--start", "committed:g", "--stop", "latest"], 13),
        (["--start", "committed:g", "--stop", "latest", "--max-records", "5"], 5),
        (["--start", "timestamp:0", "--stop", "latest"], None),
        (["--stop", "timestamp:0", "--max-records", "3"], 3),
        ([], None),
    ],
)
def test_a_bounded_read_s_size_is_planned_from_its_parsed_positions(
    tmp_path: pathlib.Path, positions: list[str], planned: int | None
) -> None:
    from streamhouse_beam.cli import build_parser
    from streamhouse_beam.cli._read import _check_before_running, build_read

    house = write_topic(tmp_path, "t", [[b"v"] * 10, [b"v"] * 10])
    house.commit("g", {("t", 0): 7})
    args, _ = build_parser().parse_known_args(_args(tmp_path, "--topic", "t", *positions))
    assert _check_before_running(args, build_read(args), in_process=True) == planned
