"""An HTTP proxy that sits in front of an object-store endpoint and breaks some requests.

It is made for moto_server (S3) and works the same in front of the GCS emulator.

The proxy forwards each request to the upstream server, then — for a seeded, deterministic
share of the requests whose method it is told to disturb — replaces the answer with one of
the faults a real object store or network produces:

=============  ================================================================================
``"500"``      an S3-style ``InternalError`` answer with status 500
``"503"``      an S3-style ``SlowDown`` answer with status 503 (throttling)
``"reset"``    the connection is closed with a TCP reset and no answer at all
``"truncate"`` the upstream status and headers with the real ``Content-Length``, then only part
               of the body before the connection is closed (answers without a body get a 500)
``"slow"``     nothing is sent for ``slow_seconds`` (set it above the client's read timeout),
               then the connection is closed
``"429"``      ``TooManyRequests`` with status 429 (only when queued or listed in ``faults``)
``"403"``      ``AccessDenied`` with status 403 — a permanent error, for tests of the
               not-retried path (only when queued or listed in ``faults``)
``"flip"``     the upstream answer with one byte of its body flipped — silent corruption that
               only a checksum can catch (only when queued or listed in ``faults``)
``"short"``    the upstream answer with its body cut in half **and** ``Content-Length`` made to
               match — a silent truncation the HTTP layer cannot see (queued or listed only)
=============  ================================================================================

Besides the random share, :meth:`FaultProxy.inject` queues faults for the very next requests
(of any method), one per request, in order — for tests that need one exact fault.

Fault decisions come from ``random.Random(seed)`` drawn once per request in arrival order, so
a single-threaded client sees the same faults run after run; :meth:`FaultProxy.stats` counts
what was injected so tests can check that faults really happened. Everything runs on
threads of one :class:`http.server.ThreadingHTTPServer` bound to 127.0.0.1 on a free port,
with a bounded number of concurrent connections and bounded sleeps (``stop()`` cuts slow
answers short). Use it as a context manager::

    with FaultProxy(moto.endpoint_url, failure_rate=0.3, seed=7) as proxy:
        store = open_store("s3://bucket", {"endpoint_url": proxy.url, ...})
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import http.server
import random
import socket
import struct
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any

__all__ = ["ALL_FAULTS", "BODY_FAULTS", "FAULTS", "FaultProxy"]

#: The fault kinds drawn at random by default.
FAULTS = ("500", "503", "reset", "truncate", "slow")
#: Faults that damage an answer's body but deliver it as a success.
BODY_FAULTS = ("flip", "short")
#: Every fault kind the proxy can inject (random or queued).
ALL_FAULTS = (*FAULTS, "429", "403", *BODY_FAULTS)

# Headers that describe one hop, not the message: never forwarded as is.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)

_ERROR_BODIES = {
    "500": (
        500,
        "Internal Server Error",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
        b"<Message>We encountered an internal error. Please try again.</Message></Error>",
    ),
    "503": (
        503,
        "Slow Down",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>",
    ),
    "429": (
        429,
        "Too Many Requests",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>TooManyRequests</Code>'
        b"<Message>Too many requests.</Message></Error>",
    ),
    "403": (
        403,
        "Forbidden",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        b"<Message>Access Denied</Message></Error>",
    ),
}

# A request body larger than this is refused: the proxy holds bodies in memory.
_MAX_BODY = 256 * 1024 * 1024


class FaultProxy:
    """A fault-injecting HTTP proxy for an S3-compatible endpoint.

    Args:
        upstream: base URL of the real server, e.g. ``"http://127.0.0.1:5000"``.
        failure_rate: share of eligible requests that get a fault, in ``[0, 1]``.
        faults: the fault kinds to choose from (uniformly), a subset of :data:`ALL_FAULTS`
            (default :data:`FAULTS`: the transient ones).
        seed: seed of the decision sequence.
        methods: HTTP methods eligible for faults; others always pass (so a test can upload
            through the proxy and only disturb reads).
        slow_seconds: how long a ``"slow"`` answer stalls before closing the connection.
        max_connections: connections served at once; further ones wait for a free slot.
        upstream_timeout: socket timeout for the upstream connection, in seconds.

    Raises:
        ValueError: an argument is out of range or names an unknown fault.
    """

    def __init__(
        self,
        upstream: str,
        *,
        failure_rate: float = 0.3,
        faults: Iterable[str] = FAULTS,
        seed: int = 0,
        methods: Iterable[str] = ("GET", "HEAD"),
        slow_seconds: float = 2.0,
        max_connections: int = 32,
        upstream_timeout: float = 30.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be in [0, 1], got {failure_rate!r}")
        fault_list = tuple(faults)
        unknown = sorted(set(fault_list) - set(ALL_FAULTS))
        if unknown or not fault_list:
            raise ValueError(
                f"faults must be a non-empty subset of {ALL_FAULTS}, got {fault_list!r}"
            )
        if slow_seconds < 0:
            raise ValueError(f"slow_seconds must be >= 0, got {slow_seconds!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        self.upstream_host: str = parsed.hostname
        self.upstream_port: int = parsed.port
        self.failure_rate = float(failure_rate)
        self.faults = fault_list
        self.methods = frozenset(m.upper() for m in methods)
        self.slow_seconds = float(slow_seconds)
        self.upstream_timeout = float(upstream_timeout)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._injected: collections.Counter[str] = collections.Counter()
        self._queued: collections.deque[str] = collections.deque()
        self._requests = 0
        self._forwarded = 0
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._enabled = True

    # ----------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """Same as :attr:`url` (the name S3 settings use)."""
        return self.url

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running proxy."""
        if self._server is None:
            raise RuntimeError("the proxy is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        """Bind a free port on 127.0.0.1 and serve on a daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="fault-proxy",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut stalled answers short and close the listening socket."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------
    # Control and counters
    # ----------------------------------------------------------------------------------------

    def set_enabled(self, enabled: bool) -> None:
        """Turn fault injection on or off (requests are forwarded either way)."""
        with self._lock:
            self._enabled = bool(enabled)

    def inject(self, *faults: str) -> None:
        """Queue ``faults`` for the next requests (any method), one per request, in order."""
        for fault in faults:
            if fault not in ALL_FAULTS:
                raise ValueError(f"unknown fault {fault!r}; use one of {ALL_FAULTS}")
        with self._lock:
            self._queued.extend(faults)

    def pending(self) -> int:
        """Queued faults not yet served."""
        with self._lock:
            return len(self._queued)

    def clear(self) -> None:
        """Drop queued faults."""
        with self._lock:
            self._queued.clear()

    def stats(self) -> dict[str, int]:
        """Counts so far: ``requests``, ``forwarded``, ``injected`` and one entry per fault kind."""
        with self._lock:
            out = {"requests": self._requests, "forwarded": self._forwarded}
            out["injected"] = sum(self._injected.values())
            for fault in ALL_FAULTS:
                out[fault] = self._injected[fault]
            return out

    @property
    def injected(self) -> int:
        """How many faults were injected so far."""
        with self._lock:
            return sum(self._injected.values())

    @property
    def requests_seen(self) -> int:
        """Requests received so far, faulted or not."""
        with self._lock:
            return self._requests

    @property
    def faults_served(self) -> int:
        """Same as :attr:`injected`."""
        return self.injected

    def _decide(self, method: str) -> str | None:
        with self._lock:
            self._requests += 1
            if self._queued:
                return self._queued.popleft()
            if not self._enabled or method.upper() not in self.methods:
                return None
            # Two draws per eligible request whatever the outcome, so the sequence of
            # decisions depends only on the seed and the number of eligible requests.
            roll = self._rng.random()
            pick = self._rng.choice(self.faults)
            return pick if roll < self.failure_rate else None

    def _count(self, fault: str) -> None:
        with self._lock:
            self._injected[fault] += 1

    def _count_forwarded(self) -> None:
        with self._lock:
            self._forwarded += 1


def _make_handler(proxy: FaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class _Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            # Silence the per-request stderr log; tests read stats() instead.
            pass

        def handle(self) -> None:
            with proxy._slots:
                super().handle()

        def do_GET(self) -> None:
            self._proxy()

        do_HEAD = do_GET
        do_PUT = do_GET
        do_POST = do_GET
        do_DELETE = do_GET

        # ------------------------------------------------------------------------------------

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        # Trailers until the empty line.
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    total += size
                    if total > _MAX_BODY:
                        raise ValueError("request body too large for the fault proxy")
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length", "0") or "0")
            if length > _MAX_BODY:
                raise ValueError("request body too large for the fault proxy")
            return self.rfile.read(length) if length else b""

        def _proxy(self) -> None:
            try:
                body = self._read_body()
            except (ValueError, OSError):
                self.close_connection = True
                self.send_error(400, "unreadable request body")
                return
            fault = proxy._decide(self.command)
            if fault is not None and fault not in ("truncate", *BODY_FAULTS):
                # These never reach the upstream: the request is lost on the way.
                self._inject(fault, None, None, b"")
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(
                proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout
            )
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                status, reason = resp.status, resp.reason
                resp_headers = [
                    (k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP
                ]
                declared = resp.getheader("Content-Length")
            except OSError:
                self.close_connection = True
                self.send_error(502, "upstream unreachable")
                return
            finally:
                conn.close()
            if fault == "truncate":
                self._inject(fault, (status, reason, resp_headers), declared, payload)
                return
            if fault in BODY_FAULTS and self.command != "HEAD" and len(payload) >= 2:
                proxy._count(fault)
                if fault == "flip":
                    middle = len(payload) // 2
                    payload = (
                        payload[:middle] + bytes([payload[middle] ^ 0x01]) + payload[middle + 1 :]
                    )
                else:
                    payload = payload[: len(payload) // 2]
                    # The cut must look complete: drop any range header that would betray it.
                    resp_headers = [(k, v) for k, v in resp_headers if k.lower() != "content-range"]
            proxy._count_forwarded()
            self.send_response(status, reason)
            for k, v in resp_headers:
                self.send_header(k, v)
            # HEAD answers carry the object's length without a body.
            length = declared if self.command == "HEAD" and declared else str(len(payload))
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD" and payload:
                self.wfile.write(payload)

        def _inject(
            self,
            fault: str,
            upstream: tuple[int, str, list[tuple[str, str]]] | None,
            declared: str | None,
            payload: bytes,
        ) -> None:
            self.close_connection = True
            if fault == "truncate" and (self.command == "HEAD" or len(payload) < 2):
                # Nothing to cut: fall back to a plain server error.
                fault = "500"
            proxy._count(fault)
            if fault in _ERROR_BODIES:
                status, reason, text = _ERROR_BODIES[fault]
                self.send_response(status, reason)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(text)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(text)
                return
            if fault == "slow":
                proxy._stopping.wait(proxy.slow_seconds)
                self._reset()
                return
            if fault == "reset":
                self._reset()
                return
            # truncate: promise the whole body, deliver part of it, hang up.
            assert upstream is not None
            status, reason, headers = upstream
            self.send_response(status, reason)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", declared or str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self._reset()

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            with contextlib.suppress(OSError):
                self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )

    return _Handler
