"""Helpers for tests, demos and benchmarks: write StreamHouse data and run a PostgreSQL server.

- :class:`~streamhouse_beam.testing.local.LocalStreamHouse` writes topics exactly as
  StreamHouse lays them out (metadata rows + segment objects).
- :class:`~streamhouse_beam.testing.postgres.PostgresServer` runs a throw-away PostgreSQL
  from the distribution's binaries (initdb + pg_ctl) on a free loopback port.
- :class:`~streamhouse_beam.testing.flink_cluster.FlinkSessionCluster` runs a Flink session
  cluster (a JobManager and TaskManagers, separate JVMs) on 127.0.0.1, and
  :class:`~streamhouse_beam.testing.flink_cluster.SdkWorkerPool` the SDK worker processes its
  jobs use (``--environment_type=EXTERNAL``).
- :mod:`~streamhouse_beam.testing.schema` holds StreamHouse's metadata DDL.

Runtime code never imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FlinkSessionCluster", "LocalStreamHouse", "PostgresServer", "SdkWorkerPool"]

if TYPE_CHECKING:
    from streamhouse_beam.testing.flink_cluster import FlinkSessionCluster, SdkWorkerPool
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
    if name in ("FlinkSessionCluster", "SdkWorkerPool"):
        from streamhouse_beam.testing import flink_cluster

        return getattr(flink_cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
