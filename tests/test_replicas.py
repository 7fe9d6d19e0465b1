"""Read replicas against a real streaming replica of the test server (PostgreSQL only).

The module's replica (tests/replica.py) is a hot standby cloned with
``pg_basebackup -R``; each test points the sessions at a database of the primary
and names that database on the replica in ``PFD_DB_REPLICA_URLS``. Which server
answered is told by ``pg_is_in_recovery()`` on the session's connection, or, for
the server's routes and the store, by data the replica shows only once it has
replayed it (replay paused meanwhile). The checks of the lag measure and the
settings at the end need no server.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from api_support import auth, issue_key
from pfd_db import migrations, replicas
from pfd_db import session as sessions
from pfd_db.config import get_settings
from pfd_db.engine import make_engine
from pfd_db.errors import ConfigurationError, ReadOnlySession
from pfd_db.models import SystemLog
from pfd_db.replicas import PrimaryPositions
from replica import StreamingReplica

RETRY = 1.0  # seconds a skipped replica is left alone in these tests (5 by default)
EXPERIMENTS = "/api/v1/experiments"


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def replica(pg_server) -> Iterator[StreamingReplica]:
    """A hot standby of the suite's server, for this module."""
    server = StreamingReplica(pg_server)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def database(pg_server, replica) -> Iterator[str]:
    """A database at head on the primary, replayed on the replica."""
    name = f"pfd_replica_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(name)
    engine = make_engine(pg_server.url(name))
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()
    replica.wait_for_replay()
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def routed(pg_server, replica, database, monkeypatch):
    """Sessions on the primary's database, the replica's in PFD_DB_REPLICA_URLS; a
    replica an earlier test left stopped or paused is brought back first."""
    if not replica.started:
        replica.restart()
    replica.resume_replay()
    replica.wait_for_replay()
    monkeypatch.setenv("PFD_DB_URL", pg_server.url(database))
    monkeypatch.setenv("PFD_DB_REPLICA_URLS", replica.url(database))
    monkeypatch.setattr(replicas, "RETRY_SECONDS", RETRY)
    get_settings.cache_clear()
    yield sessions.configure()
    sessions.reset()


@pytest.fixture(scope="module")
def api(pg_server, replica, database) -> Iterator[tuple[Any, str, int]]:
    """The server's app on the primary's database, running, with a key and a dataset."""
    from sqlalchemy.orm import Session
    from starlette.testclient import TestClient

    from pfd_db.api import create_app
    from pfd_db.store.ml import datasets

    engine = make_engine(pg_server.url(database))
    with Session(engine, expire_on_commit=False) as session:
        key = issue_key(session, [], ("read", "write"))
        dataset = datasets.register_dataset(session, "replicated", ["normal"], ["low"], "r.h5")
        session.commit()
    engine.dispose()
    app = create_app(url=pg_server.url(database))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key, dataset.id


def on_replica(session) -> bool:
    """Whether ``session``'s connection is to the standby."""
    return bool(session.scalar(select(func.pg_is_in_recovery())))


def read_side() -> bool:
    """Whether a read-only session reads from the replica (False: the primary)."""
    with sessions.get_db_session(read_only=True) as session:
        return on_replica(session)


def write_a_row() -> None:
    with sessions.get_db_session() as session:
        session.add(SystemLog(action="replica-test", status="success"))


def until(condition: Callable[[], bool], timeout: float) -> float:
    """Poll ``condition`` until it holds; the seconds it took."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - began


def reads_for(seconds: float) -> list[bool]:
    """:func:`read_side` every 0.1 s for ``seconds``."""
    sides, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        sides.append(read_side())
        time.sleep(0.1)
    return sides


def logged(caplog, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "pfd_db.replicas" and r.levelno == level
    ]


def set_max_lag(monkeypatch, seconds: float) -> None:
    monkeypatch.setenv("PFD_DB_REPLICA_MAX_LAG_SECONDS", str(seconds))
    get_settings.cache_clear()


# --- where sessions read --------------------------------------------------------


def test_read_only_sessions_read_from_the_replica(routed, replica):
    write_a_row()
    replica.wait_for_replay()
    with sessions.get_db_session(read_only=True) as session:
        assert on_replica(session)
        assert session.scalar(select(func.count()).where(SystemLog.action == "replica-test")) >= 1
        session.add(SystemLog(action="refused", status="success"))
        with pytest.raises(ReadOnlySession, match="flush of 1 new"):
            session.flush()  # refused before anything is sent, as on the primary
        session.expunge_all()
        with pytest.raises(ReadOnlySession, match="INSERT refused"):
            session.execute(insert(SystemLog).values(action="refused", status="success"))


def test_writes_and_the_reads_of_a_write_transaction_go_to_the_primary(routed, replica):
    replica.pause_replay()  # what the transaction wrote could not be read on the replica
    with sessions.get_db_session() as session:
        assert not on_replica(session)
        session.add(SystemLog(action="inside-a-write", status="success"))
        session.flush()
        assert session.scalar(select(func.count()).where(SystemLog.action == "inside-a-write"))
        assert not on_replica(session)
    with sessions.get_db_session(read_only=True) as session:
        assert on_replica(session)
        assert not session.scalar(
            select(func.count()).where(SystemLog.action == "inside-a-write")
        ), "the paused replica has not replayed the commit"


def test_store_reads_through_a_read_only_session_read_the_replica(routed, replica):
    from pfd_db.store.ml import datasets, experiments, search

    name = f"replicated{uuid.uuid4().hex[:8]}"
    replica.pause_replay()
    with sessions.get_db_session() as session:
        dataset = datasets.register_dataset(session, name, ["normal"], ["low"], "s.h5")
        experiments.create_experiment(session, name, "cnn1d", dataset, {"lr": 0.1})
    with sessions.get_db_session(read_only=True) as session:
        assert search.search(session, name).total == 0  # not replayed yet
    with sessions.get_db_session() as session:
        assert search.search(session, name).total == 1  # the primary has it
    replica.resume_replay()
    replica.wait_for_replay()
    with sessions.get_db_session(read_only=True) as session:
        assert on_replica(session)
        assert [hit.experiment.name for hit in search.search(session, name).rows] == [name]


def test_get_routes_read_from_the_replica_and_writes_go_to_the_primary(routed, replica, api):
    client, key, dataset_id = api
    body = {"name": f"run-{uuid.uuid4().hex[:8]}", "model_type": "cnn1d", "dataset": dataset_id}
    replica.pause_replay()
    made = client.post(EXPERIMENTS, json={**body, "config": {}}, headers=auth(key))
    assert made.status_code == 201, made.text
    ident = made.json()["id"]
    assert client.get(f"{EXPERIMENTS}/{ident}", headers=auth(key)).status_code == 404
    replica.resume_replay()
    replica.wait_for_replay()
    got = client.get(f"{EXPERIMENTS}/{ident}", headers=auth(key))
    assert got.status_code == 200, got.text
    assert got.json()["name"] == body["name"]


# --- lag and outages --------------------------------------------------------------


def test_a_replica_lagging_too_much_is_skipped_with_one_warning(
    routed, replica, monkeypatch, caplog
):
    set_max_lag(monkeypatch, 1)
    caplog.set_level(logging.INFO, logger="pfd_db.replicas")
    assert read_side()
    replica.pause_replay()
    assert replica.replay_state().startswith("replay pause")  # 'pause requested' or 'paused'
    write_a_row()
    assert until(lambda: not read_side(), timeout=15) >= 1.0  # only once it lags over 1 s
    assert not any(reads_for(2.5 * RETRY)), "a lagging replica is skipped until it catches up"
    [warning] = logged(caplog, logging.WARNING)
    assert "lags" in warning and "more than 1 s" in warning and "primary" in warning
    replica.resume_replay()
    until(read_side, timeout=15)
    assert len(logged(caplog, logging.WARNING)) == 1
    assert any("used again" in line for line in logged(caplog, logging.INFO))


def test_an_idle_primary_is_no_lag(routed, replica, monkeypatch, caplog):
    set_max_lag(monkeypatch, 1)
    caplog.set_level(logging.INFO, logger="pfd_db.replicas")
    write_a_row()
    replica.wait_for_replay()
    assert read_side()
    time.sleep(2.5)  # no write here: the last replayed commit gets older than the max lag
    assert read_side()
    [shown] = replicas.router_for(routed).status(routed)
    assert shown.in_use and shown.lag_seconds is not None and shown.lag_seconds < 1
    assert logged(caplog, logging.WARNING) == []


def test_a_replica_killed_midway_is_skipped_then_used_again(routed, replica, api, caplog):
    client, key, _ = api
    caplog.set_level(logging.INFO, logger="pfd_db.replicas")
    assert read_side()
    assert client.get(EXPERIMENTS, headers=auth(key)).status_code == 200
    replica.kill()
    try:
        assert [read_side() for _ in range(5)] == [False] * 5  # no error, the primary
        assert client.get(EXPERIMENTS, headers=auth(key)).status_code == 200
        time.sleep(RETRY + 0.1)
        assert not read_side()  # checked again: still down, and no second warning
        [warning] = logged(caplog, logging.WARNING)
        assert warning.startswith("read replica postgresql+psycopg://postgres@/")
        assert "skipped" in warning and "reads go to the primary" in warning
    finally:
        replica.restart()
    assert until(read_side, timeout=10 * RETRY) <= 3 * RETRY + 2
    assert client.get(EXPERIMENTS, headers=auth(key)).status_code == 200
    assert len(logged(caplog, logging.WARNING)) == 1
    assert any("used again" in line for line in logged(caplog, logging.INFO))


def test_status_shows_each_replica_and_its_lag(routed, replica, database, monkeypatch, caplog):
    down = f"postgresql://reader:sekret@/{database}?host=/nonexistent-replica-socket"
    monkeypatch.setenv("PFD_DB_REPLICA_URLS", f"{replica.url(database)},{down}")
    get_settings.cache_clear()
    shown = replicas.replica_status(routed)
    assert [entry["in_use"] for entry in shown] == [True, False]
    up, gone = shown
    assert up["reachable"] and up["problem"] is None and 0 <= up["lag_seconds"] < 1
    assert up["url"].startswith("postgresql+psycopg://postgres@/") and database in up["url"]
    assert not gone["reachable"] and gone["lag_seconds"] is None
    assert gone["problem"].startswith("unreachable: ")
    assert "sekret" not in str(shown) and gone["url"].startswith("postgresql+psycopg://reader:***@")
    caplog.set_level(logging.WARNING, logger="pfd_db.replicas")
    assert all(read_side() for _ in range(4))  # the one usable replica takes them all
    [warning] = logged(caplog, logging.WARNING)
    assert "reader:***@" in warning and "sekret" not in warning


def test_the_status_command_lists_each_replica_and_its_lag(routed, replica, database, pg_server):
    from cli_support import pfd_db

    down = f"postgresql://reader:sekret@/{database}?host=/nonexistent-replica-socket"
    env = {"PFD_DB_REPLICA_URLS": f"{replica.url(database)},{down}"}
    url = pg_server.url(database)
    document = json.loads(pfd_db("status", "--json", "--url", url, env=env).stdout)
    assert [entry["in_use"] for entry in document["replicas"]] == [True, False]
    assert set(document["replicas"][0]) == {"url", "reachable", "lag_seconds", "in_use", "problem"}
    assert 0 <= document["replicas"][0]["lag_seconds"] < 1
    text = pfd_db("status", "--url", url, env=env).output
    [up, gone] = [line for line in text.splitlines() if line.startswith("replica")]
    assert "in use, lag 0." in up and "skipped: unreachable" in gone
    assert "sekret" not in text and "reader:***@" in gone


def test_no_replica_configured_means_no_status_and_the_primary(routed, monkeypatch):
    monkeypatch.setenv("PFD_DB_REPLICA_URLS", "")
    get_settings.cache_clear()
    assert replicas.replica_status(routed) == []
    assert not read_side()


# --- no server needed -----------------------------------------------------------


def test_replicas_need_a_postgresql_primary(tmp_path, monkeypatch):
    monkeypatch.setenv("PFD_DB_REPLICA_URLS", "postgresql://reader@replica/pfd")
    get_settings.cache_clear()
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(ConfigurationError, match=r"PFD_DB_REPLICA_URLS.*sqlite"):
            replicas.router_for(engine)
    finally:
        engine.dispose()


def test_a_replica_that_replayed_the_primary_s_position_lags_nothing_however_old():
    positions = PrimaryPositions(keep_seconds=5)
    positions.note(1000, now=0.0)
    positions.note(1000, now=3600.0)  # idle for an hour
    assert positions.lag(1000, now=3600.0) == (0.0, True)


def test_lag_is_the_time_since_the_primary_first_had_what_the_replica_misses():
    positions = PrimaryPositions(keep_seconds=30)
    for now, position in ((0.0, 100), (2.0, 200), (4.0, 300), (6.0, 300)):
        positions.note(position, now)
    assert positions.lag(300, now=7.0) == (0.0, True)
    assert positions.lag(250, now=7.0) == (3.0, True)  # 300 was first seen at 4
    assert positions.lag(100, now=7.0) == (5.0, True)  # 200 at 2
    assert positions.lag(50, now=7.0) == (7.0, False)  # short of all: maybe more


def test_old_positions_go_but_the_newest_old_one_still_proves_a_long_lag():
    positions = PrimaryPositions(keep_seconds=10)
    for now, position in ((0.0, 100), (5.0, 200), (20.0, 300), (30.0, 400)):
        positions.note(position, now)
    assert positions.latest == 400
    lag, known = positions.lag(150, now=30.0)
    assert known and lag >= 10  # over any max lag below keep_seconds
    assert positions.lag(350, now=31.0) == (1.0, True)


def test_replica_urls_are_normalised(monkeypatch):
    monkeypatch.setenv("PFD_DB_REPLICA_URLS", " postgres://a@h1/db ,, postgresql://b@h2/db")
    get_settings.cache_clear()
    assert get_settings().replica_urls == (
        "postgresql+psycopg://a@h1/db,postgresql+psycopg://b@h2/db"
    )
    assert replicas.configured_urls() == [
        "postgresql+psycopg://a@h1/db",
        "postgresql+psycopg://b@h2/db",
    ]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("sqlite:///replica.db", "replica 2 (sqlite:///replica.db) is not a PostgreSQL URL"),
        ("mysql://u:sekret@h/db", "replica 2: unsupported database URL scheme mysql://"),
        ("postgresql://u:sekret@h:port/db", "replica 2: not a database URL"),
    ],
)
def test_other_replica_urls_are_refused_naming_them(monkeypatch, bad, named):
    monkeypatch.setenv("PFD_DB_REPLICA_URLS", f"postgresql://ok@h/db,{bad}")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="PFD_DB_REPLICA_URLS") as refused:
        get_settings()
    assert named in str(refused.value)
    assert "sekret" not in str(refused.value)
