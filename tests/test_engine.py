"""The engine factory: pool settings, SQLite pragmas and locking, slow-query log, pool metrics."""

from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select, text
from sqlalchemy.exc import DBAPIError

from pfd_db.engine import make_engine, pool_status
from pfd_db.errors import ConfigurationError, DatabaseUnavailable


@pytest.fixture
def private_engine(db_url):
    made = []

    def make(**overrides):
        made.append(make_engine(db_url, **overrides))
        return made[-1]

    yield make
    for engine in made:
        engine.dispose()


def test_slow_statements_are_logged_without_their_parameters(private_engine, caplog):
    engine = private_engine(slow_query_seconds=0)
    with caplog.at_level(logging.WARNING, logger="pfd_db.engine"), engine.connect() as conn:
        conn.execute(text("SELECT :secret AS s"), {"secret": "hunter2-parameter"})
    messages = [r.getMessage() for r in caplog.records if "slow query" in r.getMessage()]
    assert any("SELECT" in m and "AS s" in m for m in messages)
    assert all("hunter2-parameter" not in m for m in messages)
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_slow_statement_text_is_cut_to_200_characters(private_engine, caplog):
    engine = private_engine(slow_query_seconds=0)
    long_select = "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(200))
    with caplog.at_level(logging.WARNING, logger="pfd_db.engine"), engine.connect() as conn:
        conn.execute(text(long_select))
    [message] = [r.getMessage() for r in caplog.records if "AS c0" in r.getMessage()]
    assert len(message.split(": ", 1)[1]) == 200


def test_failed_statements_leave_nothing_behind_on_the_connection(private_engine, caplog):
    engine = private_engine(slow_query_seconds=0)
    with caplog.at_level(logging.WARNING, logger="pfd_db.engine"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        kept = repr(conn.info)
        for _ in range(50):
            with pytest.raises(DBAPIError):
                conn.execute(text("SELECT * FROM no_such_table"))
            conn.rollback()
        conn.execute(text("SELECT 2 AS after_failures"))
        assert repr(conn.info) == kept
    assert any("after_failures" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if "no_such_table" in r.getMessage()]


def test_fast_statements_are_not_logged(private_engine, caplog):
    engine = private_engine(slow_query_seconds=60)
    with caplog.at_level(logging.WARNING, logger="pfd_db.engine"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert not [r for r in caplog.records if "slow query" in r.getMessage()]


def test_pool_status_counts_checkouts_and_connects(private_engine):
    engine = private_engine()
    for _ in range(3):
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    status = pool_status(engine)
    assert status["checkouts"] >= 3
    assert status["connects"] >= 1
    assert status["checked_out"] == 0
    with engine.connect():
        assert pool_status(engine)["checked_out"] == 1


def test_pool_status_counts_a_checkout_that_had_to_wait(private_engine):
    engine = private_engine(pool_size=1, max_overflow=0, pool_timeout=10)
    held = engine.connect()
    started = threading.Event()

    def second_checkout():
        started.set()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    waiter = threading.Thread(target=second_checkout)
    waiter.start()
    started.wait()
    while pool_status(engine)["checkout_waits"] == 0 and waiter.is_alive():
        threading.Event().wait(0.01)
    held.close()
    waiter.join()
    assert pool_status(engine)["checkout_waits"] == 1


def test_engines_get_the_configured_pool(dialect, private_engine):
    pool = private_engine().pool
    assert pool.size() == 30
    assert pool._max_overflow == 30
    assert pool.timeout() == 30
    assert pool._recycle == 3600
    assert pool._pre_ping is (dialect == "postgresql")  # a file needs no liveness probe


def test_overrides_reach_the_pool(private_engine):
    pool = private_engine(pool_size=7, max_overflow=3).pool
    assert pool.size() == 7 and pool._max_overflow == 3


def test_an_unknown_override_is_refused_by_name():
    with pytest.raises(ConfigurationError, match="unknown setting 'pool_sise'"):
        make_engine("sqlite://", pool_sise=3)
    with pytest.raises(ConfigurationError, match="unknown setting 'secret_key'"):
        make_engine("sqlite://", secret_key="not an engine setting")


@pytest.mark.parametrize(
    "override, named",
    [
        ({"pool_size": 0}, "pool_size"),
        ({"max_overflow": -1}, "max_overflow"),
        ({"pool_timeout": 0}, "pool_timeout"),
        ({"slow_query_seconds": float("nan")}, "slow_query_seconds"),
        ({"sqlite_busy_timeout_ms": "soon"}, "sqlite_busy_timeout_ms"),
        ({"echo": "maybe"}, "echo"),
    ],
)
def test_a_bad_override_value_is_refused_naming_the_setting(override, named):
    with pytest.raises(ConfigurationError, match=f"make_engine: {named}: "):
        make_engine("sqlite://", **override)


def test_override_values_are_read_as_the_settings_read_them(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'o.db'}", sqlite_busy_timeout_ms="2500")
    assert sqlite_pragma(engine, "busy_timeout") == 2500
    engine.dispose()


def test_a_bad_url_is_named_in_a_clear_error():
    with pytest.raises(DatabaseUnavailable, match="not a database URL"):
        make_engine("no-such-scheme-at-all")


def test_postgres_urls_use_psycopg_3():
    engine = make_engine("postgres://someone:pw@localhost/db")
    assert engine.dialect.driver == "psycopg"
    assert "pw" not in repr(engine.url)


# --- SQLite: pragmas on every connection, and writers that wait instead of failing ----------


def sqlite_pragma(engine, name: str):
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_pragmas_are_set_on_every_connection(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}", sqlite_busy_timeout_ms=12345)
    assert sqlite_pragma(engine, "foreign_keys") == 1
    assert sqlite_pragma(engine, "journal_mode") == "wal"
    assert sqlite_pragma(engine, "busy_timeout") == 12345
    assert sqlite_pragma(engine, "synchronous") == 1  # NORMAL
    engine.dispose()
    assert sqlite_pragma(engine, "foreign_keys") == 1  # a brand-new connection too


def test_in_memory_sqlite_shares_one_connection():
    engine = make_engine("sqlite://")
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True))
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1}, {"id": 2}])
    with engine.connect() as conn:
        assert conn.execute(select(table.c.id)).scalars().all() == [1, 2]
    assert sqlite_pragma(engine, "foreign_keys") == 1


def test_concurrent_sqlite_writers_wait_instead_of_failing(tmp_path):
    """Read-then-write transactions from four threads, each reading FOR UPDATE (the
    write intent, which takes SQLite's write lock before the read): none fails with
    "database is locked" and no increment is lost."""
    engine = make_engine(f"sqlite:///{tmp_path / 'race.db'}")
    counter = Table("counter", MetaData(), Column("n", Integer))
    counter.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(counter.insert().values(n=0))
    errors: list[BaseException] = []

    def bump(times: int) -> None:
        try:
            for _ in range(times):
                with engine.begin() as conn:
                    n = conn.execute(select(counter.c.n).with_for_update()).scalar_one()
                    conn.execute(counter.update().values(n=n + 1))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(50,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(select(counter.c.n)).scalar_one() == 200
