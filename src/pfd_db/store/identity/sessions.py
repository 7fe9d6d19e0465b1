"""Login sessions: a bearer token given to the client once, found again by its hash.

The token is 32 random bytes, URL-safe base64 (43 characters). Only its SHA-256
is stored (``session_logs.session_token``): a fast hash suffices for a secret
with that much entropy, and it lets :func:`resolve` find the row with one
indexed lookup. A session is live while it is active, not expired and its user
is active; :func:`resolve` raises :class:`AuthenticationFailed` for any other
token, saying why in its ``reason``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session, contains_eager

from pfd_db.config import get_settings
from pfd_db.crypto import random_token, sha256_hex
from pfd_db.errors import AuthenticationFailed, InvalidInput, NotFound
from pfd_db.models import SessionLog, User
from pfd_db.store.identity import useragent
from pfd_db.store.identity.credentials import optional_client_text, presented
from pfd_db.store.identity.logins import USER_AGENT_LENGTH, address
from pfd_db.store.ops import audit
from pfd_db.store.remote_text import storable
from pfd_db.store.status import update_where
from pfd_db.store.writes import load
from pfd_db.types import utc_or_now, utcnow

TOKEN_BYTES = 32
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43,128}")
LAST_ACTIVE_GRANULARITY = timedelta(seconds=60)
TTL_MAX = timedelta(days=3660)  # ten years: expiry stays a date any clock can reach


def start_session(
    session: Session,
    user: User | int,
    ip: str | None = None,
    user_agent: str | None = None,
    ttl: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[str, SessionLog]:
    """Open a session for ``user``; returns the token (shown only this once) and the row.

    It expires after ``ttl`` (default: the ``session_ttl_seconds`` setting).
    """
    user = load(session, User, user, "user")
    now = utc_or_now(now)
    ip, user_agent = optional_client_text(ip, "ip"), optional_client_text(user_agent, "user_agent")
    client = useragent.parse(user_agent)
    token = random_token(TOKEN_BYTES)
    record = SessionLog(
        user=user,
        session_token=sha256_hex(token),
        ip_address=address(ip),
        user_agent=storable(user_agent, USER_AGENT_LENGTH),
        device_type=client.device_type,
        browser=client.browser,
        last_active=now,
        expires_at=now + _lifetime(ttl),
    )
    session.add(record)
    session.flush()
    return token, record


def resolve(session: Session, token: str, now: datetime | None = None) -> SessionLog:
    """The live session ``token`` opens; marks it active (at most once a minute).

    :class:`AuthenticationFailed` otherwise, whose ``reason`` is "malformed
    token", "unknown token", "ended", "expired" or "inactive user";
    :class:`InvalidInput` if ``token`` is not a string. One indexed lookup.
    """
    token = presented(token, "token")
    now = utc_or_now(now)
    if not _well_formed(token):
        raise AuthenticationFailed("malformed token")
    record = session.scalar(
        select(SessionLog)
        .join(SessionLog.user)
        .options(contains_eager(SessionLog.user))
        .where(SessionLog.session_token == sha256_hex(token))
        .execution_options(populate_existing=True)  # an ending by another writer counts
    )
    reason = _refusal(record, now)
    if reason is not None:
        raise AuthenticationFailed(reason)
    assert record is not None  # _refusal refuses a missing one
    if _due_for_refresh(record, now):
        record.last_active = now
        session.flush()
    return record


def end_session(session: Session, token: str) -> bool:
    """End the session ``token`` opens (a logout, not a check of the token):
    False if there was no active one, a malformed token included."""
    token = presented(token, "token")
    if not _well_formed(token):
        return False
    return _end(session, SessionLog.session_token == sha256_hex(token)) == 1


def end_all_sessions(session: Session, user: User | int) -> int:
    """End every active session of ``user`` (expired ones included); how many were ended."""
    user = load(session, User, user, "user")
    return _end(session, SessionLog.user_id == user.id)


def active_sessions(
    session: Session, user: User | int, now: datetime | None = None
) -> list[SessionLog]:
    """The live sessions of ``user``, newest first."""
    user = load(session, User, user, "user")
    return list(
        session.scalars(
            select(SessionLog)
            .join(SessionLog.user)
            .where(SessionLog.user_id == user.id, *_live(utc_or_now(now)))
            .order_by(SessionLog.created_at.desc(), SessionLog.id.desc())
        )
    )


# --- the security page ------------------------------------------------------------


def list_active(
    session: Session, user: User | int, now: datetime | None = None
) -> list[SessionLog]:
    """The devices ``user`` is logged in on: their live sessions, newest first, each
    with its address, browser, device type and last activity (never a token)."""
    return active_sessions(session, user, now)


def revoke(session: Session, user: User | int, session_id: SessionLog | int) -> bool:
    """Log out that device: end ``user``'s session ``session_id`` (the row or its
    id). True if it was active; False if it had ended already. :class:`NotFound`
    if ``user`` has no session with that id (another user's counts as none).
    Written to the audit log when it ends a session."""
    user = load(session, User, user, "user")
    target = _session_of(session, user, session_id, "session_id")
    ended = _end(session, SessionLog.id == target.id)
    if ended:
        audit.about(session, user, "session.revoked", sessions=ended, session_id=target.id)
    return ended == 1


def revoke_others(session: Session, user: User | int, keep: SessionLog | int) -> int:
    """Log out everywhere else: end every active session of ``user`` but ``keep``
    (the current one: the row or its id); how many were ended. :class:`NotFound`
    if ``keep`` is not one of ``user``'s sessions. Written to the audit log when
    it ends any."""
    user = load(session, User, user, "user")
    kept = _session_of(session, user, keep, "keep")
    ended = _end(session, and_(SessionLog.user_id == user.id, SessionLog.id != kept.id))
    if ended:
        audit.about(session, user, "session.revoked", sessions=ended, kept_session_id=kept.id)
    return ended


def _session_of(session: Session, user: User, record: SessionLog | int, field: str) -> SessionLog:
    """``record`` (a session or its id) if it is one of ``user``'s, else NotFound."""
    found = load(session, SessionLog, record, field)
    if found.user_id != user.id:
        raise NotFound(f"user {user.username!r} has no session {found.id} ({field})")
    return found


def _end(session: Session, where: ColumnElement[bool]) -> int:
    """Mark the active sessions matching ``where`` ended; how many there were (a
    concurrent end does not count them again: the UPDATE's condition is the check)."""
    return update_where(
        session,
        SessionLog,
        [SessionLog.is_active.is_(True), where],
        is_active=False,
        logged_out_at=utcnow(),
    )


def _live(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        SessionLog.is_active.is_(True),
        SessionLog.expires_at > now,
        User.is_active.is_(True),
    )


def _refusal(record: SessionLog | None, now: datetime) -> str | None:
    """Why ``record`` is no live session at ``now``, or None if it is one."""
    if record is None:
        return "unknown token"
    if not record.is_active:
        return "ended"
    if record.expires_at is None or record.expires_at <= now:
        return "expired"
    if not record.user.is_active:
        return "inactive user"
    return None


def _due_for_refresh(record: SessionLog, now: datetime) -> bool:
    last = record.last_active
    return last is None or now - last >= LAST_ACTIVE_GRANULARITY


def _well_formed(token: object) -> bool:
    return isinstance(token, str) and TOKEN_PATTERN.fullmatch(token) is not None


def _lifetime(ttl: timedelta | None) -> timedelta:
    if ttl is None:
        return timedelta(seconds=get_settings().session_ttl_seconds)
    if not isinstance(ttl, timedelta) or not timedelta(0) < ttl <= TTL_MAX:
        raise InvalidInput(f"ttl must be a timedelta above 0 and at most {TTL_MAX.days} days")
    return ttl
