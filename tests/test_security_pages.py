"""The security page on both dialects: a user's login history, the devices they
are logged in on, "log out that device" and "log out everywhere else"."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from pfd_db.errors import AuthenticationFailed, InvalidInput, NotFound
from pfd_db.models import SessionLog
from pfd_db.store.identity import logins, sessions, users
from pfd_db.store.ops import audit

PASSWORD = "correct-horse-battery-staple"
WRONG = "not-the-right-password"
T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.fixture
def ada(db, plaintexts):
    plaintexts.extend([PASSWORD, WRONG])
    user = users.create_user(db, "ada", "ada@example.com", PASSWORD)
    db.commit()
    return user


@pytest.fixture
def bob(db):
    user = users.create_user(db, "bob", "bob@example.com", PASSWORD)
    db.commit()
    return user


def attempt(db, username: str, password: str, minutes: int, ip: str = "198.51.100.1"):
    with contextlib.suppress(AuthenticationFailed):
        users.authenticate(db, username, password, ip=ip, user_agent=FIREFOX,
                           now=T0 + timedelta(minutes=minutes))  # fmt: skip
    db.commit()


# --- login history -----------------------------------------------------------------


def test_the_login_history_is_the_users_own_newest_first(db, ada, bob):
    attempt(db, "ada", PASSWORD, 0)
    attempt(db, "ada", WRONG, 1, ip="203.0.113.5")
    attempt(db, "bob", PASSWORD, 2)
    attempt(db, "nobody", WRONG, 3)
    attempt(db, "ada", PASSWORD, 4)
    history = logins.history(db, ada)
    assert [(h.success, h.failure_reason, h.ip_address) for h in history] == [
        (True, None, "198.51.100.1"),
        (False, "wrong password", "203.0.113.5"),
        (True, None, "198.51.100.1"),
    ]
    assert all(h.user_agent == FIREFOX and h.login_method == "password" for h in history)
    assert [h.success for h in logins.history(db, ada.id, success=False)] == [False]
    assert len(logins.history(db, bob)) == 1


def test_the_login_history_is_bounded_and_paged(db, ada):
    for minute in range(9):
        attempt(db, "ada", PASSWORD if minute % 3 else WRONG, minute)
    every = logins.history(db, ada)
    first = logins.history(db, ada, limit=4)
    second = logins.history(db, ada, limit=4, before_id=first[-1].id)
    third = logins.history(db, ada, limit=4, before_id=second[-1].id)
    assert [h.id for h in first + second + third] == [h.id for h in every]
    assert [h.timestamp for h in every] == [T0 + timedelta(minutes=m) for m in range(8, -1, -1)]
    since, until = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    window = logins.history(db, ada, since=since, until=until)
    assert [h.timestamp.minute for h in window] == [4, 3, 2]
    for bad in ({"limit": 0}, {"limit": 5000}, {"success": "yes"}, {"since": datetime(2030, 1, 1)}):
        with pytest.raises(InvalidInput):
            logins.history(db, ada, **bad)
    with pytest.raises(NotFound):
        logins.history(db, ada.id + 100)


# --- devices ------------------------------------------------------------------------


@pytest.fixture
def devices(db, ada, bob, plaintexts):
    """Ada logged in on a laptop, a phone and a tablet; one more ended, one expired;
    Bob on one device."""
    opened = {}
    for name, agent, ip in (
        ("laptop", FIREFOX, "198.51.100.1"),
        ("phone", IPHONE, "198.51.100.2"),
        ("tablet", None, None),
        ("ended", FIREFOX, None),
    ):
        token, record = sessions.start_session(db, ada, ip=ip, user_agent=agent, now=T0)
        opened[name] = (token, record)
    token, record = sessions.start_session(db, ada, ttl=timedelta(minutes=1),
                                           now=T0 - timedelta(days=1))  # fmt: skip
    opened["expired"] = (token, record)
    opened["bob"] = sessions.start_session(db, bob, now=T0)
    sessions.end_session(db, opened["ended"][0])
    db.commit()
    plaintexts.extend(token for token, _ in opened.values())
    return opened


def test_the_devices_a_user_is_logged_in_on(db, ada, devices):
    listed = sessions.list_active(db, ada, now=T0 + timedelta(minutes=5))
    assert {s.id for s in listed} == {devices[n][1].id for n in ("laptop", "phone", "tablet")}
    laptop = next(s for s in listed if s.id == devices["laptop"][1].id)
    phone = next(s for s in listed if s.id == devices["phone"][1].id)
    assert (laptop.browser, laptop.device_type, laptop.ip_address) == (
        "Firefox", "Desktop", "198.51.100.1",
    )  # fmt: skip
    assert phone.device_type == "Mobile" and phone.last_active == T0
    assert sessions.list_active(db, ada.id, now=T0 + timedelta(days=2)) == []  # all expired


def test_log_out_that_device(db, ada, devices):
    phone_token, phone = devices["phone"]
    assert sessions.revoke(db, ada, phone.id) is True
    db.commit()
    with pytest.raises(AuthenticationFailed) as refused:
        sessions.resolve(db, phone_token, now=T0 + timedelta(minutes=1))
    assert refused.value.reason == "ended"
    assert sessions.resolve(db, devices["laptop"][0], now=T0 + timedelta(minutes=1))
    assert sessions.revoke(db, ada, phone) is False  # ended already
    [entry] = audit.entries(db, action="session.revoked")
    assert entry.details == {"user_id": ada.id, "username": "ada", "sessions": 1,
                             "session_id": phone.id}  # fmt: skip


def test_another_users_device_is_not_found_and_stays_logged_in(db, ada, devices):
    bob_token, bob_session = devices["bob"]
    with pytest.raises(NotFound, match="has no session"):
        sessions.revoke(db, ada, bob_session.id)
    with pytest.raises(NotFound):
        sessions.revoke(db, ada, 999_999)
    with pytest.raises(InvalidInput):
        sessions.revoke(db, ada, "1")
    db.commit()
    assert sessions.resolve(db, bob_token, now=T0).id == bob_session.id
    assert audit.entries(db, action="session.revoked") == []


def test_log_out_everywhere_else(db, ada, devices):
    laptop_token, laptop = devices["laptop"]
    assert sessions.revoke_others(db, ada, laptop) == 3  # phone, tablet and the expired one
    db.commit()
    active = db.scalars(
        select(SessionLog.id).where(SessionLog.user_id == ada.id, SessionLog.is_active.is_(True))
    ).all()
    assert active == [laptop.id]
    assert sessions.resolve(db, laptop_token, now=T0).id == laptop.id
    assert sessions.resolve(db, devices["bob"][0], now=T0)  # another user's: untouched
    [entry] = audit.entries(db, action="session.revoked")
    assert entry.details["sessions"] == 3 and entry.details["kept_session_id"] == laptop.id
    assert sessions.revoke_others(db, ada, laptop.id) == 0  # nothing else left
    assert len(audit.entries(db, action="session.revoked")) == 1
    with pytest.raises(NotFound):
        sessions.revoke_others(db, ada, devices["bob"][1])
