"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

A test asks for ``db`` (a Session), ``engine``, ``db_url`` or ``fresh_url`` and is
run once per dialect; ``dialect`` is session-scoped, so pytest runs all SQLite
tests on one database, then all PostgreSQL tests on another. The PostgreSQL
server is a private, throwaway one started by the suite (see pgserver.py).

Under pytest-xdist (``make test`` runs ``pytest -n 2``) the controller starts that
one server before the workers and stops it when the run ends; each worker works in
databases of its own on it (``pfd_test_gw0``, ...).

The package is imported inside the fixtures so that collection works while it is
still being written.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pgbouncer import pgbouncer  # noqa: F401 - the session fixture, for every test module
from pgserver import BASE_ENV, PostgresNotFoundError, PostgresServer, started, worker_name

if TYPE_CHECKING:
    from sqlalchemy import Engine, MetaData
    from sqlalchemy.orm import Session

# Shared helpers whose asserts should explain themselves as the tests' own do.
pytest.register_assert_rewrite("api_support", "cli_support", "probes")


# Settings for the whole suite, before pfd_db reads them: a throwaway instance key
# and cheap argon2 parameters (the benchmarks and production keep the defaults).
os.environ.setdefault("PFD_DB_SECRET_KEY", "LFd7TlRSdWR5dW9ycFctSW5mVUw2WTIzT1JqTFRGOHA=")
os.environ.setdefault("PFD_DB_ARGON2_MEMORY_COST", "1024")
os.environ.setdefault("PFD_DB_ARGON2_TIME_COST", "1")
os.environ.setdefault("PFD_DB_ARGON2_PARALLELISM", "1")

DIALECTS = ("sqlite", "postgresql")
NO_DB = "no-db"


# --- servers and databases ---------------------------------------------------


_controller_server = pytest.StashKey[PostgresServer]()


def _distributing(config: pytest.Config) -> bool:
    """True in the controller of an xdist run (workers have ``workerinput``)."""
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist"):
        return False
    return bool(config.getoption("numprocesses", None)) and config.getoption("dist") != "no"


def pytest_configure(config: pytest.Config) -> None:
    """The xdist controller starts the one server; workers find it through BASE_ENV."""
    if not _distributing(config) or os.environ.get(BASE_ENV):
        return
    try:
        server = PostgresServer()
    except PostgresNotFoundError:
        return  # each worker's pg_server fails with the message, as in a serial run
    server.start()  # registers its own stop at exit and on SIGTERM
    config.stash[_controller_server] = server
    os.environ[BASE_ENV] = str(server.base)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the controller's server when the run ends (also after Ctrl-C)."""
    server = config.stash.get(_controller_server, None)
    if server is not None:
        os.environ.pop(BASE_ENV, None)
        server.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The suite's running PostgreSQL server; stopped and deleted at session end
    (an xdist worker uses the controller's, which the controller stops)."""
    if os.environ.get(BASE_ENV):
        yield PostgresServer.attach(Path(os.environ[BASE_ENV]))
        return
    with started(PostgresServer, PostgresNotFoundError) as server:
        yield server


@pytest.fixture(autouse=True)
def no_state_between_tests() -> Iterator[None]:
    """What an in-process ``pfd-db`` run (or a test) leaves behind is undone after
    each test: the environment, the cached settings, the session's engine (the
    ``shell`` command configures it). The key caches are keyed by key text and
    file, so they cannot leak."""
    environment = dict(os.environ)
    yield
    for name in set(os.environ) - set(environment) - {"PYTEST_CURRENT_TEST"}:
        del os.environ[name]
    os.environ.update({k: v for k, v in environment.items() if k != "PYTEST_CURRENT_TEST"})
    if "pfd_db.session" in sys.modules:  # imported only once a test used the package
        sys.modules["pfd_db.session"].reset()
    if "pfd_db.config" in sys.modules:
        sys.modules["pfd_db.config"].get_settings.cache_clear()


@pytest.fixture(scope="session", params=DIALECTS, ids=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    """The dialect a test runs on: "sqlite" or "postgresql"."""
    return str(request.param)


@pytest.fixture(scope="session")
def db_url(
    dialect: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """URL of the session's test database on the current dialect."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'pfd_test.db'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = worker_name("pfd_test")
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session", autouse=True)
def create_all_keeps_every_foreign_key() -> None:
    """After ``create_all`` on PostgreSQL the models' ``use_alter`` foreign keys are
    left out of every later CREATE TABLE in this process: SQLAlchemy's ALTER TABLE
    ADD CONSTRAINT (``AddConstraint(isolate_from_table=True)``) sets their create
    rule for good, and SQLite only has CREATE TABLE. A serial run makes the SQLite
    tables first; an xdist worker may not, so the rule is undone after each
    ``create_all``."""
    from sqlalchemy import event

    from pfd_db.models import Base

    def undo_isolation(metadata: MetaData, connection: object, **kw: object) -> None:
        for table in metadata.tables.values():
            for constraint in table.foreign_key_constraints:
                if constraint.use_alter:
                    constraint._create_rule = None

    event.listen(Base.metadata, "after_create", undo_isolation)


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    """The package's engine on the test database, with every model table created."""
    from pfd_db.engine import make_engine
    from pfd_db.models import Base

    eng = make_engine(db_url)
    try:
        Base.metadata.create_all(eng)
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def plaintexts() -> list[str]:
    """Secrets a test handled in the clear (passwords, tokens, keys, codes, TOTP
    secrets): append them, and the ``db`` fixture fails the test if any of them
    is found in any text or JSON column of any table when the test ends."""
    return []


@pytest.fixture
def db(engine: Engine, plaintexts: list[str]) -> Iterator[Session]:
    """A Session for one test; afterwards every table is scanned for the test's
    plaintext secrets, then emptied for the next test."""
    from sqlalchemy.orm import Session

    from pfd_db.models import Base

    session = Session(bind=engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        try:
            leaks = find_plaintexts(engine, Base.metadata, plaintexts)
        finally:
            empty_tables(engine, Base.metadata)
        assert not leaks, f"plaintext secrets stored: {leaks}"


def find_plaintexts(engine: Engine, metadata: MetaData, secrets: list[str]) -> list[str]:
    """``table.column`` for every stored value that contains one of ``secrets``."""
    from sqlalchemy import JSON, String, Text, cast, select

    wanted = [s for s in secrets if s]
    if not wanted:
        return []
    found = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [
                cast(c, Text).label(c.name)
                for c in table.columns
                if isinstance(getattr(c.type, "impl", c.type), String | Text | JSON)
                and c.computed is None
            ]
            if not columns:
                continue
            for row in conn.execute(select(*columns)).mappings():
                found += [
                    f"{table.name}.{name}"
                    for name, value in row.items()
                    if value is not None and any(secret in str(value) for secret in wanted)
                ]
    return sorted(set(found))


@pytest.fixture
def fresh_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a brand-new, empty database on the current dialect (for migration tests)."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = f"pfd_fresh_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def settings_on_fresh(fresh_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``PFD_DB_URL`` (and so the settings and pfd_db.session) pointed at
    :func:`fresh_url`'s empty database, for code run as a user would run it."""
    from pfd_db import session as sessions
    from pfd_db.config import get_settings

    monkeypatch.setenv("PFD_DB_URL", fresh_url)
    get_settings.cache_clear()
    sessions.reset()
    yield fresh_url
    sessions.reset()
    get_settings.cache_clear()


@pytest.fixture
def fresh_engine(fresh_url: str) -> Iterator[Engine]:
    """An engine on :func:`fresh_url`'s empty database, disposed afterwards."""
    from pfd_db.engine import make_engine

    engine = make_engine(fresh_url)
    yield engine
    engine.dispose()


def empty_tables(engine: Engine, metadata: MetaData) -> None:
    """Delete every row of every table in the database and restart the id counters.

    Covers the model tables and any table a test created itself, in one transaction.

    PostgreSQL: DELETE from every table with foreign-key (and other) triggers off for
    the transaction (``session_replication_role = replica``; we are superuser), then
    restart the sequences that were used, all in one round trip. Same result as
    ``TRUNCATE ... RESTART IDENTITY CASCADE`` but much faster on small tables:
    TRUNCATE makes new files for every table and index (~2.5 ms a table here).

    SQLite: DELETE from each real table, children before parents (the reverse of
    ``metadata.sorted_tables``, then tables the models don't know), and reset
    ``sqlite_sequence``. Virtual tables (FTS5) and their shadow tables are left
    alone: the triggers on the real tables keep them in step.
    """
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            tables = conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).scalars()
            sequences = conn.exec_driver_sql(
                "SELECT sequencename FROM pg_sequences"
                " WHERE schemaname = current_schema() AND last_value IS NOT NULL"
            ).scalars()
            statements = [
                "SET LOCAL session_replication_role = replica",
                *(f"DELETE FROM {quote(name)}" for name in tables),
                *(f"ALTER SEQUENCE {quote(name)} RESTART" for name in sequences),
            ]
            conn.exec_driver_sql("; ".join(statements))
            return
        rows = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
        ).all()
        virtual = [name for name, ddl in rows if (ddl or "").upper().startswith("CREATE VIRTUAL")]
        real = {
            name
            for name, _ in rows
            if not name.startswith("sqlite_")
            and not any(name == v or name.startswith(f"{v}_") for v in virtual)
        }
        known = [t.name for t in reversed(metadata.sorted_tables) if t.name in real]
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        for name in known + sorted(real - set(known)):
            conn.exec_driver_sql(f"DELETE FROM {quote(name)}")
        if any(name == "sqlite_sequence" for name, _ in rows):
            conn.exec_driver_sql("DELETE FROM sqlite_sequence")


# --- per-dialect markers and summary -----------------------------------------


def _dialect_of(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "dialect" in callspec.params:
        return str(callspec.params["dialect"])
    if "pg_server" in getattr(item, "fixturenames", ()):
        return "postgresql"
    return NO_DB


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its dialect, so `-m sqlite` / `-m postgresql` select them."""
    for item in items:
        name = _dialect_of(item)
        if name != NO_DB:
            item.add_marker(getattr(pytest.mark, name))
        # user_properties travel with every report (also across xdist workers)
        item.user_properties.append(("dialect", name))


def pytest_itemcollected(item: pytest.Item) -> None:
    """Keep a module's tests on one xdist worker (``--dist loadgroup``) when they
    share a module fixture: it is built once, not once per worker. (Marked here:
    xdist reads the marks in its own collection_modifyitems.)"""
    if _shares_a_module_fixture(item):
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info is not None else ()
    return any(d.scope in ("module", "class") for defs in definitions for d in defs)


_outcomes: dict[str, tuple[str, str]] = {}  # nodeid -> (dialect, outcome)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record one outcome per test: failed if any phase failed, else call's outcome."""
    name = dict(report.user_properties).get("dialect", NO_DB)
    previous = _outcomes.get(report.nodeid, (name, ""))[1]
    if previous == "failed":
        return
    if report.failed:
        _outcomes[report.nodeid] = (str(name), "failed")
    elif report.when == "call" or (report.when == "setup" and report.skipped):
        _outcomes[report.nodeid] = (str(name), report.outcome)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per dialect: `sqlite: 120 passed, 0 failed, 0 skipped`."""
    counts: Counter[tuple[str, str]] = Counter(_outcomes.values())
    terminalreporter.write_sep("-", "per dialect")
    for name in (*DIALECTS, NO_DB):
        terminalreporter.write_line(
            f"{name}: {counts[name, 'passed']} passed, {counts[name, 'failed']} failed, "
            f"{counts[name, 'skipped']} skipped"
        )
