"""The login history: every authentication attempt, and failure counts over it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.models import LoginHistory, User
from pfd_db.models.enums import LoginMethod
from pfd_db.types import utc_or_now


def record_attempt(
    session: Session,
    *,
    user: User | None,
    username: str | None,
    success: bool,
    method: LoginMethod,
    reason: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> LoginHistory:
    """Add one row to ``login_history`` (unknown users too, by the name tried)."""
    entry = LoginHistory(
        user_id=user.id if user is not None else None,
        username_attempted=(username or (user.username if user else None) or "")[:255] or None,
        ip_address=ip[:45] if ip else None,
        user_agent=user_agent[:500] if user_agent else None,
        login_method=method.value,
        success=success,
        failure_reason=reason[:200] if reason else None,
        timestamp=utc_or_now(now),
    )
    session.add(entry)
    session.flush()
    return entry


def recent_failures(
    session: Session,
    user: User,
    methods: Iterable[LoginMethod],
    window: timedelta,
    now: datetime | None = None,
    reason: str | None = None,
) -> int:
    """How many failed attempts by ``methods`` ``user`` had in the last ``window``
    (only those refused for ``reason``, when given)."""
    since = utc_or_now(now) - window
    conditions = [
        LoginHistory.user_id == user.id,
        LoginHistory.success.is_(False),
        LoginHistory.login_method.in_([m.value for m in methods]),
        LoginHistory.timestamp >= since,
    ]
    if reason is not None:
        conditions.append(LoginHistory.failure_reason == reason)
    return session.scalar(select(func.count()).where(*conditions)) or 0
