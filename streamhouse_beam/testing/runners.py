"""Real Beam runners for tests and examples: Flink (embedded), Prism and the portable job service.

``.ci/fetch-runners`` (``make runners``) puts Beam's Flink job server and a Prism binary into a
per-user cache (``~/.cache/streamhouse-beam``, or ``$STREAMHOUSE_BEAM_CACHE``). This module
finds them and builds the pipeline options that run a pipeline on each runner in this process's
own Python (``--environment_type=LOOPBACK``), so the DoFns run against the same installed
``streamhouse_beam`` and can read local files and SQLite databases::

    from apache_beam.options.pipeline_options import PipelineOptions

    with beam.Pipeline(options=PipelineOptions(flink_pipeline_args(streaming=True))) as p:
        ...

    with PortableJobService() as service:
        options = PipelineOptions(portable_pipeline_args(service.endpoint))

Missing runners raise :class:`~streamhouse_beam.errors.RunnerNotInstalledError` saying which
command installs them. The cache lookup itself (:func:`cache_dir`, :func:`prism_binary`) lives in
the runtime module :mod:`streamhouse_beam._runner_cache`, which the CLI and examples use too.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import tempfile
from collections.abc import Sequence

from streamhouse_beam._runner_cache import FETCH_HINT as _FETCH_HINT
from streamhouse_beam._runner_cache import cache_dir, prism_binary
from streamhouse_beam.errors import RunnerNotInstalledError
from streamhouse_beam.testing.servers import _GrpcChildServer

__all__ = [
    "FLINK_JAVA17_OPENS",
    "FlinkJobServer",
    "PortableJobService",
    "RunnerNotInstalledError",
    "cache_dir",
    "flink_job_server",
    "flink_job_server_jar",
    "flink_pipeline_args",
    "portable_pipeline_args",
    "prism_binary",
    "prism_pipeline_args",
]

#: The JVM option a Flink job server on Java 17 needs so Flink's Kryo serializers can copy
#: ``java.util`` collections (``Arrays.asList``); Java 11 accepts it too.
FLINK_JAVA17_OPENS = "--add-opens=java.base/java.util=ALL-UNNAMED"


@dataclasses.dataclass(frozen=True)
class FlinkJobServer:
    """The Flink job server jar and the Flink/Beam pairing it was fetched for.

    Attributes:
        jar: path passed as ``--flink_job_server_jar``.
        flink_version: the Flink version it embeds, e.g. ``"1.19"``.
        beam_version: the Beam (Java) release it comes from, e.g. ``"2.62.0"``.
        kind: ``"shaded"`` (Beam's published job-server jar), ``"assembled"`` (a launcher jar
            over the unshaded runner and its dependencies) or ``"given"`` (a user's jar).
        patch_jar: the jar of runner fixes ``.ci/fetch-runners`` compiled from Beam's released
            sources and ``.ci/patches/`` (see docs/flink.md), ahead of Beam's own classes on
            every classpath; None when the job server is unpatched.
        patches: the fingerprint of the patches applied ("" when none).
    """

    jar: pathlib.Path
    flink_version: str
    beam_version: str
    kind: str
    patch_jar: pathlib.Path | None = None
    patches: str = ""

    def classpath(self) -> list[str]:
        """The Java classpath of the job server, patches first, for starting Flink JVMs.

        A Flink JobManager or TaskManager started with it runs the same (patched) Beam runner
        classes as the job server: for the assembled job server that is the patch jar and the
        ``lib/`` directory beside the launcher jar; for a shaded or given jar, the jar itself.
        """
        entries = [str(self.patch_jar)] if self.patch_jar is not None else []
        lib = self.jar.parent / "lib"
        if self.kind == "assembled" and lib.is_dir():
            entries.append(str(lib / "*"))
        else:
            entries.append(str(self.jar))
        return entries


def _read_env_file(path: pathlib.Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def flink_job_server() -> FlinkJobServer:
    """The cached Flink job server.

    Raises:
        RunnerNotInstalledError: when ``.ci/fetch-runners`` has not fetched one.
    """
    env_path = cache_dir() / "flink-job-server.env"
    if not env_path.is_file():
        raise RunnerNotInstalledError(f"no Flink job server recorded in {env_path}; {_FETCH_HINT}")
    values = _read_env_file(env_path)
    jar = pathlib.Path(values.get("jar", ""))
    if not values.get("jar") or not jar.is_file():
        raise RunnerNotInstalledError(
            f"{env_path} names the Flink job server {str(jar)!r}, which does not exist; "
            f"{_FETCH_HINT}"
        )
    patch_jar = pathlib.Path(values["patch_jar"]) if values.get("patch_jar") else None
    if patch_jar is not None and not patch_jar.is_file():
        raise RunnerNotInstalledError(
            f"{env_path} names the runner patch jar {str(patch_jar)!r}, which does not exist; "
            f"{_FETCH_HINT}"
        )
    return FlinkJobServer(
        jar=jar,
        flink_version=values.get("flink_version", ""),
        beam_version=values.get("beam_version", ""),
        kind=values.get("kind", ""),
        patch_jar=patch_jar,
        patches=values.get("patches", ""),
    )


def flink_job_server_jar() -> str:
    """Path of the cached Flink job server jar, for ``--flink_job_server_jar``."""
    return str(flink_job_server().jar)


def _common_args(
    *,
    streaming: bool,
    extra: Sequence[str],
) -> list[str]:
    args = ["--environment_type=LOOPBACK"]
    if streaming:
        args.append("--streaming")
    args.extend(extra)
    return args


def flink_pipeline_args(
    *,
    streaming: bool = False,
    checkpointing_interval_ms: int | None = None,
    parallelism: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """Pipeline options that run on an embedded Flink cluster started by the job server.

    Args:
        streaming: run in streaming mode (needed for unbounded reads).
        checkpointing_interval_ms: enable Flink checkpoints this often (Flink finalizes
            bundles, and so commits offsets, when a checkpoint completes). Bundles are then
            finished before each checkpoint. Note that with checkpointing on, Beam keeps the
            job's sources alive for checkpoints, so a streaming job does not end by itself:
            cancel it (``result.cancel()``).
        parallelism: Flink's default parallelism (None: the job server's default, 1 here).
        extra: more options appended as they are.

    Raises:
        RunnerNotInstalledError: when the job server has not been fetched.
        ValueError: when a number is not positive.
    """
    if checkpointing_interval_ms is not None and checkpointing_interval_ms < 1:
        raise ValueError(
            f"checkpointing_interval_ms must be >= 1, got {checkpointing_interval_ms!r}"
        )
    if parallelism is not None and parallelism < 1:
        raise ValueError(f"parallelism must be >= 1, got {parallelism!r}")
    server = flink_job_server()
    args = [
        "--runner=FlinkRunner",
        "--flink_master=[local]",
        f"--flink_job_server_jar={server.jar}",
        # The embedded cluster runs in the job server's JVM. On Java 17, Flink's Kryo copy of
        # a generic-typed element between chained operators (WriteToText's stages in streaming
        # mode) needs java.util opened, as Flink's distribution configures it (docs/flink.md).
        f"--job_server_jvm_properties={FLINK_JAVA17_OPENS}",
    ]
    from apache_beam.options.pipeline_options import FlinkRunnerOptions

    # --flink_version only picks a jar to download; ours is given, but keep the option honest.
    if server.flink_version in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS:
        args.append(f"--flink_version={server.flink_version}")
    if checkpointing_interval_ms is not None:
        args.append(f"--checkpointing_interval={checkpointing_interval_ms}")
        # By default Beam's Flink operators start a checkpoint at once and buffer the bundle's
        # remaining output in it; a splittable DoFn that checkpoints itself after every batch
        # then emits nothing at all (a toy OffsetRange SDF shows it). Finishing the bundle
        # first flushes the output and ties bundle finalization (offset commits) to checkpoints.
        args.append("--finish_bundle_before_checkpointing")
    if parallelism is not None:
        args.append(f"--parallelism={parallelism}")
    return args + _common_args(streaming=streaming, extra=extra)


def prism_pipeline_args(*, streaming: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """Pipeline options that run on a Prism started from the cached binary.

    Args:
        streaming: run in streaming mode.
        extra: more options appended as they are.

    Raises:
        RunnerNotInstalledError: when Prism has not been built.
    """
    args = ["--runner=PrismRunner", f"--prism_location={prism_binary()}"]
    return args + _common_args(streaming=streaming, extra=extra)


def portable_pipeline_args(
    job_endpoint: str, *, streaming: bool = False, extra: Sequence[str] = ()
) -> list[str]:
    """Pipeline options that submit to a portable job service at ``job_endpoint``.

    Args:
        job_endpoint: ``host:port`` of the job service (see :class:`PortableJobService`), or
            ``"embed"`` for Beam's in-process job service.
        streaming: run in streaming mode.
        extra: more options appended as they are.
    """
    if not job_endpoint:
        raise ValueError("job_endpoint must be 'host:port' or 'embed', got an empty string")
    args = ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}"]
    return args + _common_args(streaming=streaming, extra=extra)


class PortableJobService(_GrpcChildServer):
    """Beam's local (Python) job service as a child process on a free loopback port.

    It serves the Job API that ``PortableRunner`` submits to, and runs each job with Beam's
    portable FnApiRunner talking to the SDK harness over gRPC (LOOPBACK: this process).
    Start-up, logs and stopping are those of the test servers (:mod:`.servers`); readiness is
    the gRPC port accepting connections.

    Args:
        startup_timeout: seconds to wait for the port to accept connections.
        python: the interpreter to run it with (default: this one).
    """

    label = "job service"

    def __init__(self, *, startup_timeout: float = 60.0, python: str | None = None) -> None:
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be > 0, got {startup_timeout!r}")
        super().__init__(startup_timeout=startup_timeout)
        self.python = python or sys.executable
        self._staging: tempfile.TemporaryDirectory[str] | None = None

    def _command(self, port: int) -> Sequence[str]:
        if self._staging is None:
            self._staging = tempfile.TemporaryDirectory(prefix="streamhouse-job-service-")
        return [
            self.python,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            f"--port={port}",
            f"--staging_dir={self._staging.name}",
        ]

    def start(self) -> PortableJobService:
        """Start the job service and wait until its port accepts connections."""
        super().start()
        return self

    def stop(self) -> None:
        """Stop the job service (terminate, then kill after 10 s) and remove its files."""
        super().stop()
        if self._staging is not None:
            self._staging.cleanup()
            self._staging = None

    def __enter__(self) -> PortableJobService:
        return self.start()
