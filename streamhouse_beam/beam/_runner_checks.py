"""Checks, made when a read is added to a pipeline, of what the pipeline's runner can honour.

Beam's portable Flink runner finalizes bundles only in streaming mode, and there only when a
Flink checkpoint completes (the bundle's output is then part of a durable snapshot). A bounded
read with ``commit_offsets_group`` in batch mode would fail when the job runs, after any
earlier stages have done their work, with ``UnsupportedOperationException: Portable Flink
runner doesn't support bundle finalization in batch mode``; :func:`check_offset_commits`
refuses it while the pipeline is built instead, saying what to do. A streaming job without a
checkpoint interval runs, but commits nothing: that gets a warning.

The runner is recognised as Flink when it is Beam's ``FlinkRunner`` (any ``--flink_master``),
or a ``PortableRunner`` whose job service (``--job_endpoint``) describes Flink's pipeline
options: one ``DescribePipelineOptions`` call, the one ``PortableRunner`` itself makes when it
submits, answered once per endpoint and process. An endpoint that does not answer within
:data:`PROBE_TIMEOUT_SECONDS` is taken as not Flink, so the check never refuses a pipeline
it cannot tell about (Flink then still reports the run-time error).

A tailing read on ``FlinkRunner`` with a job server that lacks the project's runner fix for
apache/beam#27648 (docs/flink.md) gets a warning from :func:`check_flink_job_server`: on such a
job server every self-checkpoint of the read adds to every later Flink checkpoint.

Every other runner (FnApiRunner, Prism, Dataflow, the local job service) is left alone.
"""

from __future__ import annotations

import logging
import pathlib
import threading
import zipfile
from typing import Any

from streamhouse_beam.errors import UnsupportedOnRunnerError

__all__ = [
    "PROBE_TIMEOUT_SECONDS",
    "RUNNER_FIXES_JAR",
    "check_flink_job_server",
    "check_offset_commits",
    "has_runner_fixes",
    "is_flink",
]

_LOG = logging.getLogger(__name__)

#: Seconds a ``PortableRunner`` job service gets to describe its pipeline options.
PROBE_TIMEOUT_SECONDS = 5.0

# Flink's job server describes this option; Beam's Python job service and Prism do not.
_FLINK_OPTION = "flink_master"

#: The jar of runner fixes ``.ci/fetch-runners`` builds, as the job server's manifest names it.
RUNNER_FIXES_JAR = "patches/runner-fixes.jar"

_described: dict[str, bool] = {}
_described_lock = threading.Lock()


def _job_service_is_flink(endpoint: str) -> bool:
    """Whether the job service at ``endpoint`` describes Flink's options (False if unreachable)."""
    with _described_lock:
        known = _described.get(endpoint)
    if known is not None:
        return known
    import grpc
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

    channel = grpc.insecure_channel(endpoint)
    try:
        stub = beam_job_api_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        response = stub.DescribePipelineOptions(
            beam_job_api_pb2.DescribePipelineOptionsRequest(), timeout=PROBE_TIMEOUT_SECONDS
        )
    except grpc.RpcError as exc:
        # Unknown is not Flink: never refuse what cannot be told; do not remember it either,
        # the service may just not be up yet.
        _LOG.debug("job service %s did not describe its options: %s", endpoint, exc)
        return False
    finally:
        channel.close()
    flink = any(option.name == _FLINK_OPTION for option in response.options)
    with _described_lock:
        _described[endpoint] = flink
    return flink


def is_flink(pipeline: Any) -> bool:
    """Whether ``pipeline`` runs on Flink: ``FlinkRunner``, or a Flink job service's endpoint."""
    from apache_beam.options.pipeline_options import PortableOptions
    from apache_beam.runners.portability.flink_runner import FlinkRunner
    from apache_beam.runners.portability.portable_runner import PortableRunner

    runner = getattr(pipeline, "runner", None)
    if isinstance(runner, FlinkRunner):
        return True
    if not isinstance(runner, PortableRunner):
        return False
    endpoint = pipeline.options.view_as(PortableOptions).job_endpoint
    if not endpoint or endpoint == "embed":
        return False
    return _job_service_is_flink(endpoint)


def check_offset_commits(pipeline: Any, *, group: str | None, bounded: bool, where: str) -> None:
    """Refuse ``commit_offsets_group`` where the runner cannot finalize bundles.

    Args:
        pipeline: the pipeline the read is being added to.
        group: the read's ``commit_offsets_group`` (nothing to check when None).
        bounded: whether the read's output is bounded. Flink runs a pipeline holding an
            unbounded PCollection in streaming mode even without ``--streaming``, so only
            bounded reads can land in batch mode.
        where: the transform's label, for the message.

    Raises:
        UnsupportedOnRunnerError: the pipeline runs on Flink in batch mode.
    """
    if group is None or not is_flink(pipeline):
        return
    from apache_beam.options.pipeline_options import StandardOptions

    options = pipeline.options
    if bounded and not options.view_as(StandardOptions).streaming:
        raise UnsupportedOnRunnerError(
            f"{where}: commit_offsets_group={group!r} cannot be honoured on Flink in batch "
            "mode: Beam's portable Flink runner finalizes bundles (which is when offsets are "
            "committed) only in streaming mode, and the job would fail when it runs "
            "(apache/beam#19526). Run it with --streaming --checkpointing_interval=<ms> "
            "(offsets are committed as each checkpoint completes), or drop "
            "commit_offsets_group and commit the stop offsets yourself once the job has "
            "finished (see docs/flink.md, 'Offset commits in batch mode').",
            option="commit_offsets_group",
            runner="Flink (batch mode)",
        )
    given = options.get_all_options(retain_unknown_options=True)
    interval = str(given.get("checkpointing_interval") or "-1")
    if interval.lstrip("-").isdigit() and int(interval) <= 0 and not given.get("flink_conf_dir"):
        _LOG.warning(
            "%s: commit_offsets_group=%r on Flink without --checkpointing_interval: Flink "
            "commits offsets only when a checkpoint completes, so none will be committed "
            "unless your Flink configuration enables checkpoints",
            where,
            group,
        )


def has_runner_fixes(jar: str) -> bool:
    """Whether the job-server launcher ``jar`` puts the project's runner fixes on its classpath.

    True when its manifest's ``Class-Path`` names :data:`RUNNER_FIXES_JAR` and that jar exists
    beside it; False for any other jar, a URL, or a file that cannot be read as a jar.
    """
    path = pathlib.Path(jar)
    try:
        with zipfile.ZipFile(path) as launcher:
            manifest = launcher.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    # Manifest lines are wrapped at 72 bytes; a continuation line starts with one space.
    unwrapped = manifest.replace("\r\n", "\n").replace("\n ", "")
    for line in unwrapped.splitlines():
        if line.startswith("Class-Path:"):
            entries = line.split()[1:]
            return RUNNER_FIXES_JAR in entries and (path.parent / RUNNER_FIXES_JAR).is_file()
    return False


def check_flink_job_server(pipeline: Any, *, unbounded: bool, where: str) -> None:
    """Warn when a tailing read runs on ``FlinkRunner`` with a job server lacking the fix.

    Args:
        pipeline: the pipeline the read is being added to.
        unbounded: whether the read tails (only a tailing read self-checkpoints without end).
        where: the transform's label, for the message.
    """
    if not unbounded:
        return
    from apache_beam.options.pipeline_options import FlinkRunnerOptions
    from apache_beam.runners.portability.flink_runner import FlinkRunner

    if not isinstance(getattr(pipeline, "runner", None), FlinkRunner):
        return
    jar = pipeline.options.view_as(FlinkRunnerOptions).flink_job_server_jar
    if jar and has_runner_fixes(jar):
        return
    _LOG.warning(
        "%s: this tailing read runs on Flink with %s, which does not carry streamhouse-beam's "
        "fix for apache/beam#27648: unless it is a Beam release with that fix, every poll of "
        "every partition adds a few KB to every later checkpoint, for as long as the job runs. "
        "Pass the job server that `make runners` builds (--flink_job_server_jar=...; "
        "streamhouse_beam.testing.runners.flink_job_server_jar()); see docs/flink.md",
        where,
        f"the job server {jar}" if jar else "Beam's own job server",
    )
