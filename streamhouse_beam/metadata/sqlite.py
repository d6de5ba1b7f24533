"""The SQLite metadata backend: StreamHouse's ``metadata.db`` read with the stdlib ``sqlite3``.

Reads go through a connection opened read-only (``file:…?mode=ro``), so a reader can never
modify the store by accident; only :meth:`SqliteMetadataStore.commit_offsets` opens a second,
writable connection (``mode=rw``: it never creates a database), with foreign keys enforced as
StreamHouse's own connections are. "database is locked" and "busy" are retried with backoff
(each attempt first waits ``busy_timeout`` seconds inside SQLite); other failures map to
project errors. One case needs write access to read at all: a writer killed inside a
transaction leaves a hot rollback journal that a read-only connection cannot get past; the
store then opens the file for writing once, which makes SQLite roll that transaction back.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

from streamhouse_beam._retry import METADATA_RETRY, RetryableFailure, RetryPolicy
from streamhouse_beam.errors import (
    InconsistentMetadataError,
    MetadataError,
    MetadataUnavailableError,
    NotAStreamHouseStoreError,
)
from streamhouse_beam.metadata._sql import REQUIRED_COLUMNS, Row, SqlMetadataStore, Statement

__all__ = ["SqliteMetadataStore", "absolute_sqlite_url", "sqlite_path_from_url"]

#: SQLite's extended result code for "a hot journal needs rolling back and this connection is
#: read-only" (``sqlite3.SQLITE_READONLY_ROLLBACK`` on Python 3.11+, not in typeshed).
_SQLITE_READONLY_ROLLBACK = 776


def sqlite_path_from_url(url: str) -> str:
    """The file path of a SQLite URL, spelled as SQLAlchemy spells it.

    ``sqlite:////abs/path.db`` is the absolute path ``/abs/path.db``; ``sqlite:///rel/path.db``
    and ``sqlite:rel/path.db`` are relative to the working directory (``rel/path.db``).

    Raises:
        ValueError: the URL is not a SQLite URL or names no file.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "sqlite":
        raise ValueError(f"metadata_url must start with sqlite:, got {url!r}")
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(
            f"metadata_url {url!r} has a host part; write sqlite:////absolute/path/metadata.db"
        )
    if parsed.query or parsed.fragment:
        raise ValueError(
            f"metadata_url {url!r} must not have a query or fragment (options are keyword "
            "arguments of open_metadata)"
        )
    path = urllib.parse.unquote(parsed.path)
    if parsed.netloc == "localhost":
        pass  # file-URL style, sqlite://localhost/abs: the path is absolute
    elif url[len(parsed.scheme) + 1 :].startswith("//"):
        # sqlite:// + "/" + path, as in SQLAlchemy: one slash more makes the path absolute.
        path = path[1:]
        if path.startswith("/"):
            path = "/" + path.lstrip("/")
    if not path or path == "/":
        raise ValueError(f"metadata_url {url!r} names no database file")
    return path


def absolute_sqlite_url(url: str) -> str:
    """``url`` with its path made absolute against the working directory (``sqlite:////abs``).

    A pipeline's workers may run elsewhere than its launcher: a relative path is resolved where
    the transform is built, once.
    """
    path = os.path.abspath(sqlite_path_from_url(url))
    return "sqlite:///" + urllib.parse.quote(path)


class SqliteMetadataStore(SqlMetadataStore):
    """A StreamHouse SQLite metadata store.

    Args:
        url: ``sqlite:////absolute/path/metadata.db`` or ``sqlite:///relative/path.db``
            (SQLAlchemy's spelling, relative to the working directory).
        organization_id: the organization to read; None picks the only one.
        retry: retry policy for locked/busy databases.
        busy_timeout: seconds SQLite itself waits on a lock within one attempt.
        create: open the writable connection with ``mode=rwc`` (testing helpers only).
    """

    _OFFSETS_CONFLICT_TARGET = "(group_id, topic, partition_id)"

    def __init__(
        self,
        url: str,
        *,
        organization_id: str | uuid.UUID | None = None,
        retry: RetryPolicy | None = None,
        busy_timeout: float = 1.0,
        create: bool = False,
    ) -> None:
        self._given_path = sqlite_path_from_url(url)
        self._path = os.path.abspath(self._given_path)
        if busy_timeout < 0:
            raise ValueError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        self._busy_timeout = float(busy_timeout)
        self._create = create
        self._ro: sqlite3.Connection | None = None
        self._rw: sqlite3.Connection | None = None
        super().__init__(url, organization_id=organization_id, retry=retry or METADATA_RETRY)

    @property
    def path(self) -> str:
        """Absolute path of the database file."""
        return self._path

    _TRANSIENT_STATE = (*SqlMetadataStore._TRANSIENT_STATE, "_ro", "_rw")

    def _reset_connections_after_unpickle(self) -> None:
        self._ro = None
        self._rw = None

    # -- connections ---------------------------------------------------------------------------

    def _file_uri(self, mode: str) -> str:
        return f"file:{urllib.request.pathname2url(self._path)}?mode={mode}"

    def _open(self, mode: str) -> sqlite3.Connection:
        if mode == "ro" and not os.path.exists(self._path):
            hint = ""
            absolute = "/" + self._given_path
            if not os.path.isabs(self._given_path) and os.path.exists(absolute):
                # Written as if three slashes made the path absolute: say how to spell it.
                hint = (
                    f" (sqlite:///{self._given_path} is relative to the working directory, "
                    f"as in SQLAlchemy; for {absolute} write sqlite:///{absolute})"
                )
            raise MetadataUnavailableError(
                f"{self.url}: database file {self._path!r} does not exist{hint}"
            )
        try:
            conn = sqlite3.connect(
                self._file_uri(mode),
                uri=True,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._map(exc, "open the database") from exc
        if mode != "ro":
            conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._ro is None:
            self._ro = self._open("ro")
        return self._ro

    def _writer(self) -> sqlite3.Connection:
        if self._rw is None:
            self._rw = self._open("rwc" if self._create else "rw")
        return self._rw

    def _drop_connections(self) -> None:
        for name in ("_ro", "_rw"):
            conn = getattr(self, name, None)
            setattr(self, name, None)
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    # -- error mapping -------------------------------------------------------------------------

    def _map(self, exc: sqlite3.Error, what: str) -> Exception:
        """Map a sqlite3 error to a retryable failure or a project error."""
        text = str(exc)
        lowered = text.lower()
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in lowered or "busy" in lowered):
            return RetryableFailure(f"{what}: {text}", exc)
        if "no such table" in lowered or "no such column" in lowered:
            return NotAStreamHouseStoreError(
                f"{self.url} is not a StreamHouse metadata store ({what}: {text})"
            )
        if "file is not a database" in lowered:
            return NotAStreamHouseStoreError(
                f"{self.url} is not a StreamHouse metadata store: {self._path!r} is not a "
                "SQLite database"
            )
        if "unable to open" in lowered or "readonly" in lowered:
            return MetadataUnavailableError(f"{self.url}: cannot {what}: {text}")
        if isinstance(exc, sqlite3.IntegrityError):
            return InconsistentMetadataError(f"{self.url}: cannot {what}: {text}")
        return MetadataError(f"{self.url}: cannot {what}: {type(exc).__name__}: {text}")

    # -- primitives ----------------------------------------------------------------------------

    def _query_once(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            return list(self._reader().execute(sql, tuple(params)).fetchall())
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) != _SQLITE_READONLY_ROLLBACK:
                raise self._map(exc, "read") from exc
        # A writer died inside a transaction (a worker killed while it committed offsets) and
        # left a hot rollback journal: until a connection with write access rolls it back, no
        # read-only connection can read the database at all.
        self._roll_back_hot_journal()
        try:
            return list(self._reader().execute(sql, tuple(params)).fetchall())
        except sqlite3.Error as exc:
            raise self._map(exc, "read") from exc

    def _roll_back_hot_journal(self) -> None:
        """Let SQLite roll back a dead writer's unfinished transaction, then reopen the reader.

        Opening the database with write access (never creating it) and reading from it is what
        makes SQLite restore the pages the journal holds; committed data is never touched.
        """
        journal = self._path + "-journal"
        self._drop_connections()
        try:
            conn = sqlite3.connect(
                self._file_uri("rw"), uri=True, timeout=self._busy_timeout, isolation_level=None
            )
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise MetadataUnavailableError(
                f"{self.url}: cannot read: a writer died inside a transaction and left the hot "
                f"journal {journal!r}, which only a connection with write access can roll back, "
                f"and opening {self._path!r} for writing failed ({exc}); open the database once "
                "with write access (StreamHouse or the sqlite3 shell do it on their next access)"
            ) from exc

    def _write_once(self, statements: Sequence[Statement]) -> None:
        conn = self._writer()
        try:
            # IMMEDIATE takes the write lock up front, so a busy database fails here (and is
            # retried) rather than half-way through the statements.
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    conn.execute(sql, tuple(params))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._map(exc, "write") from exc

    def _run_script(self, script: str) -> None:
        """Execute a DDL script on the writable connection (testing helpers only)."""
        with self._lock:
            try:
                self._writer().executescript(script)
            except sqlite3.Error as exc:
                raise self._map(exc, "run the schema script") from exc
            self._columns = None

    def _list_columns(self) -> dict[str, set[str]]:
        tables = [
            str(r[0])
            for r in self._query_once(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')", ()
            )
        ]
        columns: dict[str, set[str]] = {}
        for table in tables:
            if table in REQUIRED_COLUMNS:
                rows = self._query_once("SELECT name FROM pragma_table_info(?)", (table,))
                columns[table] = {str(r[0]) for r in rows}
            else:
                columns[table] = set()
        return columns
