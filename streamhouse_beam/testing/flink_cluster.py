"""A Flink 1.19 session cluster of separate JVMs on one machine, and an SDK worker pool for it.

This is the production shape of a Beam pipeline on Flink, shrunk onto 127.0.0.1: a JobManager
and TaskManagers in their own JVMs, Beam's job server (started by the Python ``FlinkRunner``)
submitting to the cluster's REST endpoint, and the Python SDK harness in separate worker
processes (``--environment_type=EXTERNAL``). Tests use it to kill a TaskManager or an SDK worker
mid-stream and to stop a job with a savepoint; users can use it to try the connector on a real
cluster without installing Flink::

    from apache_beam.options.pipeline_options import PipelineOptions
    from streamhouse_beam.testing.flink_cluster import (
        FlinkSessionCluster, SdkWorkerPool, flink_cluster_pipeline_args)

    with FlinkSessionCluster() as cluster, SdkWorkerPool() as pool:
        args = flink_cluster_pipeline_args(cluster, pool, checkpointing_interval_ms=1000)
        result = beam.Pipeline(options=PipelineOptions(args)) ... .run()
        print(cluster.rest_url)               # Flink's web UI and REST API
        job = cluster.wait_for_running_job()
        print(cluster.latest_checkpoint(job))
        savepoint = cluster.stop_with_savepoint(job, "/tmp/savepoints")

The JVMs run the Flink runtime jars of the assembled job server that ``.ci/fetch-runners``
(``make runners``) caches, on :meth:`FlinkJobServer.classpath() <streamhouse_beam.testing.runners.FlinkJobServer.classpath>`
(runner patches first), so the cluster runs exactly the Beam runner classes the job server
translates for. The cluster's ``flink-conf.yaml`` is generated into its working directory:

- everything binds to 127.0.0.1; the REST and JobManager RPC ports are free ports chosen at
  start, the other ports are ephemeral;
- each TaskManager has :attr:`~FlinkSessionCluster.slots_per_taskmanager` slots (4 by default)
  and the cluster spreads a job's slots evenly over the TaskManagers: a parallelism-4 job runs
  on both TaskManagers, and when one of them is killed the survivor alone has the slots to run
  the restarted job (no TaskManager has to be brought back first);
- the fine-grained TaskManager memory options (Flink's start scripts normally derive them;
  started directly, a TaskManager refuses to run without them), 256 MB of network memory
  (64 MB is too little for Beam's parallel stages), and JVM heap, direct and metaspace limits
  that match them;
- ``heartbeat.timeout`` of 10 s (a killed TaskManager's closed connections are usually
  noticed within 2-3 s; the timeout catches one that hangs), and a fixed-delay restart
  strategy (10 attempts, 2 s apart) for jobs that do not set their own;
- ``state.checkpoints.dir`` and ``state.savepoints.dir`` under the working directory;
- ``classloader.resolve-order: parent-first``: the job server ships its whole classpath with
  each job (about 160 jars, 150 MB, among them both the runner jar and the patch jar, which
  define the same classes); resolved parent-first, every class comes from the TaskManager's own
  classpath, patches first, whatever order the shipped jars are in.

The SDK worker pool (:class:`SdkWorkerPool`) serves Beam's ``BeamFnExternalWorkerPool`` gRPC
API on 127.0.0.1 and starts one Python process per requested worker (one per TaskManager per
job), so a single worker can be killed (:meth:`SdkWorkerPool.workers`). It is this module run as
a program rather than ``apache_beam.runners.worker.worker_pool_main``, which binds every
interface (``[::]``), has no flag to change that, starts workers with whatever ``python`` is
first on ``PATH``, and pipes their stdout to a pipe nobody reads.

Everything is tracked by PID and stopped by :meth:`stop` (or leaving the ``with`` block); the
logs of each process are in the cluster's working directory, and a failed start raises
:class:`FlinkClusterError` with the tail of the log that explains it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

from streamhouse_beam.testing.servers import _GrpcChildServer, free_port

__all__ = [
    "CheckpointInfo",
    "FlinkClusterError",
    "FlinkSessionCluster",
    "JobInfo",
    "SdkWorker",
    "SdkWorkerPool",
    "flink_cluster_pipeline_args",
]

_LOOPBACK = "127.0.0.1"
_MB = 1024 * 1024

#: Flink job states after which a job does nothing more.
TERMINAL_JOB_STATES = frozenset({"FINISHED", "CANCELED", "FAILED", "SUSPENDED"})

# What Flink's own start scripts give a JVM on Java 9+: Flink (and Kryo inside Beam's Flink
# runner) reflect into these JDK packages.
_JAVA_MODULE_FLAGS = (
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.text=ALL-UNNAMED",
    "--add-opens=java.base/java.time=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
)

_JOBMANAGER_MAIN = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
_TASKMANAGER_MAIN = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"


class FlinkClusterError(RuntimeError):
    """The cluster did not start, a REST call failed, or something did not happen in time.

    Messages name the process or REST path and, for start failures, end with its log tail.
    """


@dataclasses.dataclass(frozen=True)
class JobInfo:
    """One job as the cluster's REST API lists it.

    Attributes:
        id: Flink's job id (32 hex digits).
        name: the job name (Beam's job name).
        state: ``CREATED``, ``RUNNING``, ``RESTARTING``, ``FINISHED``, ``CANCELED``, ...
    """

    id: str
    name: str
    state: str


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """A completed checkpoint (or savepoint) of a job.

    Attributes:
        id: the checkpoint id; ids grow by one per triggered checkpoint of a job.
        state_size: bytes of state in it (Flink's ``state_size``: the full size).
        checkpointed_size: bytes written for it (smaller than ``state_size`` only for
            incremental checkpoints).
        external_path: where it was written.
        is_savepoint: True for a savepoint.
        trigger_timestamp_ms: when it was triggered (epoch milliseconds).
        operator_sizes: ``state_size`` per job vertex, by the vertex's name (Beam names a
            vertex after its transforms; a repeated name gets `` [<vertex id>]`` appended).
    """

    id: int
    state_size: int
    checkpointed_size: int
    external_path: str
    is_savepoint: bool
    trigger_timestamp_ms: int
    operator_sizes: dict[str, int]


def _java_major_version(java: str) -> int:
    try:
        proc = subprocess.run(
            [java, "-XshowSettings:properties", "-version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FlinkClusterError(f"could not run {java!r} to find its version: {exc}") from exc
    for line in proc.stderr.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "java.specification.version":
            version = value.strip()
            # "1.8" for Java 8, "11", "17", ... afterwards
            return int(version.split(".")[1]) if version.startswith("1.") else int(version)
    raise FlinkClusterError(
        f"could not find java.specification.version in the output of {java!r}:\n{proc.stderr}"
    )


@dataclasses.dataclass
class _Process:
    """A JVM of the cluster: its child process, log file and the name messages use."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: pathlib.Path
    log: IO[bytes]
    resource_id: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        text = self.log_path.read_bytes().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _stop_processes(processes: Sequence[_Process], *, grace: float) -> None:
    """SIGTERM all, wait up to ``grace`` seconds in total, SIGKILL what is left, reap all."""
    for process in processes:
        if process.alive():
            with contextlib.suppress(ProcessLookupError):
                process.proc.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.proc.kill()
            process.proc.wait(timeout=30)
        process.log.close()


class FlinkSessionCluster:
    """A Flink session cluster: one JobManager and ``taskmanagers`` TaskManagers, all local JVMs.

    Args:
        taskmanagers: how many TaskManagers to start.
        slots_per_taskmanager: task slots per TaskManager; the default 4 lets one TaskManager
            run a parallelism-4 job alone, e.g. after the other one is killed.
        heartbeat_timeout_ms: how long a TaskManager may be silent before the JobManager
            declares it lost (and fails over the tasks it ran).
        restart_attempts: fixed-delay restart attempts of a failed job, cluster default.
        restart_delay_ms: the delay between those attempts.
        startup_timeout: seconds to wait for the REST API and every TaskManager.
        workdir: directory for configuration, logs, checkpoints and savepoints; default a new
            temporary directory, removed by :meth:`stop` (a given directory is kept).
        java: the ``java`` executable.
        classpath: the JVMs' classpath entries; default ``flink_job_server().classpath()``.
        extra_config: more ``flink-conf.yaml`` entries; they override the generated ones.

    Raises:
        ValueError: for a non-positive count, size or timeout.
    """

    def __init__(
        self,
        *,
        taskmanagers: int = 2,
        slots_per_taskmanager: int = 4,
        heartbeat_timeout_ms: int = 10000,
        restart_attempts: int = 10,
        restart_delay_ms: int = 2000,
        startup_timeout: float = 180.0,
        workdir: str | os.PathLike[str] | None = None,
        java: str = "java",
        classpath: Sequence[str] | None = None,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        for name, value in (
            ("taskmanagers", taskmanagers),
            ("slots_per_taskmanager", slots_per_taskmanager),
            ("heartbeat_timeout_ms", heartbeat_timeout_ms),
            ("restart_attempts", restart_attempts),
            ("restart_delay_ms", restart_delay_ms),
            ("startup_timeout", startup_timeout),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.taskmanager_count = taskmanagers
        self.slots_per_taskmanager = slots_per_taskmanager
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.restart_attempts = restart_attempts
        self.restart_delay_ms = restart_delay_ms
        self.startup_timeout = startup_timeout
        self.java = java
        self._given_workdir = pathlib.Path(workdir) if workdir is not None else None
        self._classpath = list(classpath) if classpath is not None else None
        self._extra_config = dict(extra_config or {})
        self._workdir: pathlib.Path | None = None
        self._jobmanager: _Process | None = None
        self._taskmanagers: list[_Process | None] = []
        self._generations: list[int] = []
        self._java_flags: list[str] = []
        self.rest_port = 0
        self.rpc_port = 0

    # --- where things are ---------------------------------------------------------------------

    @property
    def workdir(self) -> pathlib.Path:
        """The cluster's working directory (configuration, logs, checkpoints, savepoints)."""
        if self._workdir is None:
            raise FlinkClusterError("the Flink cluster is not started; call start() first")
        return self._workdir

    @property
    def conf_dir(self) -> pathlib.Path:
        """The directory holding the generated ``flink-conf.yaml``."""
        return self.workdir / "conf"

    @property
    def checkpoints_dir(self) -> pathlib.Path:
        """``state.checkpoints.dir``; also the pipelines' ``--state_backend_storage_path``."""
        return self.workdir / "checkpoints"

    @property
    def savepoints_dir(self) -> pathlib.Path:
        """``state.savepoints.dir``, where savepoints go when no directory is given."""
        return self.workdir / "savepoints"

    @property
    def log_dir(self) -> pathlib.Path:
        """One ``<process>.log`` per JVM (stdout and stderr)."""
        return self.workdir / "log"

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:PORT``: Flink's REST API and web UI."""
        return f"http://{_LOOPBACK}:{self.rest_port}"

    @property
    def flink_master(self) -> str:
        """``127.0.0.1:PORT``, for ``--flink_master``."""
        return f"{_LOOPBACK}:{self.rest_port}"

    @property
    def running(self) -> bool:
        """True while the JobManager process is alive."""
        return self._jobmanager is not None and self._jobmanager.alive()

    @property
    def jobmanager_pid(self) -> int:
        """The JobManager's process id."""
        if self._jobmanager is None:
            raise FlinkClusterError("the Flink cluster is not started; call start() first")
        return self._jobmanager.proc.pid

    def taskmanager_pid(self, index: int) -> int:
        """The process id of TaskManager ``index`` (its current incarnation).

        Raises:
            FlinkClusterError: when that TaskManager is not running (killed and not restarted).
        """
        process = self._taskmanager(index)
        if process is None or not process.alive():
            raise FlinkClusterError(f"TaskManager {index} is not running")
        return process.proc.pid

    def taskmanager_resource_id(self, index: int) -> str:
        """The resource id TaskManager ``index`` registered with (``taskmanager-<i>-<n>``)."""
        process = self._taskmanager(index)
        if process is None:
            raise FlinkClusterError(f"TaskManager {index} has not been started")
        return process.resource_id

    def taskmanager_index(self, resource_id: str) -> int | None:
        """The index of the TaskManager that registered as ``resource_id``, if it is one of ours."""
        for index, process in enumerate(self._taskmanagers):
            if process is not None and process.resource_id == resource_id:
                return index
        return None

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last ``lines`` lines of ``jobmanager`` or ``taskmanager-<i>`` (current incarnation)."""
        if name == "jobmanager" and self._jobmanager is not None:
            return self._jobmanager.tail(lines)
        for process in self._taskmanagers:
            if process is not None and process.name == name:
                return process.tail(lines)
        return "(no such process)"

    # --- starting and stopping ----------------------------------------------------------------

    def start(self) -> FlinkSessionCluster:
        """Start the JobManager and the TaskManagers; wait until every TaskManager registered.

        Idempotent while running.

        Raises:
            FlinkClusterError: when a JVM exits or the cluster is not ready in time; the
                message holds the log tail of the process concerned. The working directory
                is kept until :meth:`stop`.
            RunnerNotInstalledError: when no classpath is given and the job server is missing.
        """
        if self.running:
            return self
        if self._classpath is None:
            from streamhouse_beam.testing.runners import flink_job_server

            self._classpath = flink_job_server().classpath()
        if _java_major_version(self.java) >= 9:
            self._java_flags = list(_JAVA_MODULE_FLAGS)
        if self._given_workdir is not None:
            self._given_workdir.mkdir(parents=True, exist_ok=True)
            self._workdir = self._given_workdir
        else:
            self._workdir = pathlib.Path(tempfile.mkdtemp(prefix="streamhouse-flink-"))
        for directory in (self.conf_dir, self.log_dir, self.checkpoints_dir, self.savepoints_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # A port can be taken between free_port() and the JobManager's bind: try a few.
        last_error: FlinkClusterError | None = None
        for _ in range(3):
            try:
                self._start_once()
                return self
            except FlinkClusterError as err:
                last_error = err
                jobmanager_exited = self._jobmanager is not None and not self._jobmanager.alive()
                self._stop_jvms()
                if not jobmanager_exited:
                    break  # not a port clash: another attempt would fail the same way
        assert last_error is not None
        # The logs the message points at stay for a post-mortem; stop() removes them.
        raise FlinkClusterError(
            f"{last_error} [working directory kept: {self.workdir}; stop() removes it]"
        ) from last_error

    def _start_once(self) -> None:
        self.rest_port = free_port()
        self.rpc_port = free_port()
        self._write_config()
        self._jobmanager = self._spawn(
            "jobmanager", _JOBMANAGER_MAIN, ["-Xms512m", "-Xmx512m"], dynamic={}
        )
        self._wait(
            lambda: self._rest_answers(),
            what=f"the JobManager's REST API on {self.rest_url}",
            watch=[self._jobmanager],
        )
        self._taskmanagers = [None] * self.taskmanager_count
        self._generations = [0] * self.taskmanager_count
        for index in range(self.taskmanager_count):
            self._spawn_taskmanager(index)
        self.wait_for_taskmanagers(self.taskmanager_count, timeout=self.startup_timeout)

    def stop(self) -> None:
        """Stop every JVM (SIGTERM, SIGKILL after 15 s) and remove a temporary working directory."""
        self._stop_jvms()
        self._remove_workdir()

    def _stop_jvms(self) -> None:
        processes = [p for p in self._taskmanagers if p is not None]
        _stop_processes(processes, grace=15)
        if self._jobmanager is not None:
            _stop_processes([self._jobmanager], grace=15)
        self._taskmanagers = []
        self._jobmanager = None

    def _remove_workdir(self) -> None:
        if self._workdir is not None and self._given_workdir is None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None

    def __enter__(self) -> FlinkSessionCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- configuration and processes ----------------------------------------------------------

    def _taskmanager_memory(self) -> dict[str, int]:
        slots = self.slots_per_taskmanager
        return {
            "framework.heap": 128 * _MB,
            "task.heap": 128 * _MB * slots,
            "framework.off-heap": 128 * _MB,
            # Beam's gRPC (netty) buffers to the SDK harness live in direct memory.
            "task.off-heap": 64 * _MB * slots,
            "managed": 32 * _MB * slots,
            "network": 256 * _MB,
            "jvm-metaspace": 256 * _MB,
            "jvm-overhead": 192 * _MB,
        }

    def _config(self) -> dict[str, str]:
        memory = self._taskmanager_memory()
        config = {
            "jobmanager.rpc.address": _LOOPBACK,
            "jobmanager.rpc.port": str(self.rpc_port),
            "jobmanager.bind-host": _LOOPBACK,
            "rest.address": _LOOPBACK,
            "rest.bind-address": _LOOPBACK,
            "rest.port": str(self.rest_port),
            "taskmanager.host": _LOOPBACK,
            "taskmanager.bind-host": _LOOPBACK,
            "taskmanager.rpc.port": "0",
            "taskmanager.data.port": "0",
            "blob.server.port": "0",
            "taskmanager.numberOfTaskSlots": str(self.slots_per_taskmanager),
            "taskmanager.cpu.cores": str(self.slots_per_taskmanager),
            "cluster.evenly-spread-out-slots": "true",
            "heartbeat.interval": str(max(500, self.heartbeat_timeout_ms // 6)),
            "heartbeat.timeout": str(self.heartbeat_timeout_ms),
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": str(self.restart_attempts),
            "restart-strategy.fixed-delay.delay": f"{self.restart_delay_ms} ms",
            "state.checkpoints.dir": self.checkpoints_dir.as_uri(),
            "state.savepoints.dir": self.savepoints_dir.as_uri(),
            "classloader.resolve-order": "parent-first",
            "jobmanager.memory.process.size": "1024m",
        }
        for name, size in memory.items():
            if name in ("network", "jvm-overhead"):
                config[f"taskmanager.memory.{name}.min"] = f"{size // _MB}m"
                config[f"taskmanager.memory.{name}.max"] = f"{size // _MB}m"
            else:
                config[f"taskmanager.memory.{name}.size"] = f"{size // _MB}m"
        config.update(self._extra_config)
        return config

    def _write_config(self) -> None:
        lines = [f"{key}: {value}" for key, value in self._config().items()]
        (self.conf_dir / "flink-conf.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _taskmanager_jvm_flags(self) -> list[str]:
        memory = self._taskmanager_memory()
        heap = memory["framework.heap"] + memory["task.heap"]
        direct = memory["framework.off-heap"] + memory["task.off-heap"] + memory["network"]
        return [
            f"-Xms{heap // _MB}m",
            f"-Xmx{heap // _MB}m",
            f"-XX:MaxDirectMemorySize={direct // _MB}m",
            f"-XX:MaxMetaspaceSize={memory['jvm-metaspace'] // _MB}m",
        ]

    def _spawn(
        self, name: str, main_class: str, jvm_flags: Sequence[str], *, dynamic: Mapping[str, str]
    ) -> _Process:
        assert self._classpath is not None
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        command = [
            self.java,
            *jvm_flags,
            # where Flink's web UI and REST API find the process's log
            f"-Dlog.file={log_path}",
            *self._java_flags,
            "-cp",
            ":".join(self._classpath),
            main_class,
            "--configDir",
            str(self.conf_dir),
            *(f"-D{key}={value}" for key, value in dynamic.items()),
        ]
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,  # keep terminal signals (Ctrl-C) for the caller
            )
        except OSError as exc:
            log.close()
            raise FlinkClusterError(f"could not start the Flink {name}: {exc}") from exc
        return _Process(name, proc, log_path, log, resource_id=dynamic.get(_RESOURCE_ID, ""))

    def _spawn_taskmanager(self, index: int) -> _Process:
        self._generations[index] += 1
        resource_id = f"taskmanager-{index}-{self._generations[index]}"
        tmp = self.workdir / "tmp" / resource_id
        tmp.mkdir(parents=True, exist_ok=True)
        process = self._spawn(
            f"taskmanager-{index}",
            _TASKMANAGER_MAIN,
            self._taskmanager_jvm_flags(),
            dynamic={_RESOURCE_ID: resource_id, "io.tmp.dirs": str(tmp)},
        )
        self._taskmanagers[index] = process
        return process

    def _taskmanager(self, index: int) -> _Process | None:
        if not 0 <= index < len(self._taskmanagers):
            raise IndexError(
                f"TaskManager index {index} is out of range; the cluster has "
                f"{len(self._taskmanagers)} TaskManagers"
            )
        return self._taskmanagers[index]

    def _wait(
        self,
        predicate: Callable[[], bool],
        *,
        what: str,
        watch: Iterable[_Process] = (),
        timeout: float | None = None,
    ) -> None:
        watched = list(watch)
        limit = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.1
        while True:
            for process in watched:
                if not process.alive():
                    raise FlinkClusterError(
                        f"the Flink {process.name} exited with code {process.proc.returncode} "
                        f"while waiting for {what}; log tail ({process.log_path}):\n"
                        f"{process.tail()}"
                    )
            if predicate():
                return
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"--- {process.name} ({process.log_path}):\n{process.tail(20)}"
                    for process in watched
                )
                raise FlinkClusterError(
                    f"timed out after {limit:.0f} s waiting for {what}"
                    + (f"; log tails:\n{tails}" if tails else "")
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # --- TaskManagers -------------------------------------------------------------------------

    def kill_taskmanager(self, index: int) -> int:
        """SIGKILL TaskManager ``index`` (no shutdown, as a crashed machine); returns its PID."""
        process = self._taskmanager(index)
        if process is None or not process.alive():
            raise FlinkClusterError(f"TaskManager {index} is not running")
        process.proc.kill()
        process.proc.wait(timeout=30)
        process.log.close()
        return process.proc.pid

    def restart_taskmanager(self, index: int, *, timeout: float | None = None) -> int:
        """Start TaskManager ``index`` again (after a kill) and wait until it registered.

        The new incarnation registers with a new resource id (``taskmanager-<i>-<n+1>``), as a
        replacement machine would. Returns its PID.

        Raises:
            FlinkClusterError: when it is still running, exits, or does not register in time.
        """
        process = self._taskmanager(index)
        if process is not None and process.alive():
            raise FlinkClusterError(f"TaskManager {index} is still running; kill it first")
        new = self._spawn_taskmanager(index)
        self._wait(
            lambda: new.resource_id in self._registered_resource_ids(),
            what=f"TaskManager {index} ({new.resource_id}) to register",
            watch=[new, *([self._jobmanager] if self._jobmanager else [])],
            timeout=timeout,
        )
        return new.proc.pid

    def taskmanagers(self) -> list[dict[str, Any]]:
        """The TaskManagers registered with the JobManager, as ``GET /taskmanagers`` lists them."""
        body = self.rest("GET", "/taskmanagers")
        return list(body.get("taskmanagers", []))

    def _registered_resource_ids(self) -> set[str]:
        try:
            return {str(tm["id"]) for tm in self.taskmanagers()}
        except FlinkClusterError:
            return set()

    def wait_for_taskmanagers(self, count: int, *, timeout: float = 180.0) -> None:
        """Wait until exactly ``count`` of the live TaskManagers are registered.

        Raises:
            FlinkClusterError: on timeout (with the log tails) or when a JVM exits.
        """
        watched = [p for p in [self._jobmanager, *self._taskmanagers] if p is not None]

        def ready() -> bool:
            live = {p.resource_id for p in self._taskmanagers if p is not None and p.alive()}
            return len(live & self._registered_resource_ids()) == count

        self._wait(
            ready,
            what=f"{count} TaskManagers to register",
            watch=[p for p in watched if p.alive()],
            timeout=timeout,
        )

    def wait_until_lost(self, index: int, *, timeout: float = 120.0) -> None:
        """Wait until the JobManager has noticed that killed TaskManager ``index`` is gone."""
        process = self._taskmanager(index)
        if process is None:
            raise FlinkClusterError(f"TaskManager {index} has not been started")
        self._wait(
            lambda: process.resource_id not in self._registered_resource_ids(),
            what=f"the JobManager to drop TaskManager {index} ({process.resource_id})",
            timeout=timeout,
        )

    # --- REST ---------------------------------------------------------------------------------

    def rest(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> Any:
        """Call Flink's REST API; returns the decoded JSON answer (None when empty).

        Raises:
            FlinkClusterError: for an HTTP error (with Flink's error list) or no connection.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.rest_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise FlinkClusterError(
                f"Flink REST {method} {path} answered HTTP {exc.code}: {detail[:2000]}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise FlinkClusterError(
                f"Flink REST {method} {path} failed: {exc}; is the cluster at "
                f"{self.rest_url} running?"
            ) from exc
        return json.loads(raw) if raw else None

    def _rest_answers(self) -> bool:
        try:
            self.rest("GET", "/overview", timeout=5)
            return True
        except FlinkClusterError:
            return False

    def overview(self) -> dict[str, Any]:
        """``GET /overview``: TaskManagers, slots and job counts."""
        return dict(self.rest("GET", "/overview"))

    def jobs(self) -> list[JobInfo]:
        """Every job the cluster knows, newest first."""
        body = self.rest("GET", "/jobs/overview")
        jobs = sorted(body.get("jobs", []), key=lambda job: -int(job.get("start-time", 0)))
        return [JobInfo(str(j["jid"]), str(j.get("name", "")), str(j["state"])) for j in jobs]

    def job_state(self, job_id: str) -> str:
        """The job's state: ``RUNNING``, ``RESTARTING``, ``FINISHED``, ``CANCELED``, ..."""
        return str(self.rest("GET", f"/jobs/{job_id}")["state"])

    def job_restarts(self, job_id: str) -> int:
        """How often the job was restarted (failed over) so far."""
        metrics = self.rest("GET", f"/jobs/{job_id}/metrics?get=numRestarts") or []
        for metric in metrics:
            if metric.get("id") == "numRestarts":
                return int(metric["value"])
        return 0

    def wait_for_running_job(
        self, *, exclude: Iterable[str] = (), timeout: float = 180.0, all_tasks: bool = True
    ) -> str:
        """Wait until a job that is not in ``exclude`` runs; return its id.

        Args:
            exclude: ids of jobs to ignore (e.g. ones that ran before).
            timeout: seconds to wait.
            all_tasks: also wait until every task of the job is ``RUNNING`` (not only
                scheduled), so that checkpoints can be taken.
        """
        skip = set(exclude)
        found: list[str] = []

        def running() -> bool:
            for job in self.jobs():
                if job.id not in skip and job.state == "RUNNING":
                    if all_tasks and not self._all_tasks_running(job.id):
                        continue
                    found.append(job.id)
                    return True
            return False

        self._wait(running, what="a new job to be RUNNING", timeout=timeout)
        return found[0]

    def _all_tasks_running(self, job_id: str) -> bool:
        body = self.rest("GET", f"/jobs/{job_id}")
        vertices = body.get("vertices", [])
        return bool(vertices) and all(v.get("status") == "RUNNING" for v in vertices)

    def wait_for_job_state(
        self, job_id: str, states: Iterable[str], *, timeout: float = 180.0
    ) -> str:
        """Wait until the job is in one of ``states``; return that state."""
        wanted = set(states)
        seen: list[str] = []

        def reached() -> bool:
            state = self.job_state(job_id)
            seen.append(state)
            return state in wanted

        self._wait(reached, what=f"job {job_id} to be one of {sorted(wanted)}", timeout=timeout)
        return seen[-1]

    def job_taskmanagers(self, job_id: str) -> dict[str, int]:
        """Running subtasks of the job per TaskManager resource id (who really runs it)."""
        body = self.rest("GET", f"/jobs/{job_id}")
        counts: dict[str, int] = {}
        for vertex in body.get("vertices", []):
            detail = self.rest("GET", f"/jobs/{job_id}/vertices/{vertex['id']}")
            for subtask in detail.get("subtasks", []):
                if subtask.get("status") == "RUNNING":
                    resource_id = str(subtask.get("taskmanager-id", subtask.get("host", "?")))
                    counts[resource_id] = counts.get(resource_id, 0) + 1
        return counts

    def _vertex_names(self, job_id: str) -> dict[str, str]:
        body = self.rest("GET", f"/jobs/{job_id}")
        names: dict[str, str] = {}
        taken: set[str] = set()
        for vertex in body.get("vertices", []):
            name = str(vertex.get("name", vertex["id"]))
            if name in taken:
                name = f"{name} [{vertex['id']}]"
            taken.add(name)
            names[str(vertex["id"])] = name
        return names

    def latest_checkpoint(self, job_id: str) -> CheckpointInfo | None:
        """The job's latest completed checkpoint with per-operator sizes; None before the first.

        Savepoints count as checkpoints here only when no later checkpoint completed.
        """
        body = self.rest("GET", f"/jobs/{job_id}/checkpoints")
        latest = (body.get("latest") or {}).get("completed")
        if not latest:
            return None
        return self.checkpoint(job_id, int(latest["id"]))

    def checkpoint(self, job_id: str, checkpoint_id: int) -> CheckpointInfo:
        """One checkpoint's sizes (``GET /jobs/<id>/checkpoints/details/<checkpoint id>``)."""
        detail = self.rest("GET", f"/jobs/{job_id}/checkpoints/details/{checkpoint_id}")
        names = self._vertex_names(job_id)
        sizes = {
            names.get(vertex_id, vertex_id): int(task.get("state_size", 0))
            for vertex_id, task in (detail.get("tasks") or {}).items()
        }
        return CheckpointInfo(
            id=int(detail["id"]),
            state_size=int(detail.get("state_size", 0)),
            checkpointed_size=int(detail.get("checkpointed_size", detail.get("state_size", 0))),
            external_path=str(detail.get("external_path", "")),
            is_savepoint=bool(detail.get("is_savepoint", False)),
            trigger_timestamp_ms=int(detail.get("trigger_timestamp", 0)),
            operator_sizes=sizes,
        )

    def restored_checkpoint_id(self, job_id: str) -> int | None:
        """The id of the checkpoint (or savepoint) the job last restored from; None if none."""
        body = self.rest("GET", f"/jobs/{job_id}/checkpoints")
        restored = (body.get("latest") or {}).get("restored")
        return int(restored["id"]) if restored else None

    def wait_for_checkpoint(
        self, job_id: str, *, after: int = 0, timeout: float = 180.0
    ) -> CheckpointInfo:
        """Wait for a completed checkpoint with an id greater than ``after``; return it."""
        found: list[CheckpointInfo] = []

        def completed() -> bool:
            checkpoint = self.latest_checkpoint(job_id)
            if checkpoint is not None and checkpoint.id > after:
                found.append(checkpoint)
                return True
            return False

        self._wait(completed, what=f"a checkpoint of job {job_id} after {after}", timeout=timeout)
        return found[-1]

    def stop_with_savepoint(
        self,
        job_id: str,
        target_dir: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 180.0,
    ) -> str:
        """Stop the job with a savepoint (``POST /jobs/<id>/stop``); return the savepoint's path.

        The sources stop without draining (no end-of-time watermark), so a job started from the
        savepoint continues where this one stopped. Waits until the savepoint completed and the
        job is ``FINISHED``.

        Args:
            job_id: the job.
            target_dir: where to write the savepoint; default :attr:`savepoints_dir`.
            timeout: seconds to wait for the savepoint and for the job to finish.

        Raises:
            FlinkClusterError: when Flink reports the savepoint failed, or on timeout.
        """
        target = pathlib.Path(target_dir) if target_dir is not None else self.savepoints_dir
        trigger = self.rest(
            "POST", f"/jobs/{job_id}/stop", {"targetDirectory": str(target), "drain": False}
        )
        request_id = trigger["request-id"]
        outcome: list[dict[str, Any]] = []

        def done() -> bool:
            status = self.rest("GET", f"/jobs/{job_id}/savepoints/{request_id}")
            if status["status"]["id"] == "COMPLETED":
                outcome.append(status.get("operation") or {})
                return True
            return False

        self._wait(done, what=f"the savepoint of job {job_id}", timeout=timeout)
        operation = outcome[0]
        if "location" not in operation:
            cause = operation.get("failure-cause") or operation
            raise FlinkClusterError(
                f"stop-with-savepoint of job {job_id} failed: {json.dumps(cause)[:4000]}"
            )
        self.wait_for_job_state(job_id, TERMINAL_JOB_STATES, timeout=timeout)
        return str(operation["location"])

    def cancel(self, job_id: str, *, timeout: float = 120.0) -> None:
        """Cancel the job and wait until it is in a terminal state."""
        if self.job_state(job_id) not in TERMINAL_JOB_STATES:
            self.rest("PATCH", f"/jobs/{job_id}?mode=cancel")
        self.wait_for_job_state(job_id, TERMINAL_JOB_STATES, timeout=timeout)

    def cancel_all(self, *, timeout: float = 120.0) -> None:
        """Cancel every job that is not finished yet."""
        for job in self.jobs():
            if job.state not in TERMINAL_JOB_STATES:
                self.cancel(job.id, timeout=timeout)


_RESOURCE_ID = "taskmanager.resource-id"


# --- the SDK worker pool ----------------------------------------------------------------------

_WORKER_MARKER = "streamhouse-sdk-worker"

# Each worker is its own interpreter running Beam's SDK harness against the TaskManager's
# control endpoint. The marker and the worker id in argv identify it in /proc.
# When the harness's control stream ends (the job was cancelled, or its TaskManager died) the
# process exits at once: Beam's harness leaves non-daemon threads behind that would otherwise
# keep an orphaned worker alive for good.
_WORKER_PROGRAM = (
    "import logging, os, sys\n"
    "logging.basicConfig(level=logging.WARNING, format='%(asctime)s sdk-worker %(process)d "
    "%(levelname)s %(name)s: %(message)s')\n"
    "from apache_beam.runners.worker.sdk_worker import SdkHarness\n"
    "code = 0\n"
    "try:\n"
    "    SdkHarness(sys.argv[1], worker_id=sys.argv[2]).run()\n"
    "except BaseException:\n"
    "    logging.exception('the SDK harness of worker %s ended', sys.argv[2])\n"
    "    code = 1\n"
    "logging.shutdown()\n"
    "os._exit(code)\n"
)


@dataclasses.dataclass(frozen=True)
class SdkWorker:
    """One SDK worker process the pool started.

    Attributes:
        pid: its process id.
        worker_id: the id the runner gave it; Flink TaskManagers each number their own
            workers, so two TaskManagers' workers can share an id (use the pid).
    """

    pid: int
    worker_id: str


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from Linux's ``/proc``."""
    children: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # it exited meanwhile
        # the command name (2nd field) is in parentheses and may hold spaces
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            children.append(int(entry))
    return children


def _cmdline(pid: int) -> list[str]:
    try:
        raw = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


class SdkWorkerPool(_GrpcChildServer):
    """Beam's external worker pool service on 127.0.0.1, one Python process per SDK worker.

    Pipelines use it with ``--environment_type=EXTERNAL --environment_config=127.0.0.1:PORT``
    (:meth:`environment_args`): each TaskManager asks the pool to start a worker for a job, and
    the pool starts ``python -c <SdkHarness(...).run()>`` connected to that TaskManager.

    Args:
        python: the interpreter for the pool and its workers (default: this one). Workers must
            import the pipeline's code: the package must be installed in it.
        env: extra environment variables for the pool and its workers (e.g. ``PYTHONPATH``
            for modules of test code the pipeline pickles by reference).
        startup_timeout: seconds to wait for the pool's port to accept connections.
    """

    label = "sdk-worker-pool"

    def __init__(
        self,
        *,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be > 0, got {startup_timeout!r}")
        super().__init__(startup_timeout=startup_timeout)
        self.python = python or sys.executable
        self._env = dict(env or {})

    @property
    def pid(self) -> int:
        """The pool process's id."""
        if self._proc is None:
            raise FlinkClusterError("the SDK worker pool is not started; call start() first")
        return self._proc.pid

    def environment_args(self) -> list[str]:
        """``--environment_type=EXTERNAL --environment_config=127.0.0.1:PORT``."""
        return ["--environment_type=EXTERNAL", f"--environment_config={self.endpoint}"]

    def workers(self) -> list[SdkWorker]:
        """The SDK worker processes alive now (children of the pool), oldest first."""
        if not self.running:
            return []
        found = []
        for child in sorted(_children(self.pid)):
            argv = _cmdline(child)
            if _WORKER_MARKER in argv:
                found.append(SdkWorker(pid=child, worker_id=argv[-1]))
        return found

    def kill_worker(self, worker: SdkWorker | int) -> None:
        """SIGKILL one SDK worker process (as the OOM killer would)."""
        pid = worker.pid if isinstance(worker, SdkWorker) else worker
        if pid not in {w.pid for w in self.workers()}:
            raise FlinkClusterError(f"process {pid} is not an SDK worker of this pool")
        os.kill(pid, signal.SIGKILL)

    def wait_for_workers(self, count: int, *, timeout: float = 180.0) -> list[SdkWorker]:
        """Wait until at least ``count`` SDK workers run; return them."""
        deadline = time.monotonic() + timeout
        while True:
            workers = self.workers()
            if len(workers) >= count:
                return workers
            if not self.running:
                raise FlinkClusterError(f"the SDK worker pool exited; log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise FlinkClusterError(
                    f"timed out after {timeout:.0f} s waiting for {count} SDK workers "
                    f"(have {len(workers)}); pool log tail:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def _command(self, port: int) -> Sequence[str]:
        return [
            self.python,
            "-m",
            "streamhouse_beam.testing.flink_cluster",
            "worker-pool",
            f"--port={port}",
            f"--python={self.python}",
        ]

    def _child_env(self) -> dict[str, str]:
        return {**super()._child_env(), **self._env}

    def start(self) -> SdkWorkerPool:
        """Start the pool and wait until its port accepts connections.

        Raises:
            streamhouse_beam.testing.servers.ServerStartError: when it exits or does not listen in time (with its log tail).
        """
        super().start()
        return self

    def stop(self) -> None:
        """Stop the pool; it stops its workers first (SIGTERM, SIGKILL after 10 s)."""
        leftovers = [w.pid for w in self.workers()]
        super().stop()
        # The pool stops its workers on SIGTERM; kill any it could not, by PID.
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> SdkWorkerPool:
        return self.start()


def flink_cluster_pipeline_args(
    cluster: FlinkSessionCluster,
    worker_pool: SdkWorkerPool,
    *,
    checkpointing_interval_ms: int = 1000,
    parallelism: int = 4,
    savepoint_path: str | None = None,
    allow_non_restored_state: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """Pipeline options for a streaming job on ``cluster`` with SDK workers from ``worker_pool``.

    ``FlinkRunner`` starts Beam's job server from the cached jar; the job server submits the
    job to the cluster's REST endpoint. Checkpoints go to the cluster's checkpoint directory
    with the filesystem state backend, bundles finish before each checkpoint (so bundle
    finalization, and with it offset commits, follows completed checkpoints).

    Args:
        cluster: a started :class:`FlinkSessionCluster`.
        worker_pool: a started :class:`SdkWorkerPool`.
        checkpointing_interval_ms: how often Flink checkpoints.
        parallelism: the job's parallelism.
        savepoint_path: start from this savepoint (``--savepoint_path``).
        allow_non_restored_state: let a savepoint hold state of operators the new job lacks.
        extra: more options appended as they are.

    Raises:
        ValueError: when a number is not positive.
        RunnerNotInstalledError: when the job server has not been fetched.
    """
    if checkpointing_interval_ms < 1:
        raise ValueError(
            f"checkpointing_interval_ms must be >= 1, got {checkpointing_interval_ms!r}"
        )
    if parallelism < 1:
        raise ValueError(f"parallelism must be >= 1, got {parallelism!r}")
    from streamhouse_beam.testing.runners import flink_job_server

    server = flink_job_server()
    args = [
        "--runner=FlinkRunner",
        f"--flink_master={cluster.flink_master}",
        f"--flink_job_server_jar={server.jar}",
    ]
    if server.flink_version:
        args.append(f"--flink_version={server.flink_version}")
    args += [
        "--streaming",
        f"--parallelism={parallelism}",
        f"--checkpointing_interval={checkpointing_interval_ms}",
        # See runners.flink_pipeline_args: without it a self-checkpointing SDF emits nothing.
        "--finish_bundle_before_checkpointing",
        "--state_backend=filesystem",
        f"--state_backend_storage_path={cluster.checkpoints_dir.as_uri()}",
        *worker_pool.environment_args(),
    ]
    if savepoint_path is not None:
        args.append(f"--savepoint_path={savepoint_path}")
    if allow_non_restored_state:
        args.append("--allow_non_restored_state")
    return args + list(extra)


# --- the worker pool program ------------------------------------------------------------------


def _serve_worker_pool(port: int, python: str) -> None:
    """Serve ``BeamFnExternalWorkerPool`` on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    import logging
    from concurrent import futures

    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s sdk-worker-pool %(levelname)s: %(message)s"
    )
    log = logging.getLogger("sdk-worker-pool")
    workers: dict[str, subprocess.Popen[bytes]] = {}
    lock = threading.Lock()

    def stop_worker(worker_id: str) -> None:
        with lock:
            proc = workers.pop(worker_id, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    class Pool(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
        def StartWorker(self, request: Any, context: Any) -> Any:
            command = [
                python,
                "-c",
                _WORKER_PROGRAM,
                request.control_endpoint.url,
                request.worker_id,
                _WORKER_MARKER,
                request.worker_id,
            ]
            try:
                proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
            except OSError as exc:
                return beam_fn_api_pb2.StartWorkerResponse(error=f"could not start: {exc}")
            with lock:
                workers[request.worker_id] = proc
            log.info("started SDK worker %s as pid %d", request.worker_id, proc.pid)
            return beam_fn_api_pb2.StartWorkerResponse()

        def StopWorker(self, request: Any, context: Any) -> Any:
            log.info("stopping SDK worker %s", request.worker_id)
            stop_worker(request.worker_id)
            return beam_fn_api_pb2.StopWorkerResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    add_servicer = beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server
    add_servicer(Pool(), server)  # type: ignore[no-untyped-call]
    if server.add_insecure_port(f"{_LOOPBACK}:{port}") == 0:
        raise SystemExit(f"sdk-worker-pool: could not bind {_LOOPBACK}:{port}")
    server.start()
    log.info("serving on %s:%d", _LOOPBACK, port)

    stopping = threading.Event()

    def reap() -> None:
        # A killed worker stays a zombie (and in /proc) until its parent waits for it.
        while not stopping.wait(0.5):
            with lock:
                exited = [(i, p) for i, p in workers.items() if p.poll() is not None]
                for worker_id, _ in exited:
                    del workers[worker_id]
            for worker_id, proc in exited:
                log.warning("SDK worker %s exited with code %s", worker_id, proc.returncode)

    threading.Thread(target=reap, name="reaper", daemon=True).start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    # Reap workers that exited (or were killed) as well as stop the live ones.
    with lock:
        ids = list(workers)
    for worker_id in ids:
        stop_worker(worker_id)
    server.stop(grace=1)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m streamhouse_beam.testing.flink_cluster worker-pool --port=PORT``."""
    parser = argparse.ArgumentParser(prog="python -m streamhouse_beam.testing.flink_cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    pool = commands.add_parser("worker-pool", help="serve Beam's external worker pool API")
    pool.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    pool.add_argument("--python", default=sys.executable, help="interpreter for SDK workers")
    args = parser.parse_args(argv)
    if args.command == "worker-pool":
        _serve_worker_pool(args.port, args.python)


if __name__ == "__main__":
    main()
