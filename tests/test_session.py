"""Sessions: lazily bound, committed or rolled back by the helpers, thread-scoped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, text, update

from pfd_db import session as sessions
from pfd_db.engine import make_engine, pool_status
from pfd_db.errors import ReadOnlySession
from pfd_db.models import SystemLog
from pfd_db.store.writes import take_write_lock


@pytest.fixture
def configured(engine, db):
    """SessionLocal and friends pointed at the test database for one test."""
    sessions.configure(engine=engine)
    yield engine
    sessions.SessionScoped.remove()
    sessions.reset()


def count_logs(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(SystemLog))


def test_get_db_session_commits_when_the_block_succeeds(configured):
    with sessions.get_db_session() as session:
        session.add(SystemLog(action="train", status="success"))
    assert count_logs(configured) == 1


def test_get_db_session_rolls_back_and_reraises_on_error(configured):
    with pytest.raises(RuntimeError, match="boom"), sessions.get_db_session() as session:
        session.add(SystemLog(action="train", status="success"))
        session.flush()
        raise RuntimeError("boom")
    assert count_logs(configured) == 0


def test_get_db_commits_after_the_request(configured):
    requests = sessions.get_db()
    session = next(requests)
    session.add(SystemLog(action="api", status="success"))
    with pytest.raises(StopIteration):
        next(requests)
    assert count_logs(configured) == 1


def test_get_db_rolls_back_when_the_request_fails(configured):
    requests = sessions.get_db()
    session = next(requests)
    session.add(SystemLog(action="api", status="success"))
    session.flush()
    with pytest.raises(ValueError):
        requests.throw(ValueError("bad request"))
    assert count_logs(configured) == 0


def test_objects_stay_readable_after_commit(configured):
    with sessions.get_db_session() as session:
        log = SystemLog(action="train", status="success")
        session.add(log)
    assert log.action == "train" and log.id is not None  # no DetachedInstanceError


def test_session_scoped_gives_one_session_per_thread(configured):
    mine = sessions.SessionScoped()
    assert sessions.SessionScoped() is mine
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(sessions.SessionScoped()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine


def test_sessions_have_no_autoflush(configured):
    assert sessions.SessionLocal().autoflush is False


def run_python(code: str, cwd: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PFD_DB_", "DATABASE_URL"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_importing_pfd_db_creates_no_engine_and_no_file(tmp_path):
    out = run_python(
        "import pfd_db, pfd_db.models, pfd_db.session as s; print(s._engine is None)", tmp_path
    )
    assert out == "True"
    assert list(tmp_path.iterdir()) == []


def test_the_engine_is_made_from_the_settings_on_first_use(tmp_path):
    target = tmp_path / "lazy.db"
    out = run_python(
        "from sqlalchemy import text; from pfd_db import SessionLocal\n"
        "with SessionLocal() as s: print(s.execute(text('select 7')).scalar())",
        tmp_path,
        PFD_DB_URL=f"sqlite:///{target}",
    )
    assert out == "7"
    assert target.exists()


def test_the_default_database_is_pfd_db_in_the_working_directory(tmp_path):
    out = run_python(
        "from sqlalchemy import text; from pfd_db import get_engine\n"
        "with get_engine().connect() as c: c.execute(text('select 1'))\n"
        "print(get_engine().url.database)",
        tmp_path,
    )
    assert out == "./pfd.db"
    assert (tmp_path / "pfd.db").exists()


def test_a_read_only_session_reads_beside_an_open_write_transaction(configured):
    with sessions.get_db_session() as session:
        session.add(SystemLog(action="seen", status="success"))
    writer = configured.connect()
    writer.begin()
    writer.execute(SystemLog.__table__.insert().values(action="pending", status="success"))
    try:
        with sessions.get_db_session(read_only=True) as reader:
            actions = reader.scalars(select(SystemLog.action)).all()
        assert actions == ["seen"]  # read at once, not after the writer's busy timeout
    finally:
        writer.rollback()
        writer.close()


# --- read-only sessions refuse every write, on both dialects ------------------------------


def test_a_read_only_session_refuses_an_orm_flush_and_writes_nothing(configured):
    with (
        pytest.raises(ReadOnlySession, match="read-only"),
        sessions.get_db_session(read_only=True) as session,
    ):
        session.add(SystemLog(action="sneaky", status="success"))
        session.flush()
    assert count_logs(configured) == 0


def test_a_read_only_session_refuses_changes_and_deletes_of_loaded_objects(configured):
    with sessions.get_db_session() as session:
        session.add(SystemLog(action="kept", status="success"))
    with sessions.get_db_session(read_only=True) as session:
        log = session.scalars(select(SystemLog)).one()
        log.action = "changed"
        with pytest.raises(ReadOnlySession, match="1 changed"):
            session.flush()
        session.rollback()
        session.delete(log)
        with pytest.raises(ReadOnlySession, match="1 deleted"):
            session.flush()
    assert [a for (a,) in stored(configured)] == ["kept"]


def stored(engine):
    with engine.connect() as conn:
        return conn.execute(select(SystemLog.action)).all()


@pytest.mark.parametrize(
    "statement",
    [
        insert(SystemLog).values(action="sneaky", status="success"),
        update(SystemLog).values(action="changed"),
        delete(SystemLog),
        text("DELETE FROM system_logs"),
        text("/* hidden? */ UPDATE system_logs SET action = 'changed'"),
        select(SystemLog.id).with_for_update(),
    ],
    ids=["insert", "update", "delete", "text-delete", "commented-update", "for-update"],
)
def test_a_read_only_session_refuses_core_writes_and_write_intent(configured, statement):
    with sessions.get_db_session() as session:
        session.add(SystemLog(action="kept", status="success"))
    with (
        pytest.raises(ReadOnlySession, match="refused"),
        sessions.get_db_session(read_only=True) as session,
    ):
        session.execute(statement)
    assert [a for (a,) in stored(configured)] == ["kept"]


def test_a_write_the_database_refuses_in_a_read_only_session_is_read_only_session(
    configured, dialect
):
    """Past the statement check (which takes these for reads), the database itself
    refuses: SQLite's query_only, PostgreSQL's READ ONLY transaction."""
    sneaky = {
        "sqlite": "PRAGMA user_version(5)",
        "postgresql": "SELECT nextval('system_logs_id_seq')",
    }[dialect]
    with (
        pytest.raises(ReadOnlySession, match="the database refused a write"),
        sessions.get_db_session(read_only=True) as session,
    ):
        session.execute(text(sneaky))
    first = SystemLog(action="first", status="success")
    with sessions.get_db_session() as session:
        session.add(first)
    assert first.id == 1  # the id sequence did not move
    if dialect == "sqlite":
        with configured.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 0


def test_a_read_only_session_still_reads_and_take_write_lock_does_nothing_in_it(configured):
    with sessions.get_db_session() as session:
        session.add(SystemLog(action="seen", status="success"))
    with sessions.get_db_session(read_only=True) as session:
        take_write_lock(session)
        assert session.scalars(select(SystemLog.action)).all() == ["seen"]


def test_a_connection_used_read_only_writes_normally_afterwards(db_url, db):
    engine = make_engine(db_url, pool_size=1, max_overflow=0)  # one connection, reused
    try:
        sessions.configure(engine=engine)
        with sessions.get_db_session(read_only=True) as session:
            assert session.scalars(select(SystemLog)).all() == []
        with sessions.get_db_session() as session:
            session.add(SystemLog(action="after", status="success"))
        with sessions.get_db_session(read_only=True) as session:
            assert session.scalars(select(SystemLog.action)).all() == ["after"]
        assert pool_status(engine)["connects"] == 1
    finally:
        sessions.reset()
        engine.dispose()
