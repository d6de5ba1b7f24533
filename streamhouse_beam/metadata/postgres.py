"""The PostgreSQL metadata backend (psycopg 3), row-level-security aware.

StreamHouse's PostgreSQL schema enables row-level security keyed on the session setting
``app.current_organization_id``, without forcing it on the table owner. The owning role bypasses it; any other role sees
only the rows of the organization the session names. So every connection this backend opens
runs ``SELECT set_config('app.current_organization_id', <org>, false)`` as soon as the
organization is known (given, or resolved as the only visible one), and again if it changes.

One connection per store instance (per Beam worker), in autocommit mode for reads; commits run
in an explicit transaction. Connection resets, admin shutdowns, server restarts, "cannot
connect now", serialization failures and deadlocks are retried with backoff on a fresh
connection; authentication failures, unknown databases and permission errors are not.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from streamhouse_beam._retry import METADATA_RETRY, RetryableFailure, RetryPolicy
from streamhouse_beam.errors import (
    MetadataError,
    MetadataUnavailableError,
    MissingExtraError,
    NotAStreamHouseStoreError,
    OrganizationError,
    TopicNotFoundError,
)
from streamhouse_beam.metadata._sql import REQUIRED_COLUMNS, Row, SqlMetadataStore, Statement

__all__ = ["PostgresMetadataStore"]

# SQLSTATE classes/codes that a new attempt can cure.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P", "53")  # connection, operator intervention, resources
# serialization, deadlock, lock not available, statement cancelled (statement_timeout)
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014"}
# Failures at connect time that no retry can cure (matched on the server's message when the
# driver reports no SQLSTATE).
_PERMANENT_CONNECT_MARKERS = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "invalid dsn",
    "invalid connection option",
    "sslmode",
)


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingExtraError(
            "postgresql:// metadata urls", "postgres", module="psycopg 3"
        ) from exc
    return psycopg


class PostgresMetadataStore(SqlMetadataStore):
    """A StreamHouse PostgreSQL metadata store.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (``postgres://`` too; libpq
            query parameters such as ``sslmode`` pass through).
        organization_id: the organization (a UUID) to read; None picks the only visible one.
        retry: retry policy for transient failures.
        connect_timeout: seconds libpq waits for a connection.
        statement_timeout: seconds the server lets one statement run (PostgreSQL's
            ``statement_timeout`` for this store's session) before cancelling it; a cancelled
            statement is retried like any transient failure and, past the retry budget,
            raises :class:`~streamhouse_beam.errors.MetadataUnavailableError` naming the
            query. Keepalives notice a dead server; this bounds a live one that does not
            answer (a statement waiting on a lock, an overloaded server). ``None`` leaves the
            server's setting alone.
    """

    def __init__(
        self,
        url: str,
        *,
        organization_id: str | uuid.UUID | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        statement_timeout: float | None = 30.0,
    ) -> None:
        _import_psycopg()  # fail where the store is built (the launcher), not on a worker
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0 seconds, got {connect_timeout!r}")
        if statement_timeout is not None and (
            isinstance(statement_timeout, bool)
            or not isinstance(statement_timeout, (int, float))
            or not statement_timeout > 0
        ):
            raise ValueError(
                f"statement_timeout must be None or > 0 seconds, got {statement_timeout!r}"
            )
        self._connect_timeout = connect_timeout
        # Milliseconds, at least 1 (0 would mean "no timeout" to PostgreSQL).
        self._statement_timeout_ms = (
            None if statement_timeout is None else max(1, round(statement_timeout * 1000))
        )
        self._conn: Any = None
        self._conn_org: str | None = None
        super().__init__(url, organization_id=organization_id, retry=retry or METADATA_RETRY)

    _TRANSIENT_STATE = (*SqlMetadataStore._TRANSIENT_STATE, "_conn", "_conn_org")

    def _reset_connections_after_unpickle(self) -> None:
        self._conn = None
        self._conn_org = None

    # -- dialect -------------------------------------------------------------------------------

    def _normalize_org(self, organization_id: str) -> str:
        try:
            return str(uuid.UUID(organization_id))
        except ValueError:
            raise OrganizationError(
                f"organization_id {organization_id!r} is not a UUID; PostgreSQL StreamHouse "
                "stores identify organizations by UUID"
            ) from None

    def _org_param(self, organization_id: str) -> Any:
        return uuid.UUID(organization_id)

    @staticmethod
    def _sql(sql: str) -> str:
        # The shared SQL uses qmark placeholders and contains no literal '?' or '%'.
        return sql.replace("?", "%s")

    # -- connections ---------------------------------------------------------------------------

    def _connection(self) -> Any:
        psycopg = _import_psycopg()
        if self._conn is None or self._conn.closed:
            self._conn_org = None
            try:
                self._conn = psycopg.connect(
                    self._raw_url,
                    autocommit=True,
                    connect_timeout=max(1, round(self._connect_timeout)),
                    application_name="streamhouse-beam",
                    # A worker must notice a silently dead server (network partition) in about
                    # a minute rather than after the OS default of two hours.
                    keepalives=1,
                    keepalives_idle=30,
                    keepalives_interval=10,
                    keepalives_count=3,
                )
            except psycopg.Error as exc:
                raise self._map(exc, "connect", connecting=True) from exc
            if self._statement_timeout_ms is not None:
                try:
                    # A session setting, so it works whatever options the URL carries.
                    self._conn.execute(
                        "SELECT set_config('statement_timeout', %s, false)",
                        (str(self._statement_timeout_ms),),
                    )
                except psycopg.Error as exc:
                    raise self._map(exc, "set statement_timeout") from exc
        org = self._session_org
        if org is not None and self._conn_org != org:
            try:
                self._conn.execute(
                    "SELECT set_config('app.current_organization_id', %s, false)", (org,)
                )
            except psycopg.Error as exc:
                raise self._map(exc, "set app.current_organization_id") from exc
            self._conn_org = org
        return self._conn

    def _session_org_changed(self) -> None:
        # The next query re-sets app.current_organization_id on the open connection.
        self._conn_org = None

    def _drop_connections(self) -> None:
        conn, self._conn, self._conn_org = self._conn, None, None
        if conn is not None:
            # A broken connection may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                conn.close()

    # -- error mapping -------------------------------------------------------------------------

    def _map(self, exc: Exception, what: str, *, connecting: bool = False) -> Exception:
        psycopg = _import_psycopg()
        errors = psycopg.errors
        text = str(exc).strip().replace("\n", " ")
        state = getattr(exc, "sqlstate", None) or ""
        if isinstance(exc, (errors.UndefinedTable, errors.UndefinedColumn)):
            return NotAStreamHouseStoreError(
                f"{self.url} is not a StreamHouse metadata store ({what}: {text})"
            )
        if isinstance(exc, errors.ForeignKeyViolation):
            return TopicNotFoundError(f"{self.url}: cannot {what}: {text}")
        if isinstance(exc, errors.InsufficientPrivilege):
            return MetadataError(
                f"{self.url}: permission denied ({what}): {text}; grant the role SELECT on the "
                "StreamHouse tables (and INSERT/UPDATE on consumer_groups/consumer_offsets to commit)"
            )
        if state in _TRANSIENT_SQLSTATES or state.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
            return RetryableFailure(f"{what}: {text}", exc)
        if isinstance(exc, psycopg.OperationalError):
            lowered = text.lower()
            if (
                state.startswith("28")
                or state == "3D000"
                or (connecting and any(m in lowered for m in _PERMANENT_CONNECT_MARKERS))
            ):
                return MetadataUnavailableError(f"{self.url}: cannot {what}: {text}")
            return RetryableFailure(f"{what}: {text}", exc)
        if isinstance(exc, psycopg.InterfaceError):
            # e.g. "the connection is closed": a fresh connection may succeed.
            return RetryableFailure(f"{what}: {text}", exc)
        return MetadataError(f"{self.url}: cannot {what}: {type(exc).__name__}: {text}")

    # -- primitives ----------------------------------------------------------------------------

    def _query_once(self, sql: str, params: Sequence[Any]) -> list[Row]:
        psycopg = _import_psycopg()
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(self._sql(sql), tuple(params))
                return list(cur.fetchall())
        except psycopg.Error as exc:
            raise self._map(exc, "read") from exc

    def _write_once(self, statements: Sequence[Statement]) -> None:
        psycopg = _import_psycopg()
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(self._sql(sql), tuple(params))
        except psycopg.Error as exc:
            raise self._map(exc, "write") from exc

    def _run_script(self, script: str) -> None:
        """Execute a DDL script (testing helpers only)."""
        psycopg = _import_psycopg()
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(script)
            except psycopg.Error as exc:
                raise self._map(exc, "run the schema script") from exc
            self._columns = None

    def _list_columns(self) -> dict[str, set[str]]:
        rows = self._query_once(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = ANY (current_schemas(false))",
            (),
        )
        columns: dict[str, set[str]] = {}
        for table, column in rows:
            columns.setdefault(str(table), set()).add(str(column))
        # information_schema only lists columns the role may access; an unreadable table looks
        # missing, so confirm existence through the catalog to give the right error.
        missing = [t for t in REQUIRED_COLUMNS if t not in columns]
        if missing:
            rows = self._query_once(
                "SELECT relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = ANY (current_schemas(false)) "
                "AND c.relkind IN ('r', 'p', 'v') AND c.relname = ANY (?)",
                (missing,),
            )
            hidden = sorted(str(r[0]) for r in rows)
            if hidden:
                raise MetadataError(
                    f"{self.url}: permission denied: this role cannot read table(s) "
                    f"{', '.join(hidden)}; grant it SELECT on the StreamHouse tables"
                )
        return columns
