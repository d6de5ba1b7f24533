"""Finding the cached Prism: ``--runner=PrismRunner`` works offline, the CLI picks its runner."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from streamhouse_beam.beam._local_runner import (
    PRISM_JOB_SERVER_TIMEOUT_SECONDS,
    is_prism,
    local_pipeline_args,
)
from streamhouse_beam.cli import main
from streamhouse_beam.cli._read import _beam_args
from streamhouse_beam.errors import RunnerNotInstalledError, StreamHouseError
from tests.read_helpers import local_streamhouse

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture()
def empty_cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("STREAMHOUSE_BEAM_CACHE", str(cache))
    return cache


NO_DEADLINE = f"--job_server_timeout={PRISM_JOB_SERVER_TIMEOUT_SECONDS}"


@pytest.fixture()
def cached_prism(empty_cache: pathlib.Path) -> str:
    """A stand-in Prism in the runner cache (never started by these tests)."""
    binary = empty_cache / "prism" / "prism"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 1\n")
    binary.chmod(0o755)
    return str(binary)


@pytest.mark.parametrize(
    "runner",
    ["--runner=PrismRunner", "--runner=prism", "--runner=PRISMRUNNER"],
)
def test_prism_gets_the_cached_binary(cached_prism: str, runner: str) -> None:
    assert local_pipeline_args([runner, "--streaming"]) == [
        runner,
        "--streaming",
        f"--prism_location={cached_prism}",
        NO_DEADLINE,
    ]


def test_prism_as_two_arguments_gets_the_cached_binary(cached_prism: str) -> None:
    args = local_pipeline_args(["--runner", "PrismRunner"])
    assert args[-2:] == [f"--prism_location={cached_prism}", NO_DEADLINE]


def test_a_given_prism_location_and_timeout_are_kept(cached_prism: str) -> None:
    argv = ["--runner=PrismRunner", "--prism_location=/opt/prism", "--job_server_timeout=60"]
    assert local_pipeline_args(argv) == argv


def test_prism_results_outlive_beams_five_minute_stream_deadline(cached_prism: str) -> None:
    """Beam opens the job's message stream with --job_server_timeout (300 s) as deadline."""
    from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions

    options = PipelineOptions(local_pipeline_args(["--runner=PrismRunner"]))
    assert options.view_as(PortableOptions).job_server_timeout > 365 * 24 * 3600


def test_the_default_runner_is_added_only_when_none_is_given(cached_prism: str) -> None:
    assert local_pipeline_args([], default_runner="FnApiRunner") == ["--runner=FnApiRunner"]
    assert local_pipeline_args([], default_runner="PrismRunner") == [
        "--runner=PrismRunner",
        f"--prism_location={cached_prism}",
        NO_DEADLINE,
    ]
    assert local_pipeline_args(["--runner=FnApiRunner"], default_runner="PrismRunner") == [
        "--runner=FnApiRunner"
    ]


def test_other_runners_are_left_alone(empty_cache: pathlib.Path) -> None:
    argv = ["--runner=FlinkRunner", "--flink_master=[local]"]
    assert local_pipeline_args(argv, default_runner="PrismRunner") == argv
    assert not is_prism("FlinkRunner") and not is_prism(None)
    assert is_prism("apache_beam.runners.portability.prism_runner.PrismRunner")


def test_prism_without_a_cached_binary_says_how_to_get_one(empty_cache: pathlib.Path) -> None:
    with pytest.raises(RunnerNotInstalledError) as info:
        local_pipeline_args(["--runner=PrismRunner"])
    assert isinstance(info.value, StreamHouseError)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(empty_cache / "prism" / "prism") in message
    assert "make runners" in message and "--prism_location=" in message


def test_the_cli_tails_on_the_cached_prism_and_reads_bounded_on_fnapirunner(
    cached_prism: str,
) -> None:
    assert _beam_args([], tailing=True) == [
        "--runner=PrismRunner",
        f"--prism_location={cached_prism}",
        NO_DEADLINE,
    ]
    assert _beam_args([], tailing=False) == ["--runner=FnApiRunner"]


def test_the_cli_tails_on_fnapirunner_when_prism_is_not_built(empty_cache: pathlib.Path) -> None:
    assert _beam_args([], tailing=True) == ["--runner=FnApiRunner"]


def test_cli_read_on_prism_without_a_binary_is_one_line_naming_make_runners(
    empty_cache: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lsh = local_streamhouse(tmp_path, segment_max_records=4)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, ["a", "b"], flush=True)
    status = main(
        [
            "read",
            "--metadata-url",
            f"sqlite:///{tmp_path}/metadata.db",
            "--storage-url",
            f"file://{tmp_path}/segments",
            "--topic",
            "t",
            "--stop",
            "latest",
            "--output",
            str(tmp_path / "out.jsonl"),
            "--runner=PrismRunner",
        ]
    )
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("streamhouse-beam read: RunnerNotInstalledError: no Prism binary")
    assert "make runners" in err[0]
    assert not (tmp_path / "out.jsonl").exists()


def test_runtime_modules_never_import_the_testing_package() -> None:
    code = (
        "import sys, streamhouse_beam.cli, streamhouse_beam.cli._read, "
        "streamhouse_beam.beam._local_runner, streamhouse_beam._runner_cache;"
        "bad = [m for m in sys.modules if m.startswith('streamhouse_beam.testing')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
