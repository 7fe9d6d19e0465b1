"""Every pfd-db command against every bad setup, on both dialects.

For each (setup, command): either the command works there (exit 0; ``check``
may say 1, "not at head") or it is refused as every expected failure must be:
exit 2, one line on stderr naming the problem, no traceback. Either way nothing
changes (file bytes, files in the directory, tables and row counts), except
where the command's job is to change it (``init`` and ``migrate`` creating or
migrating, ``downgrade`` going back), and no password of the URL is printed.

Commands run in-process (Typer's CliRunner); where ``dbshell`` works, the exec
of its client is recorded instead of done (tests/test_cli_shells.py runs the
clients for real). The read-only file is read by another user when the suite
runs as root (root may write any file), in one subprocess for all commands.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url
from typer.main import get_command

from cli_support import PFD_DB, assert_refused, error_lines, pfd_db
from pfd_db import migrations
from pfd_db.cli import app
from pfd_db.engine import make_engine
from pgserver import PASSWORD_GROUP, worker_name

MATRIX_PREFIX = worker_name("pfd_matrix") + "_"  # this worker's matrix databases
SECRET = "s3cret-in-url"  # every URL's password: never printed
NOBODY = 65534

COMMANDS: dict[str, list[str]] = {
    "init": ["init"],
    "migrate": ["migrate"],
    "migrate --sql": ["migrate", "--sql"],
    "migrate --adopt": ["migrate", "--adopt"],
    "downgrade": ["downgrade", "base", "--yes"],
    "current": ["current"],
    "history": ["history"],
    "check": ["check"],
    "seed": ["seed"],
    "status": ["status"],
    "demo": ["demo", "--experiments", "1"],
    "user create": ["user", "create", "zed", "--email", "zed@example.com", "--generate-password"],
    "user list": ["user", "list"],
    "user set-role": ["user", "set-role", "admin", "viewer"],
    "user deactivate": ["user", "deactivate", "admin"],
    "user reset-password": ["user", "reset-password", "admin", "--generate-password"],
    "apikey create": ["apikey", "create", "admin", "--name", "matrix"],
    "apikey list": ["apikey", "list"],
    "apikey revoke": ["apikey", "revoke", "1"],
    "shell": ["shell"],
    "dbshell": ["dbshell"],
    "backup": ["backup", "{out}/backup.db"],
    "copy": ["copy", "--to", "sqlite:///{out}/copy.db"],
    "restore": ["restore", "{out}/no-backup.db"],
    "import-legacy": ["import-legacy", "--from", "sqlite:///{out}/no-legacy.db"],
    "key rotate": ["key", "rotate"],
    "clean": ["clean", "--yes"],
    "clean --dry-run": ["clean", "--dry-run"],
    "maintain": ["maintain"],
    "maintain --dry-run": ["maintain", "--dry-run"],
    "experiment list": ["experiment", "list"],
    "experiment show": ["experiment", "show", "cnn-baseline"],
    # refused in every setup (none is writable at head); were one not, the
    # unassigned TEST-NET address fails the bind instead of serving forever
    "serve": ["serve", "--host", "192.0.2.1"],
}
CHANGES = {"init", "migrate", "downgrade"}
"""Commands whose job is to change the database, where they work."""
NO_DATABASE_NEEDED = {"history", "migrate --sql"}
"""Commands that work without a usable database (an unusable URL is still refused)."""
INSPECTING = {"status", "current", "check", "history", "migrate --sql", "dbshell"}
"""Commands that work on any pfd-db database whatever its revision."""
MIGRATING = {"init", "migrate"}
READERS = {
    "user list", "apikey list", "backup", "copy", "clean --dry-run", "maintain --dry-run",
    "experiment list",
}  # fmt: skip
"""Commands that read a database at head and write nothing to it."""


@dataclass(frozen=True)
class Setup:
    name: str
    dialect: str  # "sqlite", "postgresql", or "no-db" for a URL naming no database
    works: frozenset[str] = field(default_factory=frozenset)


SETUPS = [
    Setup("scheme foo", "no-db"),
    Setup("scheme mysql", "no-db"),
    Setup("scheme psycopg2", "no-db"),
    Setup("missing directory", "sqlite", frozenset(NO_DATABASE_NEEDED)),
    Setup("directory as path", "sqlite", frozenset(NO_DATABASE_NEEDED)),
    Setup("missing file", "sqlite", frozenset(NO_DATABASE_NEEDED | MIGRATING)),
    Setup("not a database", "sqlite", frozenset(NO_DATABASE_NEEDED)),
    Setup(
        "read-only file",
        "sqlite",
        frozenset(INSPECTING | READERS),
    ),
    Setup("wrong password", "postgresql", frozenset(NO_DATABASE_NEEDED)),
    Setup("refused port", "postgresql", frozenset(NO_DATABASE_NEEDED)),
    Setup("unknown host", "postgresql", frozenset(NO_DATABASE_NEEDED)),
    Setup("missing database", "postgresql", frozenset(NO_DATABASE_NEEDED)),
    *(
        Setup(name, dialect, frozenset(INSPECTING | MIGRATING | extra))
        for dialect in ("sqlite", "postgresql")
        for name, extra in (("unmigrated", set()), ("behind head", {"downgrade"}))
    ),
    *(
        Setup("unknown revision", dialect, frozenset(INSPECTING))
        for dialect in ("sqlite", "postgresql")
    ),
]
CASES = [
    pytest.param(setup.dialect, setup, command, id=f"{setup.dialect}-{setup.name}-{command}")
    for setup in SETUPS
    for command in COMMANDS
]


def command_paths(group: object, prefix: str = "") -> set[str]:
    """Every command of ``group`` by its path ("user create", ...)."""
    paths = set()
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        path = f"{prefix}{name}"
        paths |= command_paths(command, f"{path} ") if hasattr(command, "commands") else {path}
    return paths


def test_the_matrix_runs_every_command():
    covered = {name.split(" --")[0] for name in COMMANDS}
    assert covered == command_paths(get_command(app)), "add the new command to COMMANDS"


# --- places: a database in a given state, its URL, and what "unchanged" means ---


class Place:
    """A database (or a URL naming none) set up for the matrix."""

    url: str
    tmp: Path

    def snapshot(self) -> object:
        raise NotImplementedError

    def clone(self) -> Place:
        return self


@dataclass
class SqlitePlace(Place):
    """A directory holding (or not) the database file the URL names."""

    tmp: Path
    target: Path

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"sqlite:///{self.target}"

    def snapshot(self) -> object:
        """Every file's bytes, except SQLite's own -shm/-wal beside the database (a
        reader of a WAL file may create them) when empty of changes."""
        files = {}
        for path in sorted(self.tmp.rglob("*")):
            if path.is_dir():
                files[str(path)] = "dir"
            elif not sqlite_scratch(path):
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return files

    def clone(self) -> SqlitePlace:
        copy = Path(tempfile.mkdtemp(prefix="pfd-matrix-"))
        shutil.copytree(self.tmp, copy, dirs_exist_ok=True)
        return SqlitePlace(copy, copy / self.target.relative_to(self.tmp))


def sqlite_scratch(path: Path) -> bool:
    """SQLite's WAL index, or a WAL file holding nothing."""
    return path.name.endswith("-shm") or (path.name.endswith("-wal") and not path.stat().st_size)


@dataclass
class PostgresPlace(Place):
    """A database on the suite's server (or a URL that reaches none)."""

    server: object
    tmp: Path
    url: str  # type: ignore[misc]
    database: str | None = None

    def snapshot(self) -> object:
        # Other xdist workers create and drop their own databases meanwhile: only
        # this test's (the URL's and the matrix's) are compared.
        own = {make_url(self.url).database, self.database}
        with self.server.connect() as conn:  # type: ignore[attr-defined]
            databases = sorted(
                name
                for (name,) in conn.execute("SELECT datname FROM pg_database")
                if name in own or name.startswith(MATRIX_PREFIX)
            )
        if self.database is None:
            return databases, None
        with self.server.connect(self.database) as conn:  # type: ignore[attr-defined]
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )]  # fmt: skip
            counts = {
                name: conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
                ).fetchone()
                for name in tables
            }
            versions = (
                [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
                if "alembic_version" in tables
                else None
            )
        return databases, counts, versions

    def clone(self) -> PostgresPlace:
        if self.database is None:
            return self
        name = f"{MATRIX_PREFIX}{uuid.uuid4().hex[:10]}"
        with self.server.connect() as conn:  # type: ignore[attr-defined]
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(self.database)
                )
            )
        return PostgresPlace(self.server, self.tmp, self.server.url(name), name)  # type: ignore[attr-defined]


@dataclass
class UrlOnly(Place):
    tmp: Path
    url: str  # type: ignore[misc]

    def snapshot(self) -> object:
        return sorted(str(p) for p in self.tmp.rglob("*"))


def migrate_to(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        migrations.upgrade(engine, revision)
    finally:
        engine.dispose()


def stamp_unknown(url: str) -> None:
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'fffffffffff0'")
    finally:
        engine.dispose()


def fill(url: str) -> None:
    """A database at head with the admin and one API key."""
    pfd_db("init", "--quiet", "--url", url)
    result = pfd_db("apikey", "create", "admin", "--name", "seeded", "--url", url)
    assert result.exit_code == 0, result.output


def build_sqlite(name: str, tmp: Path) -> SqlitePlace:
    target = tmp / "pfd.db"
    if name == "missing directory":
        return SqlitePlace(tmp, tmp / "no-such-dir" / "pfd.db")
    if name == "directory as path":
        target.mkdir()
    elif name == "not a database":
        target.write_bytes(b"these are notes, not a database\n" * 200)
    elif name == "unmigrated":
        conn = sqlite3.connect(target)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('kept as it is')")
        conn.commit()
        conn.close()
    elif name == "behind head":
        migrate_to(f"sqlite:///{target}", "0001")
    elif name == "unknown revision":
        stamp_unknown(f"sqlite:///{target}")
    elif name == "read-only file":
        fill(f"sqlite:///{target}")
    return SqlitePlace(tmp, target)


def free_loopback_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_postgres(name: str, tmp: Path, server: object) -> Place:
    socket_dir = server.sockdir  # type: ignore[attr-defined]
    if name == "wrong password":
        role = password_role(server)
        return PostgresPlace(server, tmp, f"postgresql://{role}@/postgres?host={socket_dir}"
                             f"&password={SECRET}")  # fmt: skip
    if name == "refused port":
        port = free_loopback_port()
        return PostgresPlace(server, tmp, f"postgresql://pfd:{SECRET}@127.0.0.1:{port}/pfd")
    if name == "unknown host":
        return PostgresPlace(server, tmp, f"postgresql://pfd:{SECRET}@db.invalid/pfd")
    if name == "missing database":
        return PostgresPlace(server, tmp, f"postgresql://postgres:{SECRET}@/pfd_no_such_db"
                             f"?host={socket_dir}")  # fmt: skip
    database = f"{MATRIX_PREFIX}{uuid.uuid4().hex[:10]}"
    server.create_database(database)  # type: ignore[attr-defined]
    url = server.url(database)  # type: ignore[attr-defined]
    if name == "unmigrated":
        with server.connect(database) as conn:  # type: ignore[attr-defined]
            conn.execute("CREATE TABLE notes (body TEXT)")
            conn.execute("INSERT INTO notes VALUES ('kept as it is')")
    elif name == "behind head":
        migrate_to(url, "0001")
    elif name == "unknown revision":
        stamp_unknown(url)
    return PostgresPlace(server, tmp, url, database)


PASSWORD_ROLE = worker_name("pfd_matrix_pw")  # roles are the whole server's


def password_role(server: object) -> str:
    """A role that must give its password (scram), on the suite's trusting server."""
    with server.connect() as conn:  # type: ignore[attr-defined]
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [PASSWORD_ROLE])
        if exists.fetchone() is None:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'the-right-one' IN ROLE {}").format(
                    sql.Identifier(PASSWORD_ROLE), sql.Identifier(PASSWORD_GROUP)
                )
            )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=str(server.sockdir), user=PASSWORD_ROLE,  # type: ignore[attr-defined]
                        dbname="postgres", password="wrong").close()  # fmt: skip
    return PASSWORD_ROLE


def build_url_only(name: str, tmp: Path) -> UrlOnly:
    return UrlOnly(tmp, {
        "scheme foo": "foo://somewhere/pfd",
        "scheme mysql": f"mysql://pfd:{SECRET}@localhost/pfd",
        "scheme psycopg2": f"postgresql+psycopg2://pfd:{SECRET}@localhost/pfd",
    }[name])  # fmt: skip


@pytest.fixture(scope="module")
def places(request: pytest.FixtureRequest) -> Iterator[Callable[[Setup], Place]]:
    """The place of each setup, built once and shared by the commands that change
    nothing (a command that may change it gets a clone)."""
    built: dict[str, Place] = {}
    roots: list[Path] = []

    def place(setup: Setup) -> Place:
        key = f"{setup.dialect} {setup.name}"
        if key not in built:
            tmp = Path(tempfile.mkdtemp(prefix="pfd-matrix-"))
            tmp.chmod(0o755)  # another user reads the read-only file
            roots.append(tmp)
            if setup.dialect == "sqlite":
                built[key] = build_sqlite(setup.name, tmp)
            elif setup.dialect == "postgresql":
                built[key] = build_postgres(setup.name, tmp, request.getfixturevalue("pg_server"))
            else:
                built[key] = build_url_only(setup.name, tmp)
        return built[key]

    yield place
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


# --- running a command there ----------------------------------------------------------


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def argv(command: str, place: Place) -> list[str]:
    outputs = Path(tempfile.mkdtemp(prefix="pfd-matrix-out-"))
    outputs.chmod(0o777)  # written by the unprivileged user too
    args = [arg.replace("{out}", str(outputs)) for arg in COMMANDS[command]]
    return [*args, "--url", place.url]


def run_here(command: str, place: Place) -> Outcome:
    result = pfd_db(*argv(command, place), input="")
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr, exception)


DRIVER = """
import json, os, sys
from typer.testing import CliRunner
from pfd_db.cli import app
os.execve = lambda *args: None  # dbshell: record nothing, start no client
results = []
for args in json.load(sys.stdin):
    result = CliRunner().invoke(app, args, input="")
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    results.append([result.exit_code, result.stdout, result.stderr,
                    repr(result.exception) if crashed else None])
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def read_only_outcomes(places: Callable[[Setup], Place]) -> dict[str, Outcome]:
    """Every command on the read-only file, run by a user who may not write it: as
    root, the unprivileged user ``nobody`` (in one subprocess); else this user,
    after taking the write permission away."""
    setup = next(s for s in SETUPS if s.name == "read-only file")
    place = places(setup)
    assert isinstance(place, SqlitePlace)
    user: list[str] = []
    if os.geteuid() == 0:
        user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    else:
        place.target.chmod(0o444)
        place.tmp.chmod(0o555)
    probe = subprocess.run([*user, sys.executable, "-c",
                            f"open({str(place.target)!r}, 'ab')"], capture_output=True)  # fmt: skip
    assert probe.returncode != 0, "the database file is writable: the setup is wrong"
    names = list(COMMANDS)
    done = subprocess.run([*user, sys.executable, "-c", DRIVER],
                          input=json.dumps([argv(name, place) for name in names]),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {
        name: Outcome(code, out, err, RuntimeError(crash) if crash else None)
        for name, (code, out, err, crash) in zip(names, json.loads(done.stdout), strict=True)
    }


class Clients:
    """Stands in for ``os.execve``: records the clients dbshell would start."""

    def __init__(self) -> None:
        self.started: list[tuple[str, list[str]]] = []

    def __call__(self, program: str, args: list[str], env: dict[str, str]) -> None:
        self.started.append((program, args))


# --- the matrix -------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "setup", "command"), CASES)
def test_every_command_on_every_bad_setup(
    dialect: str,
    setup: Setup,
    command: str,
    places: Callable[[Setup], Place],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clients = Clients()
    monkeypatch.setattr(os, "execve", clients)
    place = places(setup)
    if command in CHANGES and command in setup.works:
        place = place.clone()
    before = place.snapshot()
    if setup.name == "read-only file":
        outcome = request.getfixturevalue("read_only_outcomes")[command]
    else:
        outcome = run_here(command, place)

    shown = outcome.stdout + outcome.stderr
    assert outcome.exception is None, f"{outcome.exception!r}\n{outcome.stderr}"
    assert "Traceback" not in shown, shown
    assert SECRET not in shown
    if command in setup.works:
        allowed = (0, 1) if command == "check" else (0,)
        assert outcome.exit_code in allowed, f"exit {outcome.exit_code}: {outcome.stderr}"
        if command == "dbshell" and setup.name != "read-only file":
            assert [Path(program).name for program, _ in clients.started] == [
                "sqlite3" if dialect == "sqlite" else "psql"
            ]
    else:
        assert clients.started == []
        assert outcome.exit_code == 2, f"exit {outcome.exit_code}: {shown}"
        lines = error_lines(outcome.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
        assert outcome.stdout == ""
    if not (command in CHANGES and command in setup.works):
        assert place.snapshot() == before, "the command changed the database"


# --- a few end to end, as the operator's shell runs them ------------------------------


def test_refusals_are_one_line_from_the_installed_program(tmp_path):
    url, fragment = f"mysql://pfd:{SECRET}@localhost/pfd", "unsupported database URL scheme"
    done = subprocess.run([PFD_DB, "apikey", "create", "admin", "--name", "ci", "--url", url],
                          capture_output=True, text=True)  # fmt: skip
    line = assert_refused(done, fragment)
    assert SECRET not in line
    assert list(tmp_path.iterdir()) == []


def test_a_missing_database_in_the_working_directory_is_not_created(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PFD_DB_URL", "DATABASE_URL"))}
    done = subprocess.run([PFD_DB, "user", "list"], cwd=tmp_path, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert_refused(done, f"no pfd-db database at {tmp_path / 'pfd.db'}: run pfd-db init, "
                   "or pass --url")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# --- numbers out of range ---------------------------------------------------------------

HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    "args",
    [
        ["apikey", "create", "admin", "--name", "ci", "--expires-days", "3000000"],
        ["apikey", "create", "admin", "--name", "ci", "--rate-limit", HUGE],
        ["apikey", "create", "admin", "--name", "ci", "--rate-limit", "-5"],
        ["apikey", "revoke", HUGE],
        ["demo", "--experiments", HUGE],
        ["demo", "--seed", HUGE + HUGE],
    ],
    ids=lambda args: " ".join(args[:3] + args[-2:]),
)
def test_huge_numbers_are_refused_in_one_line(fresh_url, args):
    fill(fresh_url)
    engine = make_engine(fresh_url)
    with engine.connect() as conn:
        before = conn.exec_driver_sql("SELECT count(*) FROM api_keys").scalar()
    assert_refused(pfd_db(*args, "--url", fresh_url))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM api_keys").scalar() == before
        assert conn.exec_driver_sql("SELECT count(*) FROM experiments").scalar() == 0
    engine.dispose()
