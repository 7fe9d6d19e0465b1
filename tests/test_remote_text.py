"""The one cleaner for text remote parties supply (pfd_db.store.remote_text): NUL
and lone surrogates escaped (nothing lost), then clipped; used alike by the login
history, sessions, request logs and the delivery queue. Both dialects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pfd_db.errors import InvalidInput
from pfd_db.models import LoginHistory
from pfd_db.models.enums import LoginMethod
from pfd_db.store import remote_text
from pfd_db.store.identity import logins
from pfd_db.store.ops import request_log

SENT = "curl\x00/8 \udc80 end"
ESCAPED = "curl\\x00/8 \\udc80 end"


@pytest.mark.parametrize(
    ("text", "length", "stored"),
    [
        (None, 10, None),
        ("", 10, None),
        ("plain text", 100, "plain text"),
        ("plain text", 5, "plain"),
        (SENT, 100, ESCAPED),
        (SENT, 8, "curl\\x00"),  # escaped first, then clipped to the column
        ("\x00", 100, "\\x00"),
    ],
)
def test_storable_escapes_then_clips(text, length, stored):
    assert remote_text.storable(text, length) == stored


def test_the_escape_loses_nothing():
    escaped = remote_text.storable(SENT, 100)
    assert escaped is not None
    restored = escaped.encode("utf-8").decode("unicode_escape", "surrogatepass")
    assert restored == SENT


@pytest.mark.parametrize("value", [b"bytes", 1, 2.5, ["x"]])
def test_checked_refuses_what_is_not_text_naming_the_field(value):
    with pytest.raises(InvalidInput, match="user_agent"):
        remote_text.checked(value, "user_agent", 100)


def test_the_login_history_stores_remote_text_escaped(db):
    attempt = logins.Attempt(
        None, "ghost\x00", LoginMethod.PASSWORD, datetime.now(UTC), "10.0.0.1\x00", SENT
    )
    entry = logins.record_attempt(db, attempt, "no such user")
    db.commit()
    db.expire_all()
    stored = db.get(LoginHistory, entry.id)
    assert (stored.username_attempted, stored.ip_address, stored.user_agent) == (
        "ghost\\x00",
        "10.0.0.1\\x00",
        ESCAPED,
    )


def test_request_logs_store_remote_text_escaped(db):
    from pfd_db.models import APIRequestLog

    row = {
        "endpoint": "/a",
        "method": "GET",
        "status_code": 200,
        "response_time_ms": 1.0,
        "user_agent": SENT,
        "ip_address": "::1\x00",
    }
    assert request_log.record_requests(db, [row]) == 1
    db.commit()
    log = db.query(APIRequestLog).one()
    assert (log.user_agent, log.ip_address) == (ESCAPED, "::1\\x00")
