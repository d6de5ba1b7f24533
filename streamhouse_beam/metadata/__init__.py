"""StreamHouse's metadata store (SQLite or PostgreSQL), chosen by URL.

:func:`open_metadata` turns a ``metadata_url`` into a :class:`MetadataStore`:

=============================  ===============================================================
``sqlite:////abs/metadata.db``  :class:`~streamhouse_beam.metadata.sqlite.SqliteMetadataStore`
``sqlite:///rel/metadata.db``   (stdlib sqlite3; reads through a read-only connection). Spelled
                                as in SQLAlchemy: four slashes for an absolute path, three for
                                one relative to the working directory
``postgresql://…`` /            :class:`~streamhouse_beam.metadata.postgres.PostgresMetadataStore`
``postgres://…``                (psycopg 3; sets ``app.current_organization_id`` for RLS)
=============================  ===============================================================

Options (keyword arguments): ``retry_attempts`` (8), ``retry_budget`` (30 s),
``retry_base_delay``, ``retry_max_delay``; SQLite: ``busy_timeout`` (1 s per attempt);
PostgreSQL: ``connect_timeout`` (10 s), ``statement_timeout`` (30 s per statement,
``None`` for the server's setting).
"""

from __future__ import annotations

import uuid
from typing import Any

from streamhouse_beam._retry import METADATA_RETRY, RetryPolicy
from streamhouse_beam.errors import redact
from streamhouse_beam.metadata._sql import resolve_overlaps
from streamhouse_beam.metadata.base import MetadataStore

__all__ = ["SCHEMES", "MetadataStore", "open_metadata", "resolve_overlaps"]

#: URL schemes :func:`open_metadata` understands.
SCHEMES = ("sqlite", "postgresql", "postgres")

_RETRY_OPTIONS = frozenset(
    {"retry_attempts", "retry_budget", "retry_base_delay", "retry_max_delay"}
)
_BACKEND_OPTIONS = {
    "sqlite": frozenset({"busy_timeout", "create"}),
    "postgresql": frozenset({"connect_timeout", "statement_timeout"}),
}


def open_metadata(
    url: str, organization_id: str | uuid.UUID | None = None, **options: Any
) -> MetadataStore:
    """Open the metadata store at ``url``, scoped to ``organization_id``.

    Nothing is connected yet: connections open on first use, so the result can be built on a
    launcher machine and pickled to workers.

    Args:
        url: ``sqlite:////abs/path/metadata.db`` (``sqlite:///rel/path.db`` is relative to the
            working directory, as in SQLAlchemy), ``postgresql://user:pw@host:port/db``.
        organization_id: the organization to read (a str or a ``uuid.UUID``); None uses the
            store's only organization
            (OrganizationError on first use when there are zero or several).
        **options: retry and backend options, see the module docstring.

    Raises:
        ValueError: unknown scheme or option.
    """
    if not isinstance(url, str) or ("://" not in url and not url.startswith("sqlite:")):
        raise ValueError(
            f"metadata_url must be a sqlite:/// or postgresql:// URL, got {redact(str(url))!r}"
        )
    scheme = url.split(":", 1)[0].lower()
    family = "postgresql" if scheme in ("postgresql", "postgres") else scheme
    if family not in _BACKEND_OPTIONS:
        raise ValueError(
            f"metadata_url scheme {scheme!r} is not supported (use one of {', '.join(SCHEMES)}): "
            f"{redact(url)!r}"
        )
    allowed = _RETRY_OPTIONS | _BACKEND_OPTIONS[family]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"metadata options {unknown} are not understood by {family} stores "
            f"(accepted: {sorted(allowed)})"
        )
    retry = RetryPolicy.from_options(options, METADATA_RETRY)
    backend = {k: v for k, v in options.items() if k not in _RETRY_OPTIONS}
    if family == "sqlite":
        from streamhouse_beam.metadata.sqlite import SqliteMetadataStore

        return SqliteMetadataStore(url, organization_id=organization_id, retry=retry, **backend)
    from streamhouse_beam.metadata.postgres import PostgresMetadataStore

    return PostgresMetadataStore(url, organization_id=organization_id, retry=retry, **backend)
