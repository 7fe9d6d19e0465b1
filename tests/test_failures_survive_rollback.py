"""Refused logins and 2FA codes count even when the caller rolls back, as
get_db_session does when the block raises."""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import func, select

from pfd_db import session as sessions
from pfd_db.errors import AuthenticationFailed, RateLimited
from pfd_db.models import LoginHistory, User
from pfd_db.store import twofactor, users

PASSWORD = "correct horse battery"


@pytest.fixture
def configured(engine, db):
    sessions.configure(engine=engine)
    yield engine
    sessions.reset()


def failures(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            select(func.count()).select_from(LoginHistory).where(LoginHistory.success.is_(False))
        )


def test_wrong_passwords_lock_the_account_through_get_db_session(configured, plaintexts):
    plaintexts.append(PASSWORD)
    with sessions.get_db_session() as session:
        users.create_user(session, "ada", "ada@example.com", PASSWORD)
    for _ in range(5):
        with pytest.raises(AuthenticationFailed), sessions.get_db_session() as session:
            users.authenticate(session, "ada", "not the password")
    assert failures(configured) == 5
    with pytest.raises(AuthenticationFailed) as refused, sessions.get_db_session() as session:
        users.authenticate(session, "ada", PASSWORD)
    assert refused.value.reason == "locked"


def test_refused_codes_rate_limit_even_when_the_caller_rolls_back(configured, plaintexts):
    with sessions.get_db_session() as session:
        user = users.create_user(session, "bob", "bob@example.com", PASSWORD)
        secret, _ = twofactor.begin_setup(session, user)
        plaintexts.append(secret)
        twofactor.confirm_setup(session, user, pyotp.TOTP(secret).now())
    for _ in range(5):
        with pytest.raises(PermissionError), sessions.get_db_session() as session:
            user = session.scalars(select(User)).one()
            if not twofactor.verify_totp(session, user, "000000"):
                raise PermissionError("2FA refused")  # the caller's own error: rollback
    with pytest.raises(RateLimited), sessions.get_db_session() as session:
        twofactor.verify_totp(session, session.scalars(select(User)).one(), "000000")
