"""Long-lived job services for the runner benchmarks: a Flink job server and a Prism.

Each benchmark starts one service, times its start-up once (spawn until the job port accepts
connections), and then submits every measured pipeline to it with ``PortableRunner``
(``--job_endpoint``), so no measured run pays for a JVM or a Go binary starting. The SDK
harness is either this process (``LOOPBACK``) or the Python worker processes of an
:class:`~streamhouse_beam.testing.flink_cluster.SdkWorkerPool` (``EXTERNAL``).

* :class:`FlinkJobServerService`: ``java -jar <job-server.jar> --flink-master=...`` from the
  cache ``.ci/fetch-runners`` fills. With ``[local]`` every job runs on an embedded Flink
  mini-cluster that the job server starts for that job (a fixed per-job cost the benchmarks
  measure with an empty pipeline); with a session cluster's ``host:port`` the jobs go there.
* :class:`PrismService`: the cached Prism binary serving its job API.
"""

from __future__ import annotations

import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from streamhouse_beam.testing import runners
from streamhouse_beam.testing.servers import _GrpcChildServer


class _TimedService(_GrpcChildServer):
    """A gRPC child server that remembers how long its start took."""

    startup_seconds: float = 0.0

    def start(self) -> _TimedService:
        began = time.perf_counter()
        super().start()
        self.startup_seconds = time.perf_counter() - began
        return self

    def __enter__(self) -> _TimedService:
        return self.start()


class FlinkJobServerService(_TimedService):
    """Beam's Flink job server (the cached, patched jar) as a long-lived child process.

    Args:
        flink_master: ``[local]`` (an embedded mini-cluster per job) or a session cluster's
            ``host:port``.
        startup_timeout: seconds to wait for the job port.
        jar: another job server launcher to run instead of the cached one (a build with other
            runner patches, to compare with in the same run).
    """

    label = "flink-job-server"

    def __init__(
        self,
        flink_master: str = "[local]",
        *,
        startup_timeout: float = 180.0,
        jar: str | None = None,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self.flink_master = flink_master
        self.jar = jar or str(runners.flink_job_server().jar)

    def _command(self, port: int) -> Sequence[str]:
        return [
            "java",
            runners.FLINK_JAVA17_OPENS,
            "-jar",
            self.jar,
            f"--flink-master={self.flink_master}",
            f"--job-port={port}",
            "--artifact-port=0",
            "--expansion-port=0",
        ]

    @property
    def pid(self) -> int:
        """The job server JVM's process id (with ``[local]`` it runs the jobs' Flink too)."""
        if self._proc is None:
            raise RuntimeError("the Flink job server is not running")
        return self._proc.pid

    def pipeline_args(self, parallelism: int, *, streaming: bool = False) -> list[str]:
        """``PortableRunner`` options for a job on this job server (no environment options)."""
        args = [
            "--runner=PortableRunner",
            f"--job_endpoint={self.endpoint}",
            f"--parallelism={parallelism}",
        ]
        if streaming:
            args.append("--streaming")
        return args


class PrismService(_TimedService):
    """The cached Prism binary as a long-lived job service (web UI off).

    Args:
        startup_timeout: seconds to wait for the job port.
    """

    label = "prism"

    def _command(self, port: int) -> Sequence[str]:
        return [runners.prism_binary(), f"-job_port={port}", "-serve_http=false"]

    def pipeline_args(self, parallelism: int = 1, *, streaming: bool = False) -> list[str]:
        """``PortableRunner`` options for a job on this Prism (parallelism is Prism's own)."""
        del parallelism
        args = ["--runner=PortableRunner", f"--job_endpoint={self.endpoint}"]
        if streaming:
            args.append("--streaming")
        return args


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    # So `kill PID` leaves through the with-blocks that stop the job services.
    raise SystemExit(128 + signum)


def run_main(main: Callable[[], int]) -> None:
    """Run a benchmark's ``main()`` as a script: SIGTERM stops its services, errors exit 1."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)
