"""Build-time runner checks: ``commit_offsets_group`` is refused on Flink in batch mode.

No Flink is started: Beam's ``FlinkRunner`` only starts its job server when a pipeline runs,
so applying a read to a pipeline built for it exercises the check. A ``PortableRunner`` is
recognised as Flink by asking its job service to describe its options; the tests serve that
one call from a small gRPC job service answering as Flink's does (and as Beam's Python job
service does, for the negative case).
"""

from __future__ import annotations

import logging
import pathlib
import socket
import types
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import apache_beam as beam
import grpc
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

from streamhouse_beam import (
    ReadAllFromStreamHouse,
    ReadFromStreamHouse,
    StopPosition,
    UnsupportedOnRunnerError,
)
from streamhouse_beam.beam import _runner_checks as runner_checks
from tests.read_helpers import urls, write_topic

FLINK_BATCH = ["--runner=FlinkRunner", "--flink_master=[local]"]


@pytest.fixture()
def topic(tmp_path: pathlib.Path) -> pathlib.Path:
    write_topic(tmp_path, "t", [[f"v{i}" for i in range(3)] for _ in range(2)])
    return tmp_path


def _apply(tmp: pathlib.Path, args: list[str], **read: Any) -> beam.Pipeline:
    pipeline = beam.Pipeline(options=PipelineOptions(args))
    _ = pipeline | ReadFromStreamHouse("t", **urls(tmp), **read)
    return pipeline


def test_flink_batch_bounded_read_with_offset_commits_is_refused_when_applied(
    topic: pathlib.Path,
) -> None:
    with pytest.raises(UnsupportedOnRunnerError) as caught:
        _apply(topic, FLINK_BATCH, stop=StopPosition.latest(), commit_offsets_group="billing")
    err = caught.value
    assert (err.option, err.runner) == ("commit_offsets_group", "Flink (batch mode)")
    message = str(err)
    assert "ReadFromStreamHouse: commit_offsets_group='billing'" in message
    assert "--streaming --checkpointing_interval=" in message
    assert "drop commit_offsets_group" in message


@pytest.mark.parametrize(
    "runner",
    ["FlinkRunner", "flink", "apache_beam.runners.portability.flink_runner.FlinkRunner"],
)
def test_every_spelling_of_the_flink_runner_is_recognised(topic: pathlib.Path, runner: str) -> None:
    with pytest.raises(UnsupportedOnRunnerError):
        _apply(topic, [f"--runner={runner}"], stop=StopPosition.latest(), commit_offsets_group="g")


def test_read_all_bounded_on_flink_batch_is_refused(topic: pathlib.Path) -> None:
    pipeline = beam.Pipeline(options=PipelineOptions(FLINK_BATCH))
    partitions = pipeline | beam.Create([("t", 0), ("t", 1)])
    with pytest.raises(UnsupportedOnRunnerError, match="ReadAllFromStreamHouse"):
        _ = partitions | ReadAllFromStreamHouse(
            **urls(topic), stop=StopPosition.latest(), commit_offsets_group="g"
        )


def test_flink_streaming_with_checkpoints_accepts_offset_commits_silently(
    topic: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = [*FLINK_BATCH, "--streaming", "--checkpointing_interval=1000"]
    with caplog.at_level(logging.WARNING, logger=runner_checks.__name__):
        _apply(topic, args, stop=StopPosition.latest(), commit_offsets_group="g")
    assert caplog.records == []


def test_flink_streaming_without_checkpoints_warns_that_nothing_will_be_committed(
    topic: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=runner_checks.__name__):
        _apply(
            topic,
            [*FLINK_BATCH, "--streaming"],
            stop=StopPosition.latest(),
            commit_offsets_group="g",
        )
    assert len(caplog.records) == 1
    assert "without --checkpointing_interval" in caplog.records[0].getMessage()


def test_flink_batch_tailing_read_is_accepted_because_flink_runs_it_streaming(
    topic: pathlib.Path,
) -> None:
    # An unbounded PCollection switches Flink's job to streaming mode whatever --streaming says.
    _apply(topic, FLINK_BATCH, stop=None, commit_offsets_group="g")


def test_flink_batch_read_without_offset_commits_is_accepted(topic: pathlib.Path) -> None:
    _apply(topic, FLINK_BATCH, stop=StopPosition.latest())


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--runner=FnApiRunner"],
        ["--runner=PrismRunner"],
    ],
    ids=["default", "fnapi", "prism"],
)
def test_other_runners_accept_offset_commits_in_batch(topic: pathlib.Path, args: list[str]) -> None:
    _apply(topic, args, stop=StopPosition.latest(), commit_offsets_group="g")


def test_dataflow_is_not_taken_for_flink() -> None:
    # A Dataflow pipeline validates its GCS locations online when built, so check the runner
    # object itself rather than applying a read.
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    pipeline = types.SimpleNamespace(runner=DataflowRunner(), options=PipelineOptions([]))
    assert not runner_checks.is_flink(pipeline)


def test_offset_commits_still_work_on_fnapi_runner(topic: pathlib.Path) -> None:
    from streamhouse_beam.metadata import open_metadata

    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        _ = pipeline | ReadFromStreamHouse(
            "t", **urls(topic), stop=StopPosition.latest(), commit_offsets_group="g"
        )
    meta = open_metadata(f"sqlite:///{topic}/metadata.db")
    assert [meta.committed_offset("g", "t", p) for p in range(2)] == [3, 3]


class _DescribingJobService(beam_job_api_pb2_grpc.JobServiceServicer):  # type: ignore[misc]
    """Answers only DescribePipelineOptions, with the given option names."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls = 0

    def DescribePipelineOptions(  # the gRPC method name
        self, request: Any, context: Any
    ) -> beam_job_api_pb2.DescribePipelineOptionsResponse:
        self.calls += 1
        return beam_job_api_pb2.DescribePipelineOptionsResponse(
            options=[beam_job_api_pb2.PipelineOptionDescriptor(name=n) for n in self.names]
        )


def _job_service(names: list[str]) -> Iterator[tuple[str, _DescribingJobService]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service = _DescribingJobService(names)
    beam_job_api_pb2_grpc.add_JobServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        server.stop(None)
        runner_checks._described.clear()


@pytest.fixture()
def flink_job_service() -> Iterator[tuple[str, _DescribingJobService]]:
    yield from _job_service(["flink_master", "parallelism", "checkpointing_interval"])


@pytest.fixture()
def python_job_service() -> Iterator[tuple[str, _DescribingJobService]]:
    yield from _job_service(["job_name", "streaming"])


def test_portable_runner_on_a_flink_job_service_is_refused_in_batch(
    topic: pathlib.Path, flink_job_service: tuple[str, _DescribingJobService]
) -> None:
    endpoint, service = flink_job_service
    args = ["--runner=PortableRunner", f"--job_endpoint={endpoint}"]
    with pytest.raises(UnsupportedOnRunnerError, match="on Flink in batch mode"):
        _apply(topic, args, stop=StopPosition.latest(), commit_offsets_group="g")
    # The answer is remembered per endpoint: a second read does not ask again.
    with pytest.raises(UnsupportedOnRunnerError):
        _apply(topic, args, stop=StopPosition.latest(), commit_offsets_group="g")
    assert service.calls == 1
    _apply(topic, [*args, "--streaming"], stop=StopPosition.latest(), commit_offsets_group="g")


def test_portable_runner_on_another_job_service_is_accepted(
    topic: pathlib.Path, python_job_service: tuple[str, _DescribingJobService]
) -> None:
    endpoint, service = python_job_service
    args = ["--runner=PortableRunner", f"--job_endpoint={endpoint}"]
    _apply(topic, args, stop=StopPosition.latest(), commit_offsets_group="g")
    assert service.calls == 1


def test_portable_runner_whose_job_service_does_not_answer_is_accepted(
    topic: pathlib.Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    args = ["--runner=PortableRunner", f"--job_endpoint=127.0.0.1:{port}"]
    _apply(topic, args, stop=StopPosition.latest(), commit_offsets_group="g")
    assert f"127.0.0.1:{port}" not in runner_checks._described


def test_yaml_provider_read_with_offset_commits_is_refused_on_flink_batch(
    topic: pathlib.Path,
) -> None:
    from apache_beam.yaml.yaml_transform import expand_pipeline

    provider = pathlib.Path(__file__).resolve().parent.parent / "transforms" / "streamhouse.yaml"
    spec = f"""
pipeline:
  type: chain
  transforms:
    - type: ReadFromStreamHouse
      config:
        topic: t
        metadata_url: "sqlite:///{topic}/metadata.db"
        storage_url: "file://{topic}/segments"
        stop: latest
        commit_offsets_group: g
providers:
  - include: "{provider}"
"""
    pipeline = beam.Pipeline(options=PipelineOptions(FLINK_BATCH))
    # Beam YAML names the failing transform and its line, and keeps our error as the cause.
    with pytest.raises(ValueError, match='"ReadFromStreamHouse" at line 5') as caught:
        expand_pipeline(pipeline, spec)
    assert isinstance(caught.value.__cause__, UnsupportedOnRunnerError)
    assert "on Flink in batch mode" in str(caught.value)


# ---------------------------------------------------------------- the job server's runner fix


def _launcher(where: pathlib.Path, class_path: str, *, with_fixes_jar: bool) -> pathlib.Path:
    """A launcher jar whose manifest names ``class_path``, wrapped as ``jar`` wraps lines."""
    import zipfile

    where.mkdir(parents=True, exist_ok=True)
    line = "Class-Path: " + class_path
    wrapped = "\r\n ".join([line[:72], *(line[i : i + 71] for i in range(72, len(line), 71))])
    manifest = f"Manifest-Version: 1.0\r\nMain-Class: Driver\r\n{wrapped}\r\n"
    launcher = where / "job-server.jar"
    with zipfile.ZipFile(launcher, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest)
    if with_fixes_jar:
        (where / "patches").mkdir()
        (where / runner_checks.RUNNER_FIXES_JAR).write_bytes(b"PK\x05\x06" + bytes(18))
    return launcher


_LIBS = " ".join(f"lib/dependency-number-{i}-1.0.jar" for i in range(8))


def test_a_launcher_naming_the_runner_fixes_first_has_them(tmp_path: pathlib.Path) -> None:
    jar = _launcher(tmp_path, f"patches/runner-fixes.jar {_LIBS}", with_fixes_jar=True)
    assert runner_checks.has_runner_fixes(str(jar))


@pytest.mark.parametrize(
    ("class_path", "with_fixes_jar"),
    [(_LIBS, False), (_LIBS, True), (f"patches/runner-fixes.jar {_LIBS}", False)],
    ids=["unpatched", "jar-present-but-not-listed", "listed-but-missing"],
)
def test_other_launchers_lack_the_runner_fixes(
    tmp_path: pathlib.Path, class_path: str, with_fixes_jar: bool
) -> None:
    jar = _launcher(tmp_path, class_path, with_fixes_jar=with_fixes_jar)
    assert not runner_checks.has_runner_fixes(str(jar))


def test_a_url_or_a_file_that_is_no_jar_lacks_the_runner_fixes(tmp_path: pathlib.Path) -> None:
    (tmp_path / "not-a.jar").write_text("hello", encoding="utf-8")
    assert not runner_checks.has_runner_fixes(str(tmp_path / "not-a.jar"))
    assert not runner_checks.has_runner_fixes("https://example.invalid/job-server.jar")


def _job_server_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "apache/beam#27648" in r.getMessage()]


def test_a_tailing_read_on_flink_with_beams_own_job_server_is_warned_about(
    topic: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=runner_checks.__name__):
        _apply(topic, [*FLINK_BATCH, "--streaming"], stop=None)
    (message,) = _job_server_warnings(caplog)
    assert "ReadFromStreamHouse" in message and "Beam's own job server" in message
    assert "docs/flink.md" in message


def test_a_tailing_read_with_an_unpatched_job_server_jar_is_warned_about(
    topic: pathlib.Path, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    jar = _launcher(tmp_path / "js", _LIBS, with_fixes_jar=False)
    args = [*FLINK_BATCH, "--streaming", f"--flink_job_server_jar={jar}"]
    with caplog.at_level(logging.WARNING, logger=runner_checks.__name__):
        _apply(topic, args, stop=None)
    (message,) = _job_server_warnings(caplog)
    assert str(jar) in message


def test_the_patched_job_server_and_bounded_reads_and_other_runners_get_no_warning(
    topic: pathlib.Path, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    jar = _launcher(tmp_path / "js", f"patches/runner-fixes.jar {_LIBS}", with_fixes_jar=True)
    with caplog.at_level(logging.WARNING, logger=runner_checks.__name__):
        _apply(topic, [*FLINK_BATCH, "--streaming", f"--flink_job_server_jar={jar}"], stop=None)
        _apply(topic, [*FLINK_BATCH, "--streaming"], stop=StopPosition.latest())
        _apply(topic, ["--runner=FnApiRunner", "--streaming"], stop=None)
    assert _job_server_warnings(caplog) == []
