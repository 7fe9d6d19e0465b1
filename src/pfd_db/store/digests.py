"""E-mail digests: when the next one falls due, what is due, and marking it sent.

A user whose preference for an event is ``digest_daily`` or ``digest_weekly``
gets an ``email_digest_queue`` entry instead of an e-mail
(:func:`pfd_db.store.notifications.emit`), scheduled for their next digest: the
next ``digest_hour`` (UTC, a setting), or the next Monday at that hour.

A digest worker reads :func:`due`, then for each user calls :func:`mark_sent`
with the entries it is about to send, commits, and sends exactly those. Marking
is all or nothing: when another worker marked any of the entries first, it
raises :class:`~pfd_db.errors.Conflict` and marks none, so no entry is sent twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, false, select, update
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.errors import Conflict, InvalidInput
from pfd_db.models import EmailDigestQueue, User
from pfd_db.models.enums import EmailFrequency
from pfd_db.store.validation import require_items, require_member
from pfd_db.store.writes import require_id
from pfd_db.types import utc_or_now

WEEKLY_ON = 0  # Monday, as datetime.weekday() counts


@dataclass
class Digest:
    """What one user's digest holds: their entries, oldest first."""

    user_id: int
    email: str
    entries: list[EmailDigestQueue] = field(default_factory=list)


def next_digest_at(frequency: EmailFrequency | str, now: datetime | None = None) -> datetime:
    """When the next ``digest_daily`` or ``digest_weekly`` digest after ``now`` falls due."""
    frequency = require_member(frequency, EmailFrequency, "email_frequency")
    now = utc_or_now(now)
    at = now.replace(hour=get_settings().digest_hour, minute=0, second=0, microsecond=0)
    if frequency is EmailFrequency.DIGEST_DAILY:
        return at if at > now else at + timedelta(days=1)
    if frequency is EmailFrequency.DIGEST_WEEKLY:
        at += timedelta(days=(WEEKLY_ON - now.weekday()) % 7)
        return at if at > now else at + timedelta(days=7)
    raise InvalidInput("email_frequency must be digest_daily or digest_weekly for a digest")


def due(session: Session, now: datetime | None = None) -> list[Digest]:
    """The digests due at ``now``: per active user, the entries not yet sent whose
    time has come, oldest first; users in id order."""
    now = utc_or_now(now)
    rows = session.execute(
        select(EmailDigestQueue, User.email)
        .join(User, User.id == EmailDigestQueue.user_id)
        .where(
            EmailDigestQueue.included_in_digest == false(),
            EmailDigestQueue.scheduled_for <= now,
            User.is_active,
        )
        .order_by(EmailDigestQueue.user_id, EmailDigestQueue.scheduled_for, EmailDigestQueue.id)
    ).all()
    digests: dict[int, Digest] = {}
    for entry, email in rows:
        digests.setdefault(entry.user_id, Digest(entry.user_id, email)).entries.append(entry)
    return list(digests.values())


def mark_sent(
    session: Session, user: User | int, entries: Iterable[EmailDigestQueue | int]
) -> list[int]:
    """Mark ``entries`` (rows or ids) of ``user`` included in a digest, all or none;
    returns their ids. :class:`Conflict`, with nothing marked, when any of them is
    already included (another worker sent it) or is not ``user``'s."""
    user_id = require_id(session, User, user, "user")
    ids = sorted(
        {
            require_id(session, EmailDigestQueue, entry, "entries")
            for entry in require_items(entries, "entries")
        }
    )
    if not ids:
        raise InvalidInput("entries must name at least one digest entry")
    with session.begin_nested():  # undone alone when another worker got there first
        result = session.execute(
            update(EmailDigestQueue)
            .where(
                EmailDigestQueue.id.in_(ids),
                EmailDigestQueue.user_id == user_id,
                EmailDigestQueue.included_in_digest == false(),
            )
            .values(included_in_digest=True)
        )
        assert isinstance(result, CursorResult)
        if result.rowcount != len(ids):
            raise Conflict(
                f"{len(ids) - result.rowcount} of the {len(ids)} digest entries were already "
                f"sent or are not user {user_id}'s; none marked"
            )
    return ids
