"""The login history: every authentication attempt, and the failure counts taken from it.

The counts are what the login limits and the 2FA rate limit decide by (see
:mod:`pfd_db.store.identity.users` and :mod:`pfd_db.store.identity.twofactor`). An attempt is
"on" an account when it has the account's id, or, for a name that is no
account, when it tried that name; it is "from" an address when it has that
``ip_address`` (attempts without one share the address None).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from pfd_db.models import LoginHistory, User
from pfd_db.models.enums import LoginMethod
from pfd_db.store import paging
from pfd_db.store.remote_text import storable
from pfd_db.store.validation import require_flag
from pfd_db.store.writes import load

NAME_LENGTH = 255
IP_LENGTH = 45
USER_AGENT_LENGTH = 500
REASON_LENGTH = 200


@dataclass(frozen=True)
class Attempt:
    """One authentication attempt: on which account (its id, or None with the name
    tried), by which method, from where, when. Plain values only, so that it can
    be recorded from any session, later too."""

    user_id: int | None
    username: str | None
    method: LoginMethod
    now: datetime
    ip: str | None = None
    user_agent: str | None = None


def record_attempt(session: Session, attempt: Attempt, reason: str | None) -> LoginHistory:
    """Add ``attempt`` to ``login_history``: a success if ``reason`` is None, else a
    failure for ``reason``.

    Text is clipped to its column; text that cannot be stored as it is (a NUL, a
    lone surrogate) is stored escaped.
    """
    entry = LoginHistory(
        user_id=attempt.user_id,
        username_attempted=storable(attempt.username, NAME_LENGTH),
        ip_address=address(attempt.ip),
        user_agent=storable(attempt.user_agent, USER_AGENT_LENGTH),
        login_method=attempt.method.value,
        success=reason is None,
        failure_reason=storable(reason, REASON_LENGTH),
        timestamp=attempt.now,
    )
    session.add(entry)
    session.flush()
    return entry


def address(ip: str | None) -> str | None:
    """``ip`` as ``login_history`` stores it."""
    return storable(ip, IP_LENGTH)


def recent_failures(
    session: Session,
    user_id: int,
    methods: Iterable[LoginMethod],
    window: timedelta,
    now: datetime,
    reason: str | None = None,
) -> int:
    """How many failed attempts by ``methods`` the account ``user_id`` had in the
    last ``window`` before ``now`` (only those refused for ``reason``, when given)."""
    conditions = [
        LoginHistory.user_id == user_id,
        LoginHistory.success.is_(False),
        LoginHistory.login_method.in_([m.value for m in methods]),
        LoginHistory.timestamp > now - window,
    ]
    if reason is not None:
        conditions.append(LoginHistory.failure_reason == reason)
    return session.scalar(select(func.count()).where(*conditions)) or 0


def failures_from_address(
    session: Session, attempt: Attempt, reasons: Iterable[str], window: timedelta
) -> int:
    """Earlier attempts like ``attempt`` (same account or name, address and method)
    refused for one of ``reasons`` in the last ``window``, after the last
    successful one."""
    alike = (_on_account(attempt), _from(attempt.ip), _by(attempt.method))
    last_success = (
        select(func.max(LoginHistory.timestamp))
        .where(*alike, LoginHistory.success.is_(True))
        .scalar_subquery()
    )
    counted = select(func.count()).where(
        *alike,
        LoginHistory.success.is_(False),
        LoginHistory.failure_reason.in_(list(reasons)),
        LoginHistory.timestamp > attempt.now - window,
        or_(last_success.is_(None), LoginHistory.timestamp > last_success),
    )
    return session.scalar(counted) or 0


def latest_failure_times(
    session: Session,
    user_id: int,
    method: LoginMethod,
    reason: str,
    window: timedelta,
    now: datetime,
    n: int,
) -> list[datetime]:
    """When the ``n`` latest attempts by ``method`` on ``user_id`` refused for
    ``reason`` in the last ``window`` before ``now`` happened, latest first."""
    times = session.scalars(
        select(LoginHistory.timestamp)
        .where(
            LoginHistory.user_id == user_id,
            _by(method),
            LoginHistory.success.is_(False),
            LoginHistory.failure_reason == reason,
            LoginHistory.timestamp > now - window,
        )
        .order_by(LoginHistory.timestamp.desc(), LoginHistory.id.desc())
        .limit(n)
    )
    return list(times)


def succeeded_from(session: Session, attempt: Attempt, window: timedelta) -> bool:
    """Whether an attempt like ``attempt`` (same account, address and method)
    succeeded in the last ``window``. Never for an attempt without an address."""
    if attempt.user_id is None or address(attempt.ip) is None:
        return False
    found = session.scalar(
        select(LoginHistory.id)
        .where(
            _on_account(attempt),
            _from(attempt.ip),
            _by(attempt.method),
            LoginHistory.success.is_(True),
            LoginHistory.timestamp > attempt.now - window,
        )
        .limit(1)
    )
    return found is not None


def history(
    session: Session,
    user: User | int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    success: bool | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[LoginHistory]:
    """``user``'s login attempts, newest first, at most ``limit`` (up to 1000): from
    ``since`` (inclusive) to ``until`` (exclusive) when given, only the successful
    (``success=True``) or failed (``False``) ones when given. The next page:
    ``before_id`` = the id of the last attempt of this one (see
    :mod:`pfd_db.store.paging`). Each has its method, address, user agent and,
    for a failure, the reason. Served by ``ix_login_history_user_time``.
    """
    user = load(session, User, user, "user")
    conditions = [LoginHistory.user_id == user.id]
    conditions += paging.in_range(LoginHistory.timestamp, since, until)
    if success is not None:
        conditions.append(LoginHistory.success.is_(require_flag(success, "success")))
    return paging.newest_page(
        session, LoginHistory.timestamp, LoginHistory.id, conditions, limit, before_id
    )


def _on_account(attempt: Attempt) -> ColumnElement[bool]:
    if attempt.user_id is not None:
        return LoginHistory.user_id == attempt.user_id
    return and_(
        LoginHistory.user_id.is_(None),
        LoginHistory.username_attempted == storable(attempt.username, NAME_LENGTH),
    )


def _from(ip: str | None) -> ColumnElement[bool]:
    stored = address(ip)
    return (
        LoginHistory.ip_address.is_(None) if stored is None else LoginHistory.ip_address == stored
    )


def _by(method: LoginMethod) -> ColumnElement[bool]:
    return LoginHistory.login_method == method.value
