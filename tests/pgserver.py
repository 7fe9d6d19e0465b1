"""A throwaway PostgreSQL server for the test suite.

The server lives in a fresh directory under /tmp, listens only on a Unix socket
in that directory (nothing on the network), trades durability for speed and is
stopped and deleted by :meth:`PostgresServer.stop`.

PostgreSQL refuses to run as root, so when the suite runs as root the server runs
as an unprivileged system user (:data:`PG_USER`, created on first use).

Under pytest-xdist the controller starts the one server and names its directory in
:data:`BASE_ENV`; each worker :meth:`~PostgresServer.attach`-es to it and keeps its
databases apart with :func:`worker_name`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import psycopg
import pytest
from psycopg import sql

PG_USER = "pfd_pgtest"
BINDIR_ENV = "PFD_TEST_PG_BINDIR"
BASE_ENV = "PFD_TEST_PG_BASE"  # the running server's directory, for xdist workers

# Appended to postgresql.conf: socket only, no durability, room for many pools.
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Parallel plans buy nothing on tiny test tables and need /dev/shm space.
    "max_parallel_workers_per_gather": "0",
}

# Members of this group must give their password; everyone else is trusted. The rule is
# written before the server starts, so no test edits pg_hba.conf while others connect.
PASSWORD_GROUP = "pfd_password_only"


class PostgresNotFoundError(RuntimeError):
    """The PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed."""


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin: the version as numbers."""
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return (0,)


def find_bindir() -> Path:
    """Return the directory holding initdb, pg_ctl and postgres.

    Looks at $PFD_TEST_PG_BINDIR, then `pg_config --bindir`, then the highest
    /usr/lib/postgresql/*/bin, then the directory of `initdb` on PATH.
    """
    candidates: list[Path] = []
    if os.environ.get(BINDIR_ENV):
        candidates.append(Path(os.environ[BINDIR_ENV]))
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "nothing found"
    raise PostgresNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found "
        f"(looked in: {looked}). The test suite runs every database test on a real "
        "PostgreSQL server: install it (e.g. `apt-get install postgresql`, as .ci/run "
        f"does) or point ${BINDIR_ENV} at its bin directory."
    )


def _ensure_pg_user() -> pwd.struct_passwd:
    """Return the unprivileged server user, creating it (as a system user) if missing."""
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
        capture_output=True,
        text=True,
    )  # may lose a race with a concurrent run; getpwnam below is the real check
    return pwd.getpwnam(PG_USER)


def worker_name(name: str) -> str:
    """``name`` made unique to this xdist worker (``pfd_test`` -> ``pfd_test_gw0``);
    unchanged outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return f"{name}_{worker}" if worker else name


class PostgresServer:
    """A private PostgreSQL cluster: ``start()`` it, use ``url()``, ``stop()`` it."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.base: Path | None = None
        self.started = False
        self.owned = True  # False when attached: another process stops it
        self._user: pwd.struct_passwd | None = _ensure_pg_user() if os.geteuid() == 0 else None

    @classmethod
    def attach(cls, base: Path) -> PostgresServer:
        """The server another process started in ``base``; ``stop()`` leaves it running."""
        server = cls()
        server.base = base
        server.owned = False
        if not (server.datadir / "postmaster.pid").exists():
            raise RuntimeError(f"no PostgreSQL server running in {base}")
        return server

    @property
    def datadir(self) -> Path:
        assert self.base is not None, "server not started"
        return self.base / "data"

    @property
    def sockdir(self) -> Path:
        assert self.base is not None, "server not started"
        return self.base / "sock"

    @property
    def logfile(self) -> Path:
        assert self.base is not None, "server not started"
        return self.base / "server.log"

    def _run(self, exe: str, *args: str) -> None:
        """Run a server binary, as the unprivileged user when we are root."""
        cmd = [str(self.bindir / exe), *args]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user.pw_name, "--", *cmd]
        done = subprocess.run(cmd, cwd=self.base, capture_output=True, text=True)
        if done.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n--- server log ---\n{log}"
            )

    def start(self) -> None:
        """Create a cluster in a new temp directory and start the server on its socket."""
        try:
            self._make_base("pfd-pgtest-")
            self._run(
                "initdb", "-D", str(self.datadir), "-A", "trust", "-U", "postgres",
                "--no-sync", "-E", "UTF8", "--locale=C",
            )  # fmt: skip
            settings = {**SERVER_SETTINGS, "unix_socket_directories": f"'{self.sockdir}'"}
            with (self.datadir / "postgresql.conf").open("a") as conf:
                conf.write("\n# pfd_db test server\n")
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            hba = self.datadir / "pg_hba.conf"
            hba.write_text(f"local all +{PASSWORD_GROUP} scram-sha-256\n" + hba.read_text())
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir),
                      "-l", str(self.logfile))  # fmt: skip
            self.started = True
            with self.connect() as conn:
                conn.execute(
                    sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(PASSWORD_GROUP))
                )
        except BaseException:
            self.stop()
            raise

    def _make_base(self, prefix: str) -> None:
        """A new temp directory with its socket folder, the server user's; stopped at exit."""
        self.base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        atexit.register(self.stop)
        self._stop_on_sigterm()
        self.base.chmod(0o755)
        self.sockdir.mkdir()
        if self._user is not None:
            for path in (self.base, self.sockdir):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def stop(self) -> None:
        """Stop the server at once (no checkpoint) and delete its directory. Idempotent."""
        if not self.owned:
            self.base = None
            return
        if self.base is None:
            return
        try:
            if self.started:
                self.started = False
                self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.datadir))
        except BaseException:
            self._kill_postmaster()
            raise
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
            atexit.unregister(self.stop)

    def _stop_on_sigterm(self) -> None:
        """atexit does not run on SIGTERM (a CI timeout): stop the server, then die as usual."""
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: object) -> None:
            signal.signal(signum, signal.SIG_DFL)
            self.stop()
            os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, handler)

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl cannot stop the server: SIGQUIT its postmaster."""
        pidfile = self.datadir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGQUIT)

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of database ``dbname`` on this server (psycopg 3, Unix socket)."""
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.sockdir}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A plain psycopg autocommit connection, as the superuser."""
        return psycopg.connect(
            host=str(self.sockdir), user="postgres", dbname=dbname, autocommit=True
        )

    def create_database(self, name: str) -> None:
        """Create an empty database ``name`` (from template0)."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting anyone still using it."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":  # manual check: python tests/pgserver.py
    began = time.perf_counter()
    server = PostgresServer()
    server.start()
    print(f"started in {time.perf_counter() - began:.2f}s: {server.url('postgres')}")
    with server.connect() as conn:
        print(conn.execute("SHOW server_version").fetchone())
    server.stop()


class Service(Protocol):
    def start(self) -> object: ...
    def stop(self) -> object: ...


S = TypeVar("S", bound=Service)


@contextlib.contextmanager
def started(make: Callable[[], S], missing: type[Exception]) -> Iterator[S]:
    """The service ``make()`` builds, started, and stopped when the block ends. When
    its programs are not installed (``missing``), every test using it fails with that
    one clean line (raised outside the except block, so with no chained traceback)."""
    try:
        service = make()
    except missing as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(problem, pytrace=False)
    service.start()
    try:
        yield service
    finally:
        service.stop()
