"""The test-server launchers: readiness, clear start errors with the log tail, clean stop."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

import pytest

from streamhouse_beam.testing.fault_proxy import FaultProxy
from streamhouse_beam.testing.servers import (
    ServerStartError,
    _ChildServer,
    free_port,
)


class _Crashing(_ChildServer):
    label = "crashing-server"

    def _command(self, port: int) -> Sequence[str]:
        return [sys.executable, "-c", "import sys; print('boom: bad flag'); sys.exit(3)"]


class _Silent(_ChildServer):
    label = "silent-server"

    def _command(self, port: int) -> Sequence[str]:
        return [sys.executable, "-c", "import time; print('listening never'); time.sleep(60)"]


def test_server_that_exits_reports_its_exit_code_and_log_tail() -> None:
    with pytest.raises(ServerStartError) as info:
        _Crashing(startup_timeout=10).start()
    assert "exited with code 3" in str(info.value)
    assert "boom: bad flag" in str(info.value)


def test_server_that_never_answers_times_out_with_log_tail() -> None:
    server = _Silent(startup_timeout=0.5)
    with pytest.raises(ServerStartError) as info:
        server.start()
    assert "did not answer" in str(info.value)
    assert "listening never" in str(info.value)
    assert not server.running


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_fault_proxy_answers_502_when_the_upstream_is_gone() -> None:
    with FaultProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(proxy.endpoint_url + "/x", timeout=5)
        assert info.value.code == 502
        assert proxy.upstream_errors


def test_fault_proxy_rejects_unknown_faults() -> None:
    proxy = FaultProxy("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="unknown fault"):
        proxy.inject("explode")
