"""Local S3 and GCS servers for tests and demos: moto_server and gcp-storage-emulator.

Both launchers start the server as a child process bound to 127.0.0.1 on a free port, wait
until it answers HTTP, and stop it again (``stop()`` or leaving the ``with`` block). If the
server does not come up in time, the error includes the tail of its log::

    with MotoServer() as s3, GcsEmulator() as gcs:
        store = open_store("s3://bucket", s3.credentials())
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import IO, Any

__all__ = ["GcsEmulator", "MotoServer", "ServerStartError", "free_port"]

_LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """A test server did not start or did not become healthy in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _venv_tool(name: str) -> str | None:
    """The console script ``name`` next to this interpreter, else on PATH."""
    candidate = pathlib.Path(sys.executable).with_name(name)
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


class _ChildServer:
    """A server process with a log file, a readiness probe and a clean stop."""

    #: what the error messages call it
    label = "server"

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.host = _LOOPBACK
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_path: pathlib.Path | None = None

    # subclasses provide these
    def _command(self, port: int) -> Sequence[str]:
        raise NotImplementedError

    def _health_path(self) -> str:
        return "/"

    def _child_env(self) -> dict[str, str]:
        # Unbuffered, so the log tail in a start error shows what the server last said.
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the server wrote (stdout and stderr)."""
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = self._log_path.read_bytes().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def start(self) -> _ChildServer:
        """Start the server and wait until it answers; idempotent while running."""
        if self.running:
            return self
        # A port can be taken between free_port() and the bind: try a few.
        last_error: ServerStartError | None = None
        for _ in range(3):
            self.port = free_port()
            try:
                self._spawn()
                self._wait_ready()
                return self
            except ServerStartError as err:
                last_error = err
                exited = not self.running
                self.stop()
                if not exited:
                    break  # alive but silent: another port will not help
        assert last_error is not None
        raise last_error

    def _spawn(self) -> None:
        fd, name = tempfile.mkstemp(prefix=f"streamhouse-{self.label}-", suffix=".log")
        os.close(fd)
        self._log_path = pathlib.Path(name)
        self._log = open(self._log_path, "wb")  # noqa: SIM115 - lives as long as the child
        try:
            self._proc = subprocess.Popen(
                list(self._command(self.port)),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._child_env(),
                start_new_session=True,  # keep terminal signals (Ctrl-C) for the test runner
            )
        except OSError as exc:
            raise ServerStartError(f"could not start {self.label}: {exc}") from exc

    def _probe_target(self) -> str:
        """What readiness is probed at, for messages."""
        return self.base_url + self._health_path()

    def _probe(self) -> bool:
        """True once the server answers; any HTTP answer counts as ready."""
        try:
            with urllib.request.urlopen(self._probe_target(), timeout=2) as response:
                response.read()
            return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        target = self._probe_target()
        delay = 0.05
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ServerStartError(
                    f"{self.label} exited with code {code} before answering on {target}; "
                    f"log tail:\n{self.log_tail()}"
                )
            if self._probe():
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.label} did not answer on {target} within {self.startup_timeout:.0f} s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 10 s) and remove its log."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _GrpcChildServer(_ChildServer):
    """A child server speaking gRPC on ``127.0.0.1:PORT``: ready once the port accepts."""

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, as gRPC clients and Beam's options name it."""
        return f"{self.host}:{self.port}"

    def _probe_target(self) -> str:
        return self.endpoint

    def _probe(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), 1):
                return True
        except OSError:
            return False


class MotoServer(_ChildServer):
    """moto's standalone server (S3 and the other AWS APIs) on 127.0.0.1.

    Attributes:
        region: the region clients should use.
    """

    label = "moto_server"

    #: fake credentials moto accepts (it does not check them unless auth is enforced)
    ACCESS_KEY = "testing-access-key"
    SECRET_KEY = "testing-secret-key"

    def __init__(self, *, region: str = "us-east-1", startup_timeout: float = 60.0) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self.region = region

    def _command(self, port: int) -> Sequence[str]:
        tool = _venv_tool("moto_server")
        if tool:
            return [tool, "-H", _LOOPBACK, "-p", str(port)]
        return [sys.executable, "-m", "moto.server", "-H", _LOOPBACK, "-p", str(port)]

    def _health_path(self) -> str:
        return "/moto-api/"

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, ``http://127.0.0.1:PORT``."""
        return self.base_url

    def credentials(self) -> dict[str, str]:
        """storage_options for an S3 store talking to this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": self.ACCESS_KEY,
            "aws_secret_access_key": self.SECRET_KEY,
            "addressing_style": "path",
        }

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (>= 1.28) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def reset(self) -> None:
        """Forget every bucket and object (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(self.base_url + "/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def set_auth_enforcement(self, initial_free_requests: int | float) -> str:
        """Make moto check credentials and IAM policies after ``initial_free_requests`` requests.

        ``float('inf')`` turns enforcement off again (moto's default). Returns the previous
        setting as moto reports it, to restore later.
        """
        request = urllib.request.Request(
            self.base_url + "/moto-api/reset-auth",
            method="POST",
            data=str(initial_free_requests).encode(),
            # not form-encoded, or werkzeug would swallow the body as form fields
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.loads(response.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])


class GcsEmulator(_ChildServer):
    """gcp-storage-emulator (the GCS JSON API) on 127.0.0.1, storing in memory."""

    label = "gcp-storage-emulator"

    def __init__(self, *, project: str = "test-project", startup_timeout: float = 60.0) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self.project = project

    def _command(self, port: int) -> Sequence[str]:
        tool = _venv_tool("gcp-storage-emulator")
        args = ["start", f"--host={_LOOPBACK}", f"--port={port}", "--in-memory", "--quiet"]
        if tool:
            return [tool, *args]
        return [sys.executable, "-m", "gcp_storage_emulator", *args]

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``, the value for ``STORAGE_EMULATOR_HOST``."""
        return self.base_url

    def env(self) -> dict[str, str]:
        """Environment variables that point google-cloud-storage at this emulator."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "GOOGLE_CLOUD_PROJECT": self.project}

    def wipe(self) -> None:
        """Forget every bucket and object (the emulator's ``/wipe``)."""
        with urllib.request.urlopen(self.base_url + "/wipe", timeout=10) as response:
            response.read()
