"""Transactions: a session that reads holds no lock, writers queue instead of failing,
read-modify-writes that state their intent lose no update; on a SQLite file and on
PostgreSQL, with real threads and real processes."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.engine import make_engine, read_only
from pfd_db.errors import AuthenticationFailed, ReadOnlySession
from pfd_db.models import LoginHistory, SystemLog, User
from pfd_db.store.identity import users
from pfd_db.store.writes import take_write_lock
from pfd_db.transactions import begin_write, first_word, writes
from probes import run_together

COUNTER = Table(
    "counter", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer)
)
PROCESSES = 4
BUMPS = 25
PASSWORD = "correct-horse-battery-staple"
WRONG = "not-the-right-password"


# --- which statements write ------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        "  /* a note */ select * from t",
        "-- a note\nSELECT 1",
        "(SELECT 1) UNION (SELECT 2)",
        "WITH x AS (SELECT 1 AS updated_at) SELECT * FROM x",
        "VALUES (1)",
        "EXPLAIN QUERY PLAN SELECT 1",
        "PRAGMA foreign_keys",
        "PRAGMA table_info(users)",
        "BEGIN",
        "COMMIT",
        "ROLLBACK TO SAVEPOINT sa_savepoint_1",
        "SAVEPOINT sa_savepoint_1",
        "RELEASE SAVEPOINT sa_savepoint_1",
        "SET LOCAL statement_timeout = 1000",
        "SHOW server_version",
    ],
)
def test_reads_and_session_control_are_not_writes(statement):
    assert writes(statement) is False


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO t VALUES (1)",
        "update t set n = 1",
        "DELETE FROM t",
        "REPLACE INTO t VALUES (1)",
        "  -- a note\n  DELETE FROM t",
        "/* a */ /* b */ insert into t values (1)",
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
        "CREATE TABLE t (n INTEGER)",
        "ALTER TABLE t ADD COLUMN m INTEGER",
        "DROP TABLE t",
        "TRUNCATE t",
        "PRAGMA defer_foreign_keys = ON",
        "VACUUM",
        "ANALYZE",
        "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
    ],
)
def test_data_and_schema_changes_are_writes(statement):
    assert writes(statement) is True


def test_the_first_word_skips_comments_and_parentheses():
    assert first_word(" /* x */ -- y\n ((select 1))") == "SELECT"
    assert first_word("") == ""


# --- a session that reads holds no lock ------------------------------------------------


@pytest.fixture
def impatient_writer(db_url):
    """An engine whose SQLite writers do not wait at all for the write lock: a write
    through it fails at once if any other session holds that lock."""
    engine = make_engine(db_url, sqlite_busy_timeout_ms=0)
    yield engine
    engine.dispose()


def write_log(engine, action: str) -> None:
    with Session(engine) as session:
        session.add(SystemLog(action=action, status="success"))
        session.commit()


def stored_actions(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(SystemLog.action).order_by(SystemLog.id)))


def test_a_session_that_has_read_and_stays_open_does_not_hold_up_a_writer(
    engine, db, impatient_writer
):
    write_log(engine, "before")
    reader = Session(engine)
    try:
        assert reader.scalars(select(SystemLog.action)).all() == ["before"]
        # the reader stays open; a writer that cannot wait still gets through
        _, errors = run_together(1, lambda _: write_log(impatient_writer, "while open"))
        assert errors == []
        assert reader.scalars(select(SystemLog.action).order_by(SystemLog.id)).all() == [
            "before",
            "while open",
        ]
    finally:
        reader.close()


def test_a_session_that_read_before_another_commit_can_still_write(engine, db):
    reader = Session(engine)
    try:
        assert reader.scalars(select(SystemLog.action)).all() == []
        write_log(engine, "theirs")  # commits after the reader's read
        reader.add(SystemLog(action="mine", status="success"))
        reader.commit()  # no "database is locked" from upgrading a stale read
    finally:
        reader.close()
    assert stored_actions(engine) == ["theirs", "mine"]


def test_writers_queue_for_the_lock_instead_of_failing(engine, db):
    first = Session(engine)
    second_started = threading.Event()
    errors: list[BaseException] = []

    def second_writer() -> None:
        second_started.set()
        try:
            write_log(engine, "second")  # waits for the first to commit
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    second = threading.Thread(target=second_writer)
    try:
        first.add(SystemLog(action="first", status="success"))
        first.flush()  # the first writer holds the lock from here
        second.start()
        second_started.wait()
        threading.Event().wait(0.2)  # let the second writer reach the lock
        first.commit()
    finally:
        second.join()
        first.close()
    assert errors == []
    assert sorted(stored_actions(engine)) == ["first", "second"]


def test_on_sqlite_only_the_first_write_begins_a_transaction(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'begin.db'}")
    COUNTER.metadata.create_all(engine)
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            conn.execute(select(COUNTER.c.n)).all()
            assert driver.in_transaction is False  # a read holds nothing
            conn.execute(insert(COUNTER).values(n=1))
            assert driver.in_transaction is True  # the write took the lock
            conn.commit()
            assert driver.in_transaction is False
            begin_write(conn)
            assert driver.in_transaction is True  # the intent, stated before reading
            conn.rollback()
    finally:
        engine.dispose()


def test_on_sqlite_a_savepoint_takes_the_write_lock_so_its_release_commits_nothing(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'savepoint.db'}")
    COUNTER.metadata.create_all(engine)
    try:
        with Session(engine) as session:
            with session.begin_nested():
                session.execute(insert(COUNTER).values(n=1))
            session.rollback()  # undoes the savepoint's work too
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(COUNTER)) == 0
    finally:
        engine.dispose()


# --- read-modify-write loses no update ---------------------------------------------------


def bump(session: Session, how: str) -> None:
    """Add one to the counter by reading it and writing it back, stating the write
    intent ``how``: "for_update" or "take_write_lock" (SQLite only)."""
    query = select(COUNTER.c.n).where(COUNTER.c.id == 1)
    if how == "take_write_lock":
        take_write_lock(session)
    else:
        query = query.with_for_update()
    n = session.execute(query).scalar_one()
    session.execute(COUNTER.update().where(COUNTER.c.id == 1).values(n=n + 1))


def bump_in_process(url: str, how: str, barrier, results) -> None:
    """``BUMPS`` committed bumps in a process of its own; "ok" or the error to ``results``."""
    engine = make_engine(url)
    try:
        barrier.wait()
        for _ in range(BUMPS):
            with Session(engine) as session:
                bump(session, how)
                session.commit()
        results.put("ok")
    except BaseException as exc:
        results.put(repr(exc))
    finally:
        engine.dispose()


def bump_in_processes(url: str, how: str) -> tuple[list[str], int]:
    """The workers' outcomes and the counter after ``PROCESSES`` of them bumped it."""
    engine = make_engine(url)
    try:
        COUNTER.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(COUNTER).values(id=1, n=0))
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(PROCESSES), context.Queue()
        workers = [
            context.Process(target=bump_in_process, args=(url, how, barrier, results))
            for _ in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=300) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
        with engine.connect() as conn:
            return outcomes, conn.scalar(select(COUNTER.c.n))
    finally:
        engine.dispose()


def test_processes_reading_for_update_lose_no_increment(fresh_url):
    outcomes, total = bump_in_processes(fresh_url, "for_update")
    assert outcomes == ["ok"] * PROCESSES
    assert total == PROCESSES * BUMPS


def test_sqlite_processes_that_take_the_write_lock_first_lose_no_increment(tmp_path: Path):
    outcomes, total = bump_in_processes(f"sqlite:///{tmp_path / 'bumps.db'}", "take_write_lock")
    assert outcomes == ["ok"] * PROCESSES
    assert total == PROCESSES * BUMPS


@pytest.fixture
def high_lockout_threshold(monkeypatch):
    monkeypatch.setenv("PFD_DB_LOCKOUT_THRESHOLD", "1000")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_concurrent_failed_logins_are_all_counted(engine, db, plaintexts, high_lockout_threshold):
    plaintexts.extend([PASSWORD, WRONG])
    users.create_user(db, "ada", "ada@example.com", PASSWORD)
    db.commit()
    threads, attempts = 6, 3

    def fail_to_log_in(_: int) -> None:
        for _ in range(attempts):
            with Session(engine) as session:
                with pytest.raises(AuthenticationFailed):
                    users.authenticate(session, "ada", WRONG)
                session.commit()

    _, errors = run_together(threads, fail_to_log_in)
    assert errors == []
    with Session(engine) as session:
        ada = session.scalars(select(User).where(User.username == "ada")).one()
        recorded = session.scalar(select(func.count()).select_from(LoginHistory))
    assert recorded == threads * attempts
    assert ada.failed_login_count == threads * attempts


def test_on_sqlite_autocommit_connections_commit_each_write_at_once(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'autocommit.db'}")
    COUNTER.metadata.create_all(engine)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(insert(COUNTER).values(n=1))
            assert conn.connection.driver_connection.in_transaction is False
            with engine.connect() as other:
                assert other.scalar(select(COUNTER.c.n)) == 1  # already committed
    finally:
        engine.dispose()


def test_an_in_memory_database_refuses_read_only_writes_and_takes_the_others():
    engine = make_engine("sqlite://")
    COUNTER.metadata.create_all(engine)
    try:
        with Session(read_only(engine)) as reader, pytest.raises(ReadOnlySession):
            reader.execute(insert(COUNTER).values(n=1))
        with Session(engine) as writer:
            writer.execute(insert(COUNTER).values(n=2))
            writer.commit()
        with engine.connect() as conn:
            assert conn.scalars(select(COUNTER.c.n)).all() == [2]
    finally:
        engine.dispose()
