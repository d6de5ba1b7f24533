"""Helpers for tests, demos and benchmarks: write StreamHouse data and run a PostgreSQL server.

- :class:`~streamhouse_beam.testing.local.LocalStreamHouse` writes topics exactly as
  StreamHouse lays them out (metadata rows + segment objects).
- :class:`~streamhouse_beam.testing.postgres.PostgresServer` runs a throw-away PostgreSQL
  from the distribution's binaries (initdb + pg_ctl) on a free loopback port.
- :mod:`~streamhouse_beam.testing.schema` holds StreamHouse's metadata DDL.

Runtime code never imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["LocalStreamHouse", "PostgresServer"]

if TYPE_CHECKING:
    from streamhouse_beam.testing.local import LocalStreamHouse
    from streamhouse_beam.testing.postgres import PostgresServer


def __getattr__(name: str) -> Any:
    # Lazy, so importing one helper does not import the others' dependencies.
    if name == "LocalStreamHouse":
        from streamhouse_beam.testing.local import LocalStreamHouse

        return LocalStreamHouse
    if name == "PostgresServer":
        from streamhouse_beam.testing.postgres import PostgresServer

        return PostgresServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
