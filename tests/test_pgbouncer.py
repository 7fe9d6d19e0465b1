"""pfd-db through a real PgBouncer in transaction pooling mode (tests/pgbouncer.py).

PgBouncer gives each database at most 2 server connections; 8 threads do the
store's everyday work through it with 0 errors, and the server's routes serve
through it. Without the ``pgbouncer`` setting or its detection the same kind of
work fails on psycopg's prepared statements, which shows the pooling is real.
Statements that would leave session state are refused before they are sent,
and migrations refuse to run through PgBouncer with one line naming the URL to
use instead.
"""

from __future__ import annotations

import ast
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import sessionmaker

from cli_support import assert_refused, pfd_db
from factories import epoch
from pfd_db import migrations
from pfd_db.config import get_settings
from pfd_db.engine import make_engine, read_only
from pfd_db.errors import AuthenticationFailed, ThroughPgBouncer
from pfd_db.models import (
    APIRequestLog,
    EmailLog,
    Experiment,
    LoginHistory,
    SystemLog,
    TrainingRun,
    User,
)
from pfd_db.pgbouncer import (
    behind_pgbouncer,
    leaves_session_state,
    refuse_migrations,
    through_pgbouncer,
)
from pfd_db.store.identity import api_keys, users
from pfd_db.store.ml import curves, datasets, experiments
from pfd_db.store.ml import search as store_search
from pfd_db.store.notify import deliveries, notifications
from pfd_db.store.ops import audit, request_log, retention, rollups
from pfd_db.types import utcnow
from pgbouncer import SERVER_CONNECTIONS, PgBouncer
from pgserver import PostgresServer
from probes import run_together

THREADS = 8
ROUNDS = 3
EPOCHS = 12
HOUR = timedelta(hours=1)
PASSWORD = "a long passphrase"
URL_PASSWORD = "not-a-real-s3cret"
PREPARED_FAILURE = re.compile(r'prepared statement "_pg3_\d+" (?:does not exist|already exists)')
SRC = Path(__file__).resolve().parents[1] / "src" / "pfd_db"


@dataclass
class Bounced:
    """A database at head on the test server, and how to reach it."""

    name: str
    direct: str
    through: str


@pytest.fixture(scope="module")
def bounced(pg_server: PostgresServer, pgbouncer: PgBouncer) -> Iterator[Bounced]:
    """A database migrated to head directly (not through PgBouncer), with an admin
    and a dataset; dropped afterwards."""
    name = f"pfd_bouncer_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(name)
    direct = pg_server.url(name)
    engine = make_engine(direct)
    try:
        migrations.upgrade(engine)
        with sessionmaker(engine).begin() as session:
            admin = users.create_user(session, "admin", "admin@example.com", PASSWORD, "admin")
            datasets.register_dataset(session, "bearings", ["normal"], ["low"], "d.h5")
            session.flush()
            assert admin.id == 1
    finally:
        engine.dispose()
    try:
        yield Bounced(name, direct, pgbouncer.url(name))
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def engines() -> Iterator[Callable[..., Engine]]:
    """``engines(url, setting="")``: an engine made with ``PFD_DB_PGBOUNCER`` set to
    ``setting`` ("" leaves it unset: detect); disposed after the test."""
    made: list[Engine] = []

    def make(url: str, setting: str = "", **overrides: Any) -> Engine:
        with pytest.MonkeyPatch.context() as patch:
            if setting:
                patch.setenv("PFD_DB_PGBOUNCER", setting)
            else:
                patch.delenv("PFD_DB_PGBOUNCER", raising=False)
            get_settings.cache_clear()
            made.append(make_engine(url, **overrides))
        get_settings.cache_clear()
        return made[-1]

    yield make
    for engine in made:
        engine.dispose()


def server_connections(pg_server: PostgresServer, name: str) -> int:
    """The server's client backends connected to database ``name`` now."""
    with pg_server.connect() as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND backend_type = 'client backend'",
            (name,),
        ).fetchone()
    return int(found[0]) if found else 0


class Sampler:
    """The most server connections seen on a database while the block runs."""

    def __init__(self, pg_server: PostgresServer, name: str) -> None:
        self.pg_server, self.name, self.most = pg_server, name, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, server_connections(self.pg_server, self.name))
            time.sleep(0.01)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# --- detection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "via_pgbouncer", "behind"),
    [("", True, True), ("", False, False), ("1", False, True), ("0", True, False)],
    ids=["detected", "direct-detected", "said-so", "said-not"],
)
def test_the_setting_or_else_the_probe_decides_on_prepared_statements(
    bounced, engines, setting, via_pgbouncer, behind
):
    engine = engines(bounced.through if via_pgbouncer else bounced.direct, setting)
    for _ in range(3):  # the first connection probes; the others follow it
        with engine.connect() as conn:
            assert behind_pgbouncer(conn) is behind
            threshold = conn.connection.driver_connection.prepare_threshold
            assert threshold == (None if behind else 5)
            assert through_pgbouncer(conn) is via_pgbouncer  # asked of the server now
            assert not conn.in_transaction()
    assert behind_pgbouncer(engine) is behind


def test_sqlite_is_never_behind_pgbouncer(tmp_path, engines):
    engine = engines(f"sqlite:///{tmp_path / 'x.db'}", "1")
    assert behind_pgbouncer(engine) is False
    refuse_migrations(engine)  # nothing to refuse
    with engine.connect() as conn:
        assert through_pgbouncer(conn) is False
        conn.execute(text("SELECT 1"))


# --- the store's everyday work: 8 threads, 2 server connections ------------------------


def everyday_work(engine: Engine, index: int) -> None:
    """One worker's rounds of the store's core paths, each step in a transaction of
    its own (what a web worker or a job does)."""
    sessions = sessionmaker(engine, expire_on_commit=False)
    readers = sessionmaker(read_only(engine), expire_on_commit=False)
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    for round_ in range(ROUNDS):
        tag = f"w{index}r{round_}"
        with sessions.begin() as session:
            audit.acting_as(session, 1)
            user = users.create_user(session, f"user-{tag}", f"{tag}@example.com", PASSWORD)
            notifications.add_default_preferences(session, user)
            key, record = api_keys.issue(session, user, f"key-{tag}", ["read", "write"])
            experiment = experiments.create_experiment(
                session, f"exp-{tag}", "cnn1d", 1, {"lr": 0.01}, notes="gearbox vibration"
            )
            experiments.start(session, experiment)
        with pytest.raises(AuthenticationFailed), sessions.begin() as session:
            users.authenticate(session, f"user-{tag}", "a wrong passphrase", ip="10.0.0.1")
        with sessions.begin() as session:  # the refusal above was recorded all the same
            users.authenticate(session, f"user-{tag}", PASSWORD, ip="10.0.0.1")
            assert api_keys.verify(session, key).id == record.id
            curves.log_epochs(session, experiment.id, [epoch(n) for n in range(EPOCHS)])
            request_log.record_requests(session, requests(record.id, hour))
            audit.record(session, user.id, "bouncer.round", details={"round": round_})
            notifications.emit(session, "training.complete", [user.id], {"run": tag})
        with readers() as session:
            assert len(curves.curve(session, experiment.id)) == EPOCHS
            assert curves.curve_columns(session, experiment.id)
            assert store_search.search(session, "gearbox").total >= 1
            assert audit.entries(session, actor=user.id)
        with sessions.begin() as session:
            claimed = deliveries.claim(session, "email", f"mailer-{index}", limit=5)
            for delivery in claimed:
                deliveries.succeed(session, delivery, f"mailer-{index}")
            experiments.finish(session, experiment.id, {"accuracy": 0.9})
        if index < 2:  # two writers of the same rollup periods at once
            with sessions.begin() as session:
                rollups.rollup(
                    session, "hourly", hour - timedelta(hours=2), hour + timedelta(hours=1)
                )
        if index == 0:
            retention.clean(engine, older_than=timedelta(days=30), batch_size=7)


def requests(key_id: int, hour: Any) -> list[dict[str, Any]]:
    """20 request-log rows of this hour and 5 a hundred days old (for ``clean``)."""
    recent = [
        {"endpoint": "/api/v1/experiments", "method": "GET", "status_code": 200,
         "response_time_ms": 3.5 + n, "request_time": hour + timedelta(seconds=n),
         "api_key_id": key_id}
        for n in range(20)
    ]  # fmt: skip
    old = [
        {"endpoint": "/api/v1/old", "method": "GET", "status_code": 200,
         "response_time_ms": 1.0, "request_time": hour - timedelta(days=100, seconds=n)}
        for n in range(5)
    ]  # fmt: skip
    return recent + old


def test_the_store_core_paths_run_through_pgbouncer_on_8_threads(
    bounced, pgbouncer, pg_server, engines
):
    engine = engines(bounced.through)
    with Sampler(pg_server, bounced.name) as servers:
        _, errors = run_together(THREADS, lambda index: everyday_work(engine, index))
    assert errors == [], f"{len(errors)} errors, the first: {errors[0]!r}"
    assert 1 <= servers.most <= SERVER_CONNECTIONS
    assert pgbouncer.servers(bounced.name) <= SERVER_CONNECTIONS
    assert behind_pgbouncer(engine)
    done = THREADS * ROUNDS
    with engine.connect() as conn:
        count = lambda model, *where: conn.scalar(  # noqa: E731
            select(func.count()).select_from(model).where(*where)
        )
        assert count(User) == done + 1
        assert count(Experiment, Experiment.status == "completed") == done
        assert count(TrainingRun) == done * EPOCHS
        assert count(EmailLog, EmailLog.status == "sent") == done
        assert count(SystemLog, SystemLog.action == "bouncer.round") == done
        assert count(LoginHistory, LoginHistory.success.is_(False)) == done
        assert count(LoginHistory, LoginHistory.success.is_(True)) == done
        old = utcnow() - timedelta(days=30)
        assert count(APIRequestLog, APIRequestLog.request_time < old) == 0  # cleaned
        assert count(APIRequestLog) == done * 20


def test_the_server_routes_run_through_pgbouncer(bounced, engines, plaintexts):
    from starlette.testclient import TestClient

    from pfd_db.api import create_app

    engine = engines(bounced.through, pool_size=THREADS, max_overflow=0)
    with sessionmaker(engine, expire_on_commit=False).begin() as session:
        owner = users.create_user(session, "route-owner", "owner@example.com", PASSWORD, "operator")
        key, _ = api_keys.issue(session, owner, "routes", ["read", "write"])
        made = experiments.create_experiment(session, "routed", "cnn1d", 1, {}, created_by=owner)
    plaintexts.append(key)
    statuses: list[int] = []
    calls = 6
    with TestClient(create_app(engine=engine), raise_server_exceptions=False) as client:
        headers = {"Authorization": f"Bearer {key}"}

        def work(index: int) -> None:
            for n in range(calls):
                body = {"epochs": [epoch(index * calls + n)]}
                written = client.post(f"/api/v1/experiments/{made.id}/epochs", json=body,
                                      headers=headers)  # fmt: skip
                listed = client.get("/api/v1/experiments", headers=headers)
                found = client.get(f"/api/v1/experiments/{made.id}", headers=headers)
                statuses.extend(r.status_code for r in (written, listed, found))

        _, errors = run_together(THREADS, work)
    assert errors == []
    assert len(statuses) == THREADS * calls * 3
    assert {code for code in statuses} <= {200, 201}, sorted(set(statuses))
    with engine.connect() as conn:  # the request log was flushed through PgBouncer too
        logged = conn.scalar(
            select(func.count()).where(APIRequestLog.endpoint.like("/api/v1/experiments%"))
        )
        assert logged >= len(statuses)
        runs = conn.scalar(select(func.count()).where(TrainingRun.experiment_id == made.id))
        assert runs == THREADS * calls


# --- what fails without the setting, and what is refused --------------------------------


@pytest.mark.parametrize(("setting", "fails"), [("0", True), ("", False), ("1", False)])
def test_prepared_statements_fail_through_pgbouncer_unless_turned_off(
    bounced, engines, setting, fails
):
    engine = engines(bounced.through, setting, pool_size=THREADS, max_overflow=0)
    query = select(User.id).where(User.username == "admin")

    def work(index: int) -> None:
        for _ in range(40):  # past psycopg's prepare_threshold (5) on every connection
            with engine.begin() as conn:
                assert conn.scalar(query) == 1

    _, errors = run_together(THREADS, work)
    if not fails:
        assert errors == []
        return
    assert errors, "PgBouncer let prepared statements through: it is not pooling transactions"
    assert all(PREPARED_FAILURE.search(str(error)) for error in errors), errors[0]


@pytest.mark.parametrize(
    "statement",
    [
        "SET statement_timeout = 0",
        "set search_path TO public",
        "SET SESSION lock_timeout = '1s'",
        "/* a comment */ SET TIME ZONE 'UTC'",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "SET ROLE postgres",
        "RESET ALL",
        "DISCARD ALL",
        "LISTEN pfd_events",
        "SELECT pg_advisory_lock(42)",
        "SELECT pg_try_advisory_lock_shared(1, 2)",
        "SELECT set_config('jit', 'off', false)",
        "CREATE TEMP TABLE scratch (id int)",
        "PREPARE pick AS SELECT 1",
    ],
)
def test_statements_that_leave_session_state_are_refused_through_pgbouncer(
    bounced, engines, statement
):
    assert leaves_session_state(statement)
    engine = engines(bounced.through)
    with engine.connect() as conn:
        with pytest.raises(ThroughPgBouncer, match="outlive its transaction"):
            conn.execute(text(statement))
        conn.rollback()
        assert conn.execute(text("SELECT 1")).scalar() == 1  # refused before it was sent


@pytest.mark.parametrize(
    "statement",
    [
        "SET LOCAL statement_timeout = '5s'",
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "SET CONSTRAINTS ALL DEFERRED",
        "SELECT set_config('jit', 'off', true)",
        "SELECT pg_advisory_xact_lock(42)",
        "CREATE TEMP TABLE scratch (id int) ON COMMIT DROP",
        "UPDATE users SET is_active = true WHERE id = 0",
        "SAVEPOINT one",
    ],
)
def test_statements_kept_to_their_transaction_run_through_pgbouncer(bounced, engines, statement):
    assert leaves_session_state(statement) is None
    with engines(bounced.through).begin() as conn:
        conn.execute(text(statement))


def test_src_sends_no_statement_that_leaves_session_state():
    """Every string in the package but docstrings (and but the migrations, which
    never run through PgBouncer, and the module that lists the refused statements)
    is kept to its transaction if it is SQL."""
    found = [
        f"{path.relative_to(SRC)}:{line}: {left}"
        for path in sorted(SRC.rglob("*.py"))
        if "versions" not in path.parts and path.name != "pgbouncer.py"
        for line, string in strings(ast.parse(path.read_text()))
        if (left := leaves_session_state(string))
    ]
    assert found == []


def strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """The line and text of each string constant in ``tree`` but its docstrings."""
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, documented) and node.body and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node.lineno, node.value


def migrated_to(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return migrations.state(engine).current
    finally:
        engine.dispose()


@pytest.fixture
def empty_database(pg_server: PostgresServer, pgbouncer: PgBouncer) -> Iterator[Bounced]:
    name = f"pfd_bouncer_empty_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(name)
    try:
        yield Bounced(name, pg_server.url(name), pgbouncer.url(name, URL_PASSWORD))
    finally:
        pg_server.drop_database(name)


@pytest.mark.parametrize("args", [("init",), ("migrate",), ("migrate", "--to", "0001")])
def test_migrations_refuse_to_run_through_pgbouncer(empty_database, pg_server, pgbouncer, args):
    result = pfd_db(*args, "--url", empty_database.through)
    name = empty_database.name
    line = assert_refused(
        result,
        f"migrations cannot run through PgBouncer (postgresql+psycopg://postgres:***@127.0.0.1:"
        f"{pgbouncer.port}/{name})",
        f"at the PostgreSQL server itself (e.g. postgresql+psycopg://postgres:***@/{name}"
        f"?host={pg_server.sockdir}, as PgBouncer reaches it)",
    )
    assert URL_PASSWORD not in result.output + line
    assert migrated_to(empty_database.direct) is None
    engine = make_engine(empty_database.direct)
    try:
        with engine.connect() as conn:
            assert (
                conn.scalar(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")) == 0
            )
    finally:
        engine.dispose()


def test_downgrade_refuses_to_run_through_pgbouncer_before_asking(bounced, pgbouncer):
    head = migrated_to(bounced.direct)
    result = pfd_db("downgrade", "-1", "--url", pgbouncer.url(bounced.name, URL_PASSWORD))
    assert_refused(result, "migrations cannot run through PgBouncer", "postgres:***@")
    assert URL_PASSWORD not in result.output
    assert migrated_to(bounced.direct) == head


def test_the_migration_api_and_alembic_refuse_pgbouncer_too(empty_database, engines):
    engine = engines(empty_database.through)
    with pytest.raises(ThroughPgBouncer, match="cannot run through PgBouncer") as refused:
        migrations.upgrade(engine)
    assert URL_PASSWORD not in str(refused.value)
    with pytest.raises(ThroughPgBouncer):  # the stock `alembic` command's way in
        command.upgrade(migrations.alembic_config(empty_database.through), "head")
    assert migrated_to(empty_database.direct) is None
    refuse_migrations(engines(empty_database.direct))  # the server itself: no refusal


def test_backup_and_restore_refuse_pgbouncer_and_copy_reads_through_it(
    bounced, empty_database, pgbouncer, tmp_path
):
    archive, copied = tmp_path / "pfd.dump", tmp_path / "copy.db"
    through = pgbouncer.url(bounced.name, URL_PASSWORD)
    refused = pfd_db("backup", str(archive), "--url", through)
    assert_refused(refused, "pg_dump cannot run through PgBouncer", "postgres:***@127.0.0.1")
    assert not archive.exists() and URL_PASSWORD not in refused.output
    assert pfd_db("backup", str(archive), "--url", bounced.direct).exit_code == 0
    restored = pfd_db("restore", str(archive), "--url", empty_database.through)
    assert_refused(restored, "pg_restore cannot run through PgBouncer")
    into = pfd_db("copy", "--url", bounced.direct, "--to", empty_database.through)
    assert_refused(into, "migrations cannot run through PgBouncer")  # the target's, first
    assert migrated_to(empty_database.direct) is None
    # A whole-database read is one transaction: it works through PgBouncer.
    done = pfd_db("copy", "--url", through, "--to", f"sqlite:///{copied}")
    assert done.exit_code == 0, done.output
    engine = make_engine(f"sqlite:///{copied}")
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(User.username).where(User.id == 1)) == "admin"
    finally:
        engine.dispose()


def test_status_says_when_the_url_leads_through_pgbouncer(bounced, pgbouncer):
    through = json.loads(pfd_db("status", "--json", "--url", pgbouncer.url(bounced.name)).stdout)
    direct = json.loads(pfd_db("status", "--json", "--url", bounced.direct).stdout)
    assert (through["pgbouncer"], direct["pgbouncer"]) == (True, False)
    assert through["tables"] == direct["tables"]
    assert "through PgBouncer" in pfd_db("status", "--url", pgbouncer.url(bounced.name)).output
