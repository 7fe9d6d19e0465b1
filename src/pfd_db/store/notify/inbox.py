"""A user's notifications: what :func:`~pfd_db.store.notify.notifications.emit`
addressed to them by e-mail, read or unread, as the dashboard's bell lists them.

A notification is one of the user's ``email_logs`` rows; it is read once
``opened_at`` is set (by :func:`mark_read`, :func:`mark_all_read`, or a mail
client's open tracking). Digest entries and webhook calls are not listed here: a
digest reaches the user as one e-mail, and a webhook is a machine's. Lists page
by keyset cursors, newest first (:func:`pfd_db.store.paging.newest_page`): the
next page is ``before_id`` = the id of the last notification of this one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from pfd_db.errors import NotFound
from pfd_db.models import EmailLog, User
from pfd_db.store import paging
from pfd_db.store.status import update_if, update_where
from pfd_db.store.validation import require_flag
from pfd_db.store.writes import load, require_id
from pfd_db.types import utc_or_now


def notifications(
    session: Session,
    user: User | int,
    *,
    unread: bool | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[EmailLog]:
    """``user``'s notifications, newest first, at most ``limit`` (up to 1000): only
    the unread (``unread=True``) or read (``False``) ones when given. The next
    page: ``before_id`` = the id of the last one of this page."""
    conditions = _of(session, user)
    if unread is not None:
        opened = EmailLog.opened_at.is_(None)
        conditions.append(opened if require_flag(unread, "unread") else ~opened)
    return paging.newest_page(
        session, EmailLog.created_at, EmailLog.id, conditions, limit, before_id
    )


def unread_count(session: Session, user: User | int) -> int:
    """How many of ``user``'s notifications are unread."""
    conditions = [*_of(session, user), EmailLog.opened_at.is_(None)]
    return int(session.scalar(select(func.count()).where(*conditions)) or 0)


def mark_read(
    session: Session,
    user: User | int,
    notification: EmailLog | int,
    now: datetime | None = None,
) -> EmailLog:
    """Mark ``user``'s notification (the row or its id) read at ``now``; one read
    already keeps its first ``opened_at``. :class:`NotFound` when it is not one of
    ``user``'s (another user's counts as none)."""
    user_id = require_id(session, User, user, "user")
    found = load(session, EmailLog, notification, "notification")
    if found.user_id != user_id:
        raise NotFound(f"no notification with id {found.id} for this user")
    update_if(session, found, EmailLog.opened_at.is_(None), opened_at=utc_or_now(now))
    return found


def mark_all_read(session: Session, user: User | int, now: datetime | None = None) -> int:
    """Mark every unread notification of ``user`` read at ``now``; how many were."""
    unread = [*_of(session, user), EmailLog.opened_at.is_(None)]
    return update_where(session, EmailLog, unread, opened_at=utc_or_now(now))


def _of(session: Session, user: User | int) -> list[ColumnElement[bool]]:
    return [EmailLog.user_id == require_id(session, User, user, "user")]
