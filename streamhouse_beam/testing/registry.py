"""A StreamHouse schema registry on 127.0.0.1 for tests and examples.

It serves ``GET /schemas/schemas/ids/{id}`` as StreamHouse's unified server mounts it, with the
same JSON shape (``subject``, ``version``, ``id``, ``schema``, ``schemaType``, ``references``)
and error body (404 ``{"error_code": 40401, ...}``). Requests are recorded in :attr:`hits`, and
:attr:`fail_next` makes the next requests answer with the given HTTP statuses.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["SchemaRegistryServer"]

_PREFIX = "/schemas/schemas/ids/"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.registry
        state.hits.append(self.path)
        if state.fail_next:
            self.send_response(state.fail_next.pop(0))
            self.end_headers()
            return
        body: object
        schema_id = self.path[len(_PREFIX) :]
        if not self.path.startswith(_PREFIX) or not schema_id.isdigit():
            code, body = 400, {"error_code": 400, "message": "bad path"}
        elif int(schema_id) in state.schemas:
            code, body = 200, state.schemas[int(schema_id)]
        else:
            code, body = 404, {"error_code": 40401, "message": "Schema not found"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass  # keep test output clean


class _Server(http.server.ThreadingHTTPServer):
    registry: SchemaRegistryServer


class SchemaRegistryServer:
    """A schema registry serving the given schemas; a context manager that starts and stops it.

    Args:
        schemas: ``{id: {"schema": ..., "schemaType": ..., ...}}``; more with :meth:`add`.
    """

    def __init__(self, schemas: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        self.schemas: dict[int, Mapping[str, Any]] = dict(schemas or {})
        self.hits: list[str] = []
        self.fail_next: list[int] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def add(
        self, schema_id: int, schema: str, schema_type: str = "AVRO", subject: str = "topic-value"
    ) -> None:
        """Register ``schema`` (its text) under ``schema_id``."""
        self.schemas[schema_id] = {
            "subject": subject,
            "version": 1,
            "id": schema_id,
            "schema": schema,
            "schemaType": schema_type,
            "references": [],
        }

    @property
    def url(self) -> str:
        """Base URL of the unified server (the registry is under ``/schemas`` of it)."""
        if self._server is None:
            raise RuntimeError("the schema registry is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SchemaRegistryServer:
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.registry = self
            # A short poll interval: stop() waits for the serving loop to notice the shutdown.
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> SchemaRegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
