"""Login sessions: hashed tokens, resolution, expiry, ending; user-agent parsing."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.crypto import sha256_hex
from pfd_db.errors import AuthenticationFailed, InvalidInput
from pfd_db.models import SessionLog
from pfd_db.store.identity import sessions, useragent, users
from probes import statements

PASSWORD = "correct-horse-battery-staple"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


@pytest.fixture
def ada(db, plaintexts):
    plaintexts.append(PASSWORD)
    return users.create_user(db, "ada", "ada@example.com", PASSWORD)


@pytest.fixture
def start(db, ada, plaintexts):
    """Start a session for ``ada`` (or another user), remembering its token as a secret."""

    def start(user=ada, **kwargs):
        kwargs.setdefault("now", T0)
        token, record = sessions.start_session(db, user, **kwargs)
        plaintexts.append(token)
        return token, record

    return start


@contextmanager
def updates_of_session_logs(db):
    """The UPDATE statements sent for session_logs while the block runs."""
    seen = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("UPDATE SESSION_LOGS"):
            seen.append(statement)

    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_token_is_url_safe_random_and_stored_only_as_its_sha256(db, ada, start):
    token, record = start(ip="203.0.113.7", user_agent=CHROME_MAC)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)  # 32 bytes or more
    assert start()[0] != token
    db.commit()
    stored = db.scalar(select(SessionLog.session_token).where(SessionLog.id == record.id))
    assert stored == sha256_hex(token) != token
    assert (record.user_id, record.ip_address, record.is_active) == (ada.id, "203.0.113.7", True)
    assert (record.device_type, record.browser) == ("Desktop", "Chrome")


def test_a_session_lasts_the_ttl_from_the_settings_or_the_one_given(start):
    _, default = start()
    assert default.expires_at == T0 + timedelta(seconds=get_settings().session_ttl_seconds)
    assert default.last_active == T0
    _, short = start(ttl=timedelta(minutes=5))
    assert short.expires_at == T0 + timedelta(minutes=5)
    with pytest.raises(InvalidInput, match="ttl"):
        start(ttl=timedelta(0))


def refused(db, token, now=T0) -> str:
    """Why ``resolve`` refuses ``token`` at ``now``."""
    with pytest.raises(AuthenticationFailed, match=r"^authentication failed$") as refusal:
        sessions.resolve(db, token, now=now)
    return refusal.value.reason


def test_resolve_finds_the_live_session_by_its_token(db, ada, start):
    token, record = start()
    db.commit()
    db.expunge_all()
    found = sessions.resolve(db, token, now=T0 + timedelta(hours=1))
    assert found.id == record.id and found.user.username == "ada"


@pytest.mark.parametrize(
    "token", ["", "short", "a" * 43 + "!", "é" * 43, "a" * 10_000, "a" * 42 + "\x00", "\ud800" * 43]
)
def test_malformed_tokens_are_refused_without_a_query(engine, db, start, token):
    start()
    db.commit()
    with statements(engine) as sent:
        assert refused(db, token) == "malformed token"
        assert sessions.end_session(db, token) is False
    assert sent == []


@pytest.mark.parametrize("token", [None, 42, b"a" * 43, ["a" * 43]])
def test_a_token_that_is_no_string_is_invalid_input(db, start, token):
    start()
    with pytest.raises(InvalidInput, match=r"^token must be a string"):
        sessions.resolve(db, token, now=T0)
    with pytest.raises(InvalidInput, match=r"^token must be a string"):
        sessions.end_session(db, token)


def test_resolve_refuses_an_unknown_token(db, start):
    token, _ = start()
    other = ("B" if token[0] == "A" else "A") + token[1:]
    assert refused(db, other) == "unknown token"


def test_resolve_refuses_an_expired_session(db, start):
    token, record = start(ttl=timedelta(hours=1))
    assert sessions.resolve(db, token, now=record.expires_at - timedelta(seconds=1)) is record
    assert refused(db, token, now=record.expires_at) == "expired"


def test_resolve_refuses_an_ended_session(db, start):
    token, record = start()
    assert sessions.end_session(db, token) is True
    assert sessions.end_session(db, token) is False
    assert record.is_active is False and record.logged_out_at is not None
    assert refused(db, token) == "ended"


def test_resolve_sees_an_ending_by_another_writer_despite_a_loaded_copy(engine, db, start):
    token, record = start()
    db.commit()
    assert sessions.resolve(db, token, now=T0) is record
    db.commit()
    with Session(engine) as other:
        assert sessions.end_session(other, token) is True
        other.commit()
    assert refused(db, token) == "ended"


def test_resolve_refuses_the_session_of_an_inactive_user(db, ada, start):
    token, _ = start()
    ada.is_active = False  # not through deactivate(), which would end the session too
    db.flush()
    assert refused(db, token) == "inactive user"


def test_last_active_is_written_at_most_once_a_minute(db, start):
    token, record = start()
    db.commit()
    with updates_of_session_logs(db) as updates:
        sessions.resolve(db, token, now=T0 + timedelta(seconds=59))
    assert updates == [] and record.last_active == T0
    with updates_of_session_logs(db) as updates:
        sessions.resolve(db, token, now=T0 + timedelta(seconds=60))
        sessions.resolve(db, token, now=T0 + timedelta(seconds=90))
    assert len(updates) == 1 and record.last_active == T0 + timedelta(seconds=60)


def test_end_all_sessions_ends_only_that_users_active_ones(db, ada, start):
    bob = users.create_user(db, "bob", "bob@example.com", PASSWORD)
    first, _ = start()
    start()
    start()
    bobs, _ = start(bob)
    sessions.end_session(db, first)
    assert sessions.end_all_sessions(db, ada) == 2
    assert sessions.end_all_sessions(db, ada) == 0
    assert sessions.active_sessions(db, ada, now=T0) == []
    assert sessions.resolve(db, bobs, now=T0).user is bob


def test_active_sessions_are_the_live_ones_newest_first(db, ada, start):
    _, oldest = start(now=T0)
    _, newest = start(now=T0 + timedelta(minutes=2))
    ended, _ = start(now=T0 + timedelta(minutes=1))
    start(now=T0 - timedelta(days=1), ttl=timedelta(hours=1))  # expired
    sessions.end_session(db, ended)
    db.commit()
    assert sessions.active_sessions(db, ada, now=T0 + timedelta(minutes=3)) == [newest, oldest]


@pytest.mark.parametrize(
    ("agent", "device", "browser"),
    [
        (CHROME_MAC, "Desktop", "Chrome"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
            "Desktop",
            "Edge",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Desktop",
            "Firefox",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            "Desktop",
            "Safari",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
            "Desktop",
            "Opera",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mobile",
            "Safari",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
            "Mobile",
            "Chrome",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Mobile Safari/537.36",
            "Mobile",
            "Chrome",
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 "
            "(KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
            "Mobile",
            "Samsung Internet",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Tablet",
            "Safari",
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36",
            "Tablet",
            "Chrome",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Trident/7.0; rv:11.0) like Gecko",
            "Desktop",
            "Internet Explorer",
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Bot",
            "Googlebot",
        ),
        (
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 "
            "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Bot",
            "Googlebot",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/124.0.0.0 Safari/537.36",
            "Bot",
            "Chrome",
        ),
        ("curl/8.5.0", "Bot", "curl"),
        ("Wget/1.21.4", "Bot", "Wget"),
        ("python-requests/2.31.0", "Bot", "python-requests"),
        ("python-httpx/0.27.0", "Bot", "httpx"),
        ("SomethingNew/1.0", "Desktop", "Other"),
        ("", None, None),
        ("   ", None, None),
        (None, None, None),
    ],
)
def test_user_agent_parsing(agent, device, browser):
    assert useragent.parse(agent) == (device, browser)
