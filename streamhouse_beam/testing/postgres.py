"""A throw-away PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` in a temporary directory.

:class:`PostgresServer` finds the distribution's server binaries (``PATH`` or
``/usr/lib/postgresql/*/bin``), initializes a cluster in a fresh temporary directory, and starts
it listening on ``127.0.0.1`` at a free port, with its unix socket inside that directory. The
PostgreSQL server refuses to run as root, so when the current user is root the binaries run as
the OS user ``postgres`` (``runuser``) and the directory is handed to that user.

Authentication: the superuser ``postgres`` connects without a password (trust), which keeps
test setup simple; two extra login roles need a password over TCP (scram-sha-256), so tests can
check that URLs with passwords work and are never echoed:

- :attr:`PostgresServer.PASSWORD_USER`: a superuser-equivalent owner role with a password;
- :attr:`PostgresServer.READER_USER`: a plain role without BYPASSRLS that owns nothing, for
  testing StreamHouse's row-level security as a connector deployment would meet it.

Example::

    with PostgresServer() as pg:
        db = pg.create_database()
        url = pg.url(db)
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from typing import Any

__all__ = ["PostgresServer", "PostgresUnavailable", "find_postgres_bin_dir"]


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed, or the server would not start."""


def find_postgres_bin_dir() -> str:
    """The directory holding ``initdb`` and ``pg_ctl``; newest ``/usr/lib/postgresql`` first.

    Raises:
        PostgresUnavailable: no installation found (install Debian's ``postgresql`` package).
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if os.access(os.path.join(directory, "initdb"), os.X_OK) and os.access(
            os.path.join(directory, "pg_ctl"), os.X_OK
        ):
            return directory
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return os.path.dirname(os.path.realpath(pg_ctl))
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under "
        "/usr/lib/postgresql/*/bin; install the 'postgresql' package (make system-deps)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on 127.0.0.1 at a free port.

    Args:
        bin_dir: directory of ``initdb``/``pg_ctl``; found automatically when None.
        os_user: OS user to run the server as when running as root.
        startup_timeout: seconds ``pg_ctl`` may wait for the server to accept connections.
    """

    SUPERUSER = "postgres"
    PASSWORD_USER = "sh_owner"
    PASSWORD = "s3cret-P@ss:w/rd"
    READER_USER = "sh_reader"
    READER_PASSWORD = "reader-pw"

    def __init__(
        self,
        *,
        bin_dir: str | None = None,
        os_user: str = "postgres",
        startup_timeout: float = 60.0,
    ) -> None:
        self.bin_dir = bin_dir or find_postgres_bin_dir()
        self.os_user = os_user
        self.startup_timeout = startup_timeout
        self.port = 0
        self.base_dir: str | None = None
        self._running = False

    # ------------------------------------------------------------------ process management

    @property
    def data_dir(self) -> str:
        assert self.base_dir is not None, "server not started"
        return os.path.join(self.base_dir, "data")

    @property
    def socket_dir(self) -> str:
        assert self.base_dir is not None, "server not started"
        return os.path.join(self.base_dir, "socket")

    @property
    def log_file(self) -> str:
        assert self.base_dir is not None, "server not started"
        return os.path.join(self.base_dir, "postgres.log")

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", self.os_user, "--", *argv]
        return argv

    def _run(self, argv: list[str], what: str, timeout: float | None = None) -> None:
        proc = subprocess.run(
            self._as_server_user(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout or self.startup_timeout + 30,
            check=False,
        )
        if proc.returncode != 0:
            log = ""
            if self.base_dir and os.path.exists(self.log_file):
                with open(self.log_file, encoding="utf-8", errors="replace") as fh:
                    log = fh.read()[-2000:]
            raise PostgresUnavailable(
                f"{what} failed (exit {proc.returncode}): {proc.stdout.strip()[-2000:]}\n{log}"
            )

    def start(self) -> PostgresServer:
        """Initialize the cluster (first call) and start the server; returns ``self``."""
        if self._running:
            return self
        if self.base_dir is None:
            self.base_dir = tempfile.mkdtemp(prefix="streamhouse-pg-")
            os.makedirs(self.socket_dir)
            if os.geteuid() == 0:
                pw = pwd.getpwnam(self.os_user)
                for path in (self.base_dir, self.socket_dir):
                    os.chown(path, pw.pw_uid, pw.pw_gid)
            self._run(
                [
                    os.path.join(self.bin_dir, "initdb"),
                    "-D",
                    self.data_dir,
                    "-U",
                    self.SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                "initdb",
            )
            hba = os.path.join(self.data_dir, "pg_hba.conf")
            with open(hba, "w", encoding="utf-8") as fh:
                fh.write(
                    "local all all trust\n"
                    f"host all {self.PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
                    f"host all {self.READER_USER} 127.0.0.1/32 scram-sha-256\n"
                    "host all all 127.0.0.1/32 trust\n"
                )
            self.port = _free_port()
            # pg_ctl detaches the server: make sure an interrupted test run does not leave it.
            atexit.register(self.stop)
            self._pg_ctl_start()
            self._create_roles()
        else:
            self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            [
                os.path.join(self.bin_dir, "pg_ctl"),
                "-D",
                self.data_dir,
                "-l",
                self.log_file,
                "-o",
                options,
                "-t",
                str(int(self.startup_timeout)),
                "-w",
                "start",
            ],
            "pg_ctl start",
        )
        self._running = True

    def stop(self, *, cleanup: bool = True) -> None:
        """Stop the server (fast shutdown) and, with ``cleanup``, delete its directory."""
        if self._running:
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                self._run(
                    [
                        os.path.join(self.bin_dir, "pg_ctl"),
                        "-D",
                        self.data_dir,
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ],
                    "pg_ctl stop",
                    timeout=60,
                )
            self._running = False
        if cleanup and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def restart(self, *, down_seconds: float = 0.0) -> None:
        """Stop (fast: open connections are terminated) and start again on the same port."""
        self.stop(cleanup=False)
        if down_seconds:
            time.sleep(down_seconds)
        self._pg_ctl_start()

    @property
    def running(self) -> bool:
        return self._running

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ URLs and databases

    def url(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> str:
        """A ``postgresql://`` URL for ``dbname`` over TCP; ``password`` is percent-encoded."""
        user = user or self.SUPERUSER
        auth = urllib.parse.quote(user, safe="")
        if password is not None:
            auth += ":" + urllib.parse.quote(password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{urllib.parse.quote(dbname, safe='')}"

    def owner_url(self, dbname: str) -> str:
        """URL as the password-protected owner role."""
        return self.url(dbname, self.PASSWORD_USER, self.PASSWORD)

    def reader_url(self, dbname: str) -> str:
        """URL as the non-owner, non-BYPASSRLS reader role."""
        return self.url(dbname, self.READER_USER, self.READER_PASSWORD)

    def execute(self, sql: Any, params: Any = None, *, dbname: str = "postgres") -> list[Any]:
        """Run one statement (str or psycopg.sql.Composed) as the superuser; returns any rows."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def _create_roles(self) -> None:
        from psycopg import sql

        for role, password, attrs in (
            (self.PASSWORD_USER, self.PASSWORD, "LOGIN SUPERUSER"),
            (self.READER_USER, self.READER_PASSWORD, "LOGIN NOSUPERUSER NOBYPASSRLS"),
        ):
            self.execute(
                sql.SQL("CREATE ROLE {} " + attrs + " PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database owned by the superuser; returns its name."""
        from psycopg import sql

        name = name or f"sh_{uuid.uuid4().hex[:16]}"
        self.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions."""
        from psycopg import sql

        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def grant_reader(self, dbname: str) -> None:
        """Let the reader role read every table and commit offsets (as a connector role would)."""
        reader = self.READER_USER
        self.execute(f'GRANT USAGE ON SCHEMA public TO "{reader}"', dbname=dbname)
        self.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{reader}"', dbname=dbname)
        self.execute(
            f'GRANT INSERT, UPDATE ON consumer_groups, consumer_offsets TO "{reader}"',
            dbname=dbname,
        )
