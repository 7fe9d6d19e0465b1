"""Refused logins and 2FA codes are recorded, and counted, whatever the caller does
with its transaction, and a refusal commits nothing the caller has pending; on
both dialects, whether or not the caller had written before."""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from pfd_db import session as sessions
from pfd_db.engine import make_engine
from pfd_db.errors import AuthenticationFailed, RateLimited
from pfd_db.models import LoginHistory, User
from pfd_db.store.identity import twofactor, users

PASSWORD = "correct horse battery"
WRONG = "not the password at all"
IP = "203.0.113.9"


@pytest.fixture
def configured(engine, db):
    sessions.configure(engine=engine)
    yield engine
    sessions.reset()


@pytest.fixture
def impatient(db_url, db):
    """An engine on the test database that waits only seconds for a lock, so that
    a refusal waiting on its own caller fails instead of hanging."""
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":
        options = url.update_query_dict({"options": "-c lock_timeout=3000"})
        quick = make_engine(options.render_as_string(hide_password=False))
    else:
        quick = make_engine(db_url, sqlite_busy_timeout_ms=3000)
    yield quick
    quick.dispose()


@pytest.fixture
def ada(db, plaintexts):
    plaintexts.extend([PASSWORD, WRONG])
    user = users.create_user(db, "ada", "ada@example.com", PASSWORD)
    db.commit()
    return user


def failures(engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.scalars(
                select(LoginHistory.failure_reason)
                .where(LoginHistory.success.is_(False))
                .order_by(LoginHistory.id)
            )
        )


def stored_users(engine) -> list[tuple[str, str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(User.username, User.email, User.failed_login_count).order_by(User.username)
        )
        return [tuple(row) for row in rows]


def pending_user(name: str = "pending") -> User:
    return User(username=name, email=f"{name}@example.com")


def refuse_login(session: Session) -> None:
    with pytest.raises(AuthenticationFailed) as refused:
        users.authenticate(session, "ada", WRONG, ip=IP)
    assert refused.value.reason == "wrong password"


# --- the caller's transaction ------------------------------------------------------


@pytest.mark.parametrize("caller_wrote", [False, True], ids=["pending", "flushed"])
def test_a_refusal_commits_nothing_pending_and_outlasts_the_rollback(impatient, ada, caller_wrote):
    with Session(impatient, autoflush=False) as session:
        session.add(pending_user())
        if caller_wrote:
            session.flush()  # the caller now holds SQLite's write lock / a PostgreSQL xid
        refuse_login(session)
        session.rollback()
    assert stored_users(impatient) == [("ada", "ada@example.com", 1)]
    assert failures(impatient) == ["wrong password"]


def test_a_refusal_does_not_wait_on_the_users_row_the_caller_changed(impatient, ada):
    with Session(impatient) as session:
        session.get(User, ada.id).email = "ada@elsewhere.example.com"
        session.flush()  # the caller holds the row lock the failure count needs
        refuse_login(session)
        session.rollback()
    assert stored_users(impatient) == [("ada", "ada@example.com", 1)]
    assert failures(impatient) == ["wrong password"]


@pytest.mark.parametrize("caller_wrote", [False, True], ids=["read-only", "flushed"])
def test_inside_session_begin_the_next_statements_work(impatient, ada, caller_wrote):
    with Session(impatient, autoflush=False) as session, session.begin():
        session.add(pending_user())
        if caller_wrote:
            session.flush()
        refuse_login(session)
        session.flush()  # writing goes on
        assert session.scalar(select(func.count()).select_from(User)) == 2  # reading too
        session.add(pending_user("another"))
    names = [name for name, _, _ in stored_users(impatient)]
    assert names == ["ada", "another", "pending"]  # the caller committed its own changes
    assert failures(impatient) == ["wrong password"]  # recorded once


@pytest.mark.parametrize("caller_wrote", [False, True], ids=["read-only", "flushed"])
def test_a_session_begin_block_that_raises_keeps_only_the_failure(impatient, ada, caller_wrote):
    with (
        Session(impatient, autoflush=False) as session,
        pytest.raises(AuthenticationFailed),
        session.begin(),
    ):
        session.add(pending_user())
        if caller_wrote:
            session.flush()
        users.authenticate(session, "ada", WRONG, ip=IP)
    assert stored_users(impatient) == [("ada", "ada@example.com", 1)]
    assert failures(impatient) == ["wrong password"]


def test_a_refusal_inside_a_rolled_back_savepoint_is_recorded_once(impatient, ada):
    with Session(impatient) as session:
        session.add(pending_user())
        session.flush()
        with pytest.raises(AuthenticationFailed), session.begin_nested():
            users.authenticate(session, "ada", WRONG, ip=IP)
        session.commit()
    assert [name for name, _, _ in stored_users(impatient)] == ["ada", "pending"]
    assert stored_users(impatient)[0] == ("ada", "ada@example.com", 1)
    assert failures(impatient) == ["wrong password"]


def test_a_refusal_in_a_session_closed_without_commit_is_recorded(impatient, ada):
    session = Session(impatient)
    session.add(pending_user())
    session.flush()
    refuse_login(session)
    session.close()
    assert stored_users(impatient) == [("ada", "ada@example.com", 1)]
    assert failures(impatient) == ["wrong password"]


def test_a_caller_that_commits_after_a_refusal_records_it_once(impatient, ada):
    with Session(impatient) as session:
        session.add(pending_user())
        session.flush()
        refuse_login(session)
        refuse_login(session)
        session.commit()
    assert stored_users(impatient)[0] == ("ada", "ada@example.com", 2)
    assert failures(impatient) == ["wrong password"] * 2


def test_the_callers_copy_of_the_user_shows_the_count(impatient, ada):
    with Session(impatient) as session:
        user = session.get(User, ada.id)
        refuse_login(session)
        refuse_login(session)
        assert user.failed_login_count == 2
        assert not session.dirty  # shown as loaded values, not as changes to write


# --- through get_db_session ---------------------------------------------------------


def test_wrong_passwords_lock_the_address_through_get_db_session(configured, plaintexts):
    plaintexts.extend([PASSWORD, WRONG])
    with sessions.get_db_session() as session:
        users.create_user(session, "ada", "ada@example.com", PASSWORD)
    for _ in range(5):
        with pytest.raises(AuthenticationFailed), sessions.get_db_session() as session:
            users.authenticate(session, "ada", WRONG, ip=IP)
    assert failures(configured) == ["wrong password"] * 5
    with pytest.raises(RateLimited) as refused, sessions.get_db_session() as session:
        users.authenticate(session, "ada", PASSWORD, ip=IP)
    assert refused.value.reason == "locked"


def test_refused_codes_rate_limit_even_when_the_caller_rolls_back(configured, plaintexts):
    with sessions.get_db_session() as session:
        user = users.create_user(session, "bob", "bob@example.com", PASSWORD)
        secret, _ = twofactor.begin_setup(session, user)
        plaintexts.extend([PASSWORD, secret])
        twofactor.confirm_setup(session, user, pyotp.TOTP(secret).now())
    for _ in range(5):
        with pytest.raises(AuthenticationFailed), sessions.get_db_session() as session:
            user = session.scalars(select(User)).one()
            user.email = "bob@elsewhere.example.com"  # a change of the caller's, undone
            session.flush()
            twofactor.verify_totp(session, user, "000000")
    assert failures(configured) == ["wrong code"] * 5
    with pytest.raises(RateLimited), sessions.get_db_session() as session:
        twofactor.verify_totp(session, session.scalars(select(User)).one(), "000000")
    assert [email for _, email, _ in stored_users(configured)] == ["bob@example.com"]
