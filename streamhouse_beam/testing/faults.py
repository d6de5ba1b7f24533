"""A small HTTP proxy on 127.0.0.1 that injects faults in front of a real server (moto, the GCS emulator).

Requests are forwarded unchanged to the upstream server, except that the next requests can
be made to fail, one queued fault per request, in order:

``"503"`` / ``"500"`` / ``"429"`` / ``"403"``
    answer with that status and an S3-style XML error body (``SlowDown``, ``InternalError``,
    ``TooManyRequests``, ``AccessDenied``) without contacting the upstream;
``"reset"``
    close the connection without answering;
``"truncate"``
    forward the request, then send the upstream's headers (with the full Content-Length)
    and only half of the body before closing.

This is enough to test retry budgets against real clients (boto3, google-cloud-storage)::

    with FaultProxy(moto.endpoint_url) as proxy:
        proxy.inject("503", "503")
        store = open_store("s3://b", {"endpoint_url": proxy.endpoint_url, ...})
"""

from __future__ import annotations

import collections
import http.client
import http.server
import socket
import threading
import urllib.parse
from typing import Any

from streamhouse_beam.testing.servers import free_port

__all__ = ["FAULTS", "FaultProxy"]

_ERROR_CODES = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "429": (429, "TooManyRequests", "Too many requests."),
    "403": (403, "AccessDenied", "Access Denied"),
}
#: the fault names :meth:`FaultProxy.inject` accepts
FAULTS = (*_ERROR_CODES, "reset", "truncate")

# Hop-by-hop headers are not forwarded (RFC 9110 section 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    }
)


class FaultProxy:
    """Forward HTTP to ``upstream``, failing queued requests on purpose.

    Args:
        upstream: ``http://host:port`` of the real server.

    Attributes:
        requests_seen: requests received so far (faulted or not).
        faults_served: faults injected so far.
        upstream_errors: requests the upstream could not answer (answered 502 instead).
        history: ``(method and path, fault or None)`` of every request, in arrival order.
    """

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream_host = parsed.hostname
        self.upstream_port = parsed.port
        self.requests_seen = 0
        self.faults_served = 0
        self.upstream_errors: list[str] = []
        self.history: list[tuple[str, str | None]] = []
        self._faults: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the proxy."""
        return f"http://127.0.0.1:{self.port}"

    def inject(self, *faults: str) -> None:
        """Queue ``faults`` for the next requests, one per request."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; use one of {FAULTS}")
        with self._lock:
            self._faults.extend(faults)

    def pending(self) -> int:
        """Faults queued but not yet served."""
        with self._lock:
            return len(self._faults)

    def clear(self) -> None:
        """Drop queued faults."""
        with self._lock:
            self._faults.clear()

    def _next_fault(self, request_line: str) -> str | None:
        with self._lock:
            self.requests_seen += 1
            fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                self.faults_served += 1
            self.history.append((request_line, fault))
            return fault

    def start(self) -> FaultProxy:
        """Start serving on a free loopback port."""
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._next_fault(f"{self.command} {self.path}")
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault in _ERROR_CODES:
                    status, code, message = _ERROR_CODES[fault]
                    payload = (
                        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                        f"<Message>{message}</Message></Error>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=30
                )
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    try:
                        upstream.request(self.command, self.path, body=body, headers=headers)
                        response = upstream.getresponse()
                        data = response.read()
                    except OSError as exc:
                        proxy.upstream_errors.append(f"{self.command} {self.path}: {exc!r}")
                        self.send_error(502, "upstream unreachable")
                        return
                    self.send_response(response.status, response.reason)
                    # HEAD answers carry the object's length with no body: pass it through.
                    keep_length = self.command == "HEAD"
                    for name, value in response.getheaders():
                        lower = name.lower()
                        if lower not in _HOP_BY_HOP and (keep_length or lower != "content-length"):
                            self.send_header(name, value)
                    if not keep_length:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    if fault == "truncate" and len(data) > 1:
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _relay

        self.port = free_port()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
