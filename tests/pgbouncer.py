"""A throwaway PgBouncer in front of the suite's PostgreSQL server.

PgBouncer (Debian's ``pgbouncer``, ``/usr/sbin/pgbouncer``) runs in transaction
pooling mode with at most :data:`SERVER_CONNECTIONS` server connections per
database, listens on a free port of 127.0.0.1 only, trusts its one user
(``postgres``, as the test server trusts it) and reaches the server on its Unix
socket (:attr:`PostgresServer.sockdir`); its admin console (database
``pgbouncer``) answers ``SHOW POOLS`` and the like. Each database on the server
is one pool (``*`` in ``[databases]``), so xdist workers, each in databases of
its own, never share one.

PgBouncer refuses to run as root: then it runs as the server's unprivileged user
(:data:`pgserver.PG_USER`). It stops with :meth:`PgBouncer.stop`, at exit, and
with the process that started it (the kernel's parent-death signal), so a killed
test run leaves none behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgserver import PostgresServer, _ensure_pg_user, started

BINARY_ENV = "PFD_TEST_PGBOUNCER"
SERVER_CONNECTIONS = 2
START_TIMEOUT = 20.0
_PR_SET_PDEATHSIG = 1


class PgBouncerNotFoundError(RuntimeError):
    """The pgbouncer program is not installed."""


def find_pgbouncer() -> str:
    """The pgbouncer program: $PFD_TEST_PGBOUNCER, the PATH, or Debian's /usr/sbin."""
    for candidate in (os.environ.get(BINARY_ENV), shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise PgBouncerNotFoundError(
        "pgbouncer not found (looked at $PFD_TEST_PGBOUNCER, the PATH and /usr/sbin): "
        "install it (`apt-get install pgbouncer`, as .ci/run does)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class PgBouncer:
    """PgBouncer in front of ``server``: ``start()`` it, use ``url()``, ``stop()`` it."""

    def __init__(self, server: PostgresServer, pool_size: int = SERVER_CONNECTIONS) -> None:
        self.server = server
        self.pool_size = pool_size
        self.binary = find_pgbouncer()
        self.base: Path | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._user = _ensure_pg_user() if os.geteuid() == 0 else None

    @property
    def logfile(self) -> Path:
        assert self.base is not None, "pgbouncer not started"
        return self.base / "pgbouncer.log"

    def url(self, dbname: str, password: str | None = None) -> str:
        """SQLAlchemy URL of database ``dbname`` through PgBouncer (psycopg 3, TCP)."""
        secret = f":{password}" if password else ""
        return f"postgresql+psycopg://postgres{secret}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str) -> psycopg.Connection[tuple[Any, ...]]:
        """A plain psycopg autocommit connection through PgBouncer (``pgbouncer``:
        its admin console)."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def servers(self, dbname: str) -> int:
        """PgBouncer's server connections to ``dbname`` now, whatever their state."""
        with self.connect("pgbouncer") as admin:
            cursor = admin.execute("SHOW SERVERS")
            at = [column.name for column in cursor.description or ()].index("database")
            return sum(1 for row in cursor.fetchall() if row[at] == dbname)

    def start(self) -> None:
        """Write the configuration in a new temp directory and start PgBouncer; a port
        another process took meanwhile is given up for another."""
        self.base = Path(tempfile.mkdtemp(prefix="pfd-pgbouncer-", dir="/tmp"))
        atexit.register(self.stop)
        try:
            self.base.chmod(0o755)
            (self.base / "users.txt").write_text('"postgres" ""\n')
            if self._user is not None:
                os.chown(self.base, self._user.pw_uid, self._user.pw_gid)
            for _attempt in range(5):
                self.port = _free_port()
                if self._launch():
                    return
            raise RuntimeError(f"pgbouncer did not start:\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _configuration(self) -> str:
        assert self.base is not None
        return (
            "[databases]\n"
            f"* = host={self.server.sockdir} port=5432\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.base / 'users.txt'}\n"
            "admin_users = postgres\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "min_pool_size = 0\n"
            "reserve_pool_size = 0\n"
            f"max_db_connections = {self.pool_size}\n"
            "max_client_conn = 500\n"
            "server_check_delay = 0\n"
            "query_wait_timeout = 30\n"
            f"logfile = {self.logfile}\n"
            f"pidfile = {self.base / 'pgbouncer.pid'}\n"
        )

    def _launch(self) -> bool:
        """Start PgBouncer on ``self.port``; whether it answers there."""
        assert self.base is not None
        ini = self.base / "pgbouncer.ini"
        ini.write_text(self._configuration())
        user: dict[str, Any] = {}
        if self._user is not None:
            user = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        self.process = subprocess.Popen(
            [self.binary, str(ini)],
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # sets a kernel flag only
            **user,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:  # a port taken meanwhile, or a bad setting
                self.process = None
                return False
            with contextlib.suppress(psycopg.OperationalError):
                with self.connect("pgbouncer") as admin:
                    admin.execute("SHOW VERSION")
                return True
            time.sleep(0.05)
        self._terminate()
        return False

    def _log_tail(self) -> str:
        return self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: PgBouncer's fast exit
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def stop(self) -> None:
        """Stop PgBouncer and delete its directory. Idempotent."""
        try:
            self._terminate()
        finally:
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None
            atexit.unregister(self.stop)


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PostgresServer) -> Iterator[PgBouncer]:
    """PgBouncer (transaction pooling, 2 server connections a database) in front of
    the suite's PostgreSQL server; stopped at session end."""
    with started(lambda: PgBouncer(pg_server), PgBouncerNotFoundError) as bouncer:
        yield bouncer
