"""Sessions: lazily bound, committed or rolled back by the helpers, thread-scoped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pfd_db import session as sessions
from pfd_db.models import SystemLog


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


def test_a_read_only_session_commits_nothing(configured, dialect):
    from sqlalchemy.exc import DBAPIError

    if dialect == "postgresql":  # the server refuses the write outright
        with (
            pytest.raises(DBAPIError, match="read-only"),
            sessions.get_db_session(read_only=True) as session,
        ):
            session.add(SystemLog(action="sneaky", status="success"))
            session.flush()
    else:
        with sessions.get_db_session(read_only=True) as session:
            session.add(SystemLog(action="sneaky", status="success"))
            session.flush()
    assert count_logs(configured) == 0
