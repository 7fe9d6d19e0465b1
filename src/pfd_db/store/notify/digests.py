"""E-mail digests: when the next one falls due, what is due, and marking it sent.

A user whose preference for an event is ``digest_daily`` or ``digest_weekly``
gets an ``email_digest_queue`` entry instead of an e-mail
(:func:`pfd_db.store.notify.notifications.emit`), scheduled for their next digest: the
next ``digest_hour`` (UTC, a setting), or the next Monday at that hour.

A digest worker reads :func:`due`, then for each user calls :func:`mark_sent`
with the entries it is about to send, commits, and sends exactly those. Marking
is all or nothing: when another worker marked any of the entries first, it
raises :class:`~pfd_db.errors.Conflict` and marks none, so no entry is sent twice.

What an admin page reads, each bounded and read through an index of the queue:
:func:`queue_stats` (pending and due entries, and those sent over a time range,
per frequency),
:func:`pending` (filtered by user, frequency and event type, earliest first,
a keyset page at a time), :func:`sent_history` (newest first, paged) and
:func:`users_with_entries`. The queue keeps no frequency of its own: an entry's
frequency is its user's preference for its event type now (stored, or the
event's default), so an entry queued before that preference changed counts
under the new one (even ``immediate``); it is still sent with its digest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.errors import Conflict, InvalidInput
from pfd_db.models import EmailDigestQueue, NotificationPreference, User
from pfd_db.models.enums import EmailFrequency, EventType, default_preferences
from pfd_db.store import paging
from pfd_db.store.status import update_where
from pfd_db.store.validation import require_count, require_flag, require_items, require_member
from pfd_db.store.writes import require_id
from pfd_db.types import utc_or_now
from pfd_db.values import INT32_MAX

WEEKLY_ON = 0  # Monday, as datetime.weekday() counts
SENT_WINDOW = timedelta(days=30)


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
        marked = update_where(
            session,
            EmailDigestQueue,
            [
                EmailDigestQueue.id.in_(ids),
                EmailDigestQueue.user_id == user_id,
                EmailDigestQueue.included_in_digest == false(),
            ],
            included_in_digest=True,
        )
        if marked != len(ids):
            raise Conflict(
                f"{len(ids) - marked} of the {len(ids)} digest entries were already "
                f"sent or are not user {user_id}'s; none marked"
            )
    return ids


# --- what an admin page reads ------------------------------------------------------------


@dataclass(frozen=True)
class FrequencyCounts:
    """The entries of one frequency: waiting for their digest, and sent in one."""

    pending: int
    sent: int


@dataclass(frozen=True)
class QueueStats:
    """The digest queue at ``now``: every pending entry, the entries sent since."""

    pending: int
    sent: int
    """Entries sent in a digest scheduled from ``sent_since`` on."""
    due: int
    """Of the pending entries, those whose digest time has come."""
    by_frequency: dict[str, FrequencyCounts]
    """Per frequency with entries (see the module doc)."""


@dataclass(frozen=True)
class QueuedEntry:
    """One digest entry, with whom it is for and its frequency."""

    entry: EmailDigestQueue
    username: str
    email: str
    frequency: str


@dataclass(frozen=True)
class DigestUser:
    """A user who has digest entries, and how many."""

    user_id: int
    username: str
    email: str
    pending: int
    sent: int


def queue_stats(
    session: Session, now: datetime | None = None, *, sent_since: datetime | None = None
) -> QueueStats:
    """How many entries wait for their digest, how many of them are due at ``now``,
    and how many were sent in a digest scheduled from ``sent_since`` (default: 30
    days before ``now``) on; all of it per frequency too. One grouped query over two
    ranges of ``idx_digest_queue_included`` (sent entries pile up: they are counted
    over a time range, not all ever sent)."""
    now = utc_or_now(now)
    since = now - SENT_WINDOW if sent_since is None else paging.moment(sent_since, "sent_since")
    queue = EmailDigestQueue
    frequency = _frequency().label("frequency")
    waiting = queue.included_in_digest == false()
    sent = and_(queue.included_in_digest == true(), queue.scheduled_for >= since)
    found = session.execute(
        select(
            frequency,
            func.count().filter(waiting),
            func.count().filter(queue.included_in_digest == true()),
            func.count().filter(waiting, queue.scheduled_for <= now),
        )
        .select_from(queue)
        .outerjoin(NotificationPreference, _preference_of_entry())
        .where(or_(waiting, sent))
        .group_by(frequency)
        .order_by(frequency)
    ).all()
    by_frequency = {str(f): FrequencyCounts(int(p), int(s)) for f, p, s, _due in found}
    return QueueStats(
        pending=sum(c.pending for c in by_frequency.values()),
        sent=sum(c.sent for c in by_frequency.values()),
        due=sum(int(d) for *_counts, d in found),
        by_frequency=by_frequency,
    )


def pending(
    session: Session,
    *,
    user: User | int | None = None,
    frequency: EmailFrequency | str | None = None,
    event_type: EventType | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    after_id: int | None = None,
) -> list[QueuedEntry]:
    """The entries waiting for their digest, earliest scheduled first (then by id),
    at most ``limit`` (up to 1000): of ``user``, of ``frequency`` (see the module
    doc), of ``event_type``, scheduled from ``since`` (inclusive) to ``until``
    (exclusive) when given (``until=now``: the overdue ones). The next page:
    ``after_id`` = the id of the last entry of this one.

    Read through ``idx_digest_queue_included`` (pending entries by schedule),
    ``idx_digest_queue_user_scheduled`` (a user) or
    ``idx_digest_queue_event_scheduled`` (an event type).
    """
    queue = EmailDigestQueue
    size = paging.page_size(limit)
    conditions = [
        queue.included_in_digest == false(),
        *_filters(session, user, event_type),
        *paging.in_range(queue.scheduled_for, since, until),
    ]
    if frequency is not None:
        wanted = require_member(frequency, EmailFrequency, "frequency").value
        conditions.append(_frequency() == wanted)
    if after_id is not None:
        conditions.append(_after(session, after_id))
    found = session.execute(
        select(queue, User.username, User.email, _frequency())
        .join(User, User.id == queue.user_id)
        .outerjoin(NotificationPreference, _preference_of_entry())
        .where(*conditions)
        .order_by(queue.scheduled_for, queue.id)
        .limit(size)
    )
    return [QueuedEntry(entry, name, email, str(freq)) for entry, name, email, freq in found]


def sent_history(
    session: Session,
    *,
    user: User | int | None = None,
    event_type: EventType | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[EmailDigestQueue]:
    """The entries sent in a digest, newest digest first (by the time they were
    scheduled for, then id), at most ``limit`` (up to 1000): of ``user``, of
    ``event_type``, scheduled from ``since`` to ``until`` when given. The next
    page: ``before_id`` = the id of the last entry of this one. Read through
    ``idx_digest_queue_included``, or with a filter through the user's or the
    event type's index."""
    queue = EmailDigestQueue
    conditions = [
        queue.included_in_digest == true(),
        *_filters(session, user, event_type),
        *paging.in_range(queue.scheduled_for, since, until),
    ]
    if before_id is not None:  # the queue's ids are 32-bit
        require_count(before_id, "before_id", 1, INT32_MAX)
    return paging.newest_page(session, queue.scheduled_for, queue.id, conditions, limit, before_id)


def users_with_entries(
    session: Session,
    *,
    pending_only: bool = False,
    limit: int = 100,
    after_id: int | None = None,
) -> list[DigestUser]:
    """The users who have digest entries (only those with some pending when
    ``pending_only``), by id, at most ``limit`` (up to 1000), each with their
    pending and sent counts. The next page: ``after_id`` = the last user id of
    this one. Grouped along ``idx_digest_queue_user_scheduled``."""
    queue = EmailDigestQueue
    size = paging.page_size(limit)
    after = 0 if after_id is None else require_count(after_id, "after_id", 0, INT32_MAX)
    require_flag(pending_only, "pending_only")
    waiting = func.count().filter(queue.included_in_digest == false())
    per_user = (
        select(queue.user_id, waiting.label("pending"), func.count().label("total"))
        .where(queue.user_id > after)
        .group_by(queue.user_id)
        .having(waiting > 0 if pending_only else true())
        .order_by(queue.user_id)
        .limit(size)
        .subquery()
    )
    found = session.execute(
        select(User.id, User.username, User.email, per_user.c.pending, per_user.c.total)
        .join(per_user, per_user.c.user_id == User.id)
        .order_by(User.id)
    )
    return [
        DigestUser(user_id, name, email, int(waits), int(total) - int(waits))
        for user_id, name, email, waits, total in found
    ]


def _filters(
    session: Session, user: User | int | None, event_type: EventType | str | None
) -> list[ColumnElement[bool]]:
    conditions = []
    if user is not None:
        conditions.append(EmailDigestQueue.user_id == require_id(session, User, user, "user"))
    if event_type is not None:
        wanted = require_member(event_type, EventType, "event_type").value
        conditions.append(EmailDigestQueue.event_type == wanted)
    return conditions


def _preference_of_entry() -> ColumnElement[bool]:
    return and_(
        NotificationPreference.user_id == EmailDigestQueue.user_id,
        NotificationPreference.event_type == EmailDigestQueue.event_type,
    )


def _frequency() -> ColumnElement[str]:
    """An entry's frequency: its user's stored preference for its event type, else
    the event's default (``_preference_of_entry`` outer-joined)."""
    defaults = {
        event.value: str(values["email_frequency"])
        for event, values in default_preferences().items()
    }
    immediate = literal(EmailFrequency.IMMEDIATE.value)
    default = case(defaults, value=EmailDigestQueue.event_type, else_=immediate)
    return func.coalesce(NotificationPreference.email_frequency, default)


def _after(session: Session, after_id: object) -> ColumnElement[bool]:
    """Entries after the entry ``after_id`` in (scheduled_for, id) order; none if it
    is gone."""
    queue = EmailDigestQueue
    cursor = require_count(after_id, "after_id", 1, INT32_MAX)
    found = session.execute(select(queue.scheduled_for, queue.id).where(queue.id == cursor)).first()
    if found is None:
        return false()
    at, last = found
    return or_(queue.scheduled_for > at, and_(queue.scheduled_for == at, queue.id > last))
