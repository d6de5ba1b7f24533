"""An HTTP proxy on 127.0.0.1 that sits in front of an object-store endpoint and breaks requests.

It is made for moto_server (S3) and works the same in front of the GCS emulator. It is the one
fault-injecting proxy of the project: the storage backends' retry tests queue exact faults
with :meth:`FaultProxy.inject`, the reliability tests let it fail a seeded share of requests.

The proxy forwards each request to the upstream server, except that chosen requests get one
of the faults a real object store or network produces instead:

=============  ================================================================================
``"500"``      an S3-style ``InternalError`` answer with status 500
``"503"``      an S3-style ``SlowDown`` answer with status 503 (throttling)
``"reset"``    the connection is closed with a TCP reset and no answer at all
``"truncate"`` the upstream status and headers with the real ``Content-Length``, then only half
               of the body before the connection is reset (see *Answers without a body*)
``"slow"``     nothing is sent for ``slow_seconds`` (set it above the client's read timeout),
               then the connection is reset
``"429"``      ``TooManyRequests`` with status 429 (only when queued or listed in ``faults``)
``"403"``      ``AccessDenied`` with status 403 — a permanent error, for tests of the
               not-retried path (only when queued or listed in ``faults``)
``"flip"``     the upstream answer with one byte of its body flipped — silent corruption that
               only a checksum can catch (only when queued or listed in ``faults``)
``"short"``    the upstream answer with its body cut in half **and** ``Content-Length`` made to
               match — a silent truncation the HTTP layer cannot see (queued or listed only)
=============  ================================================================================

The status faults, ``"reset"`` and ``"slow"`` never reach the upstream (the request is lost
on the way); ``"truncate"``, ``"flip"`` and ``"short"`` are forwarded first, so the upstream
acts on the request (a PUT is stored) and only its answer is damaged.

Which requests get a fault
    *Queued*: :meth:`FaultProxy.inject` queues faults for the very next requests, one per
    request, in order — of any method, or only of the ``methods`` given to ``inject``
    (``proxy.inject("503", methods=["PUT"])`` fails the next upload and lets reads through).
    Queued faults come first and ignore ``failure_rate``.

    *Random*: each request whose method is eligible gets a fault with probability
    ``failure_rate`` (default 0: the proxy is transparent until told otherwise), the kind
    drawn uniformly from ``faults``. ``methods`` (default GET and HEAD, so a test can upload
    through the proxy and only disturb reads) says which methods are eligible;
    ``fault_methods`` narrows or widens that per kind, e.g. ``{"truncate": ["GET"]}``. The
    decisions come from ``random.Random(seed)``, two draws per eligible request in arrival
    order, so a single-threaded client sees the same faults run after run.

Answers without a body
    A HEAD answer has no body, and some answers (a PUT's, a redirect's) have less than two
    bytes of one, so there is nothing to cut or damage. The proxy then does this, on purpose:

    * ``"truncate"`` is served as a ``"500"`` answer instead, and counted and recorded as
      ``"500"``. A truncate means "the transport fails visibly", so the client still sees a
      retryable failure and every counted fault still costs the client one retry. To keep
      truncates off HEAD requests altogether, pass ``fault_methods={"truncate": ["GET"]}`` or
      queue them with ``inject("truncate", methods=["GET"])``.
    * ``"flip"`` and ``"short"`` pass the answer through untouched and are neither counted nor
      recorded: they are silent by design, and replacing them with a visible failure would
      test something else. Aim them at GETs the same way.

What happened
    :meth:`FaultProxy.stats` counts requests, forwarded answers and each fault kind served;
    :attr:`FaultProxy.history` lists ``("METHOD /path?query", fault or None)`` per request in
    arrival order; :attr:`FaultProxy.upstream_errors` lists requests the upstream could not
    answer (the client got a 502).

Everything runs on threads of one :class:`http.server.ThreadingHTTPServer` bound to 127.0.0.1
on a free port, with a bounded number of concurrent connections and bounded sleeps
(``stop()`` cuts slow answers short). Use it as a context manager::

    with FaultProxy(moto.endpoint_url, failure_rate=0.3, seed=7) as proxy:
        store = open_store("s3://bucket", {"endpoint_url": proxy.url, ...})

    with FaultProxy(moto.endpoint_url) as proxy:
        proxy.inject("503", "reset")
        store.get("key")  # two retries, then the real bytes
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
from collections.abc import Iterable, Mapping
from typing import Any

from streamhouse_beam.testing._shared import check_faults

__all__ = ["ALL_FAULTS", "BODY_FAULTS", "FAULTS", "FaultProxy"]

#: The fault kinds drawn at random by default.
FAULTS = ("500", "503", "reset", "truncate", "slow")
#: Faults that damage an answer's body but deliver it as a success.
BODY_FAULTS = ("flip", "short")
#: Every fault kind the proxy can inject (random or queued).
ALL_FAULTS = (*FAULTS, "429", "403", *BODY_FAULTS)

# Faults applied to the upstream's answer; the others replace the request altogether.
_ANSWER_FAULTS = ("truncate", *BODY_FAULTS)

# Headers that describe one hop, not the message, are never forwarded as they are
# (RFC 9110 section 7.6.1); Content-Length is recomputed for the bytes actually sent.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)

_ERROR_ANSWERS = {
    "500": (
        500,
        "Internal Server Error",
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "429": (429, "Too Many Requests", "TooManyRequests", "Too many requests."),
    "403": (403, "Forbidden", "AccessDenied", "Access Denied"),
}

# A request body larger than this is refused: the proxy holds bodies in memory.
_MAX_BODY = 256 * 1024 * 1024


def _method_set(methods: Iterable[str], argument: str) -> frozenset[str]:
    if isinstance(methods, str):
        raise TypeError(f"{argument} must be a collection of HTTP methods, got {methods!r}")
    found = frozenset(str(m).upper() for m in methods)
    if not found:
        raise ValueError(f"{argument} must name at least one HTTP method")
    return found


class FaultProxy:
    """A fault-injecting HTTP proxy for an S3- or GCS-compatible endpoint.

    Args:
        upstream: ``http://host:port`` of the real server, e.g. ``"http://127.0.0.1:5000"``.
        failure_rate: share of eligible requests that get a random fault, in ``[0, 1]``
            (default 0: only queued faults).
        faults: the fault kinds random faults are drawn from (uniformly), a subset of
            :data:`ALL_FAULTS` (default :data:`FAULTS`: the transient, visible ones).
        seed: seed of the random decision sequence.
        methods: HTTP methods eligible for random faults (default GET and HEAD); requests of
            other methods always pass.
        fault_methods: per fault kind, the methods eligible for it, overriding ``methods`` for
            that kind; each key must be one of ``faults``.
        slow_seconds: how long a ``"slow"`` answer stalls before resetting the connection.
        max_connections: connections served at once; further ones wait for a free slot.
        upstream_timeout: socket timeout for the upstream connection, in seconds.

    Raises:
        ValueError: an argument is out of range or names an unknown fault.
        TypeError: a method collection is a bare string.
    """

    def __init__(
        self,
        upstream: str,
        *,
        failure_rate: float = 0.0,
        faults: Iterable[str] = FAULTS,
        seed: int = 0,
        methods: Iterable[str] = ("GET", "HEAD"),
        fault_methods: Mapping[str, Iterable[str]] | None = None,
        slow_seconds: float = 2.0,
        max_connections: int = 32,
        upstream_timeout: float = 30.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        fault_list = check_faults(failure_rate, faults, ALL_FAULTS)
        if slow_seconds < 0:
            raise ValueError(f"slow_seconds must be >= 0, got {slow_seconds!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        default_methods = _method_set(methods, "methods")
        per_kind = dict(fault_methods or {})
        stray = sorted(set(per_kind) - set(fault_list))
        if stray:
            raise ValueError(f"fault_methods names {stray}, which are not in faults {fault_list}")
        self.upstream_host: str = parsed.hostname
        self.upstream_port: int = parsed.port
        self.failure_rate = float(failure_rate)
        self.faults = fault_list
        self.methods = default_methods
        #: the methods eligible for each random fault kind (``methods`` unless overridden)
        self.fault_methods: dict[str, frozenset[str]] = {
            kind: (
                _method_set(per_kind[kind], f"fault_methods[{kind!r}]")
                if kind in per_kind
                else default_methods
            )
            for kind in fault_list
        }
        self.slow_seconds = float(slow_seconds)
        self.upstream_timeout = float(upstream_timeout)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._injected: collections.Counter[str] = collections.Counter()
        self._queued: collections.deque[tuple[str, frozenset[str] | None]] = collections.deque()
        self._history: list[tuple[str, str | None]] = []
        self._upstream_errors: list[str] = []
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
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running proxy."""
        if self._server is None:
            raise RuntimeError("the proxy is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def endpoint_url(self) -> str:
        """Same as :attr:`url` (the name S3 settings use)."""
        return self.url

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

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------
    # Control
    # ----------------------------------------------------------------------------------------

    def set_enabled(self, enabled: bool) -> None:
        """Turn random faults on or off (queued faults and forwarding go on either way)."""
        with self._lock:
            self._enabled = bool(enabled)

    def inject(self, *faults: str, methods: Iterable[str] | None = None) -> None:
        """Queue ``faults`` for the next requests, one per request, in order.

        Args:
            *faults: fault kinds from :data:`ALL_FAULTS`.
            methods: if given, the faults wait for requests of these methods and let others
                pass; by default the next requests of any method get them.

        Raises:
            ValueError: a fault kind is unknown or ``methods`` is empty.
        """
        for fault in faults:
            if fault not in ALL_FAULTS:
                raise ValueError(f"unknown fault {fault!r}; use one of {ALL_FAULTS}")
        only = None if methods is None else _method_set(methods, "methods")
        with self._lock:
            self._queued.extend((fault, only) for fault in faults)

    def pending(self) -> int:
        """Queued faults not yet served."""
        with self._lock:
            return len(self._queued)

    def clear(self) -> None:
        """Drop queued faults."""
        with self._lock:
            self._queued.clear()

    # ----------------------------------------------------------------------------------------
    # What happened
    # ----------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts so far: ``requests``, ``forwarded``, ``injected`` and one entry per fault kind."""
        with self._lock:
            out = {"requests": len(self._history), "forwarded": self._forwarded}
            out["injected"] = sum(self._injected.values())
            for fault in ALL_FAULTS:
                out[fault] = self._injected[fault]
            return out

    @property
    def history(self) -> list[tuple[str, str | None]]:
        """``("METHOD /path?query", fault served or None)`` of every request, in arrival order."""
        with self._lock:
            return list(self._history)

    @property
    def upstream_errors(self) -> list[str]:
        """``"METHOD /path: error"`` of each request the upstream did not answer (sent a 502)."""
        with self._lock:
            return list(self._upstream_errors)

    @property
    def injected(self) -> int:
        """How many faults were served so far."""
        with self._lock:
            return sum(self._injected.values())

    @property
    def faults_served(self) -> int:
        """Same as :attr:`injected`."""
        return self.injected

    @property
    def requests_seen(self) -> int:
        """Requests received so far, faulted or not."""
        with self._lock:
            return len(self._history)

    # ----------------------------------------------------------------------------------------
    # Used by the request handler
    # ----------------------------------------------------------------------------------------

    def _decide(self, method: str, request_line: str) -> tuple[int, str | None]:
        """Record the request; return its history index and the fault planned for it."""
        method = method.upper()
        with self._lock:
            index = len(self._history)
            fault = self._pop_queued(method)
            if fault is None and self._enabled:
                eligible = [k for k in self.faults if method in self.fault_methods[k]]
                if eligible:
                    # Two draws per eligible request whatever the outcome, so the sequence of
                    # decisions depends only on the seed and the eligible requests' order.
                    roll = self._rng.random()
                    pick = self._rng.choice(eligible)
                    fault = pick if roll < self.failure_rate else None
            self._history.append((request_line, fault))
            return index, fault

    def _pop_queued(self, method: str) -> str | None:
        for position, (fault, only) in enumerate(self._queued):
            if only is None or method in only:
                del self._queued[position]
                return fault
        return None

    def _settle(self, index: int, fault: str | None, *, forwarded: bool = False) -> None:
        """Record the fault actually served for request ``index`` (it may differ from the plan)."""
        with self._lock:
            self._history[index] = (self._history[index][0], fault)
            if fault is not None:
                self._injected[fault] += 1
            if forwarded:
                self._forwarded += 1

    def _upstream_failed(self, index: int, error: str) -> None:
        with self._lock:
            line = self._history[index][0]
            self._history[index] = (line, None)
            self._upstream_errors.append(f"{line}: {error}")


def _make_handler(proxy: FaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class _Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            # Silence the per-request stderr log; tests read stats() and history instead.
            pass

        def handle(self) -> None:
            with proxy._slots:
                super().handle()

        def do_GET(self) -> None:
            self._proxy()

        do_HEAD = do_GET
        do_PUT = do_GET
        do_POST = do_GET
        do_PATCH = do_GET
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
            index, fault = proxy._decide(self.command, f"{self.command} {self.path}")
            if fault is not None and fault not in _ANSWER_FAULTS:
                # These never reach the upstream: the request is lost on the way.
                proxy._settle(index, fault)
                self._fail(fault)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST", "PATCH"):
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
            except (OSError, http.client.HTTPException) as exc:
                proxy._upstream_failed(index, repr(exc))
                self.close_connection = True
                self.send_error(502, "upstream unreachable")
                return
            finally:
                conn.close()
            if fault is not None and (self.command == "HEAD" or len(payload) < 2):
                # No body to cut or damage (see the module docstring): a truncate becomes a
                # visible 500, a silent fault becomes no fault.
                fault = "500" if fault == "truncate" else None
                if fault is not None:
                    proxy._settle(index, fault)
                    self._fail(fault)
                    return
            if fault == "truncate":
                proxy._settle(index, fault)
                self._truncate(status, reason, resp_headers, declared, payload)
                return
            if fault == "flip":
                middle = len(payload) // 2
                payload = payload[:middle] + bytes([payload[middle] ^ 0x01]) + payload[middle + 1 :]
            elif fault == "short":
                payload = payload[: len(payload) // 2]
                # The cut must look complete: drop any range header that would betray it.
                resp_headers = [(k, v) for k, v in resp_headers if k.lower() != "content-range"]
            proxy._settle(index, fault, forwarded=True)
            self.send_response(status, reason)
            for k, v in resp_headers:
                self.send_header(k, v)
            # HEAD answers carry the object's length without a body.
            length = declared if self.command == "HEAD" and declared else str(len(payload))
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD" and payload:
                self.wfile.write(payload)

        def _fail(self, fault: str) -> None:
            """Answer with a status fault, or reset the connection (after a stall for slow)."""
            self.close_connection = True
            if fault in _ERROR_ANSWERS:
                status, reason, code, message = _ERROR_ANSWERS[fault]
                text = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error>"
                ).encode()
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

        def _truncate(
            self,
            status: int,
            reason: str,
            headers: list[tuple[str, str]],
            declared: str | None,
            payload: bytes,
        ) -> None:
            """Promise the whole body, deliver half of it, hang up."""
            self.close_connection = True
            self.send_response(status, reason)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", declared or str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self._reset()

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout turns the close() after this handler into a TCP RST.
            with contextlib.suppress(OSError):
                self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )

    return _Handler
