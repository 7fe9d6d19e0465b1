"""Past deliveries: a user's e-mails and webhook calls, or one webhook's calls.

The read side of the delivery queue (:mod:`pfd_db.store.notify.deliveries`): keyset
pages, newest first, of at most 1000 rows (:mod:`pfd_db.store.paging`, as every
log), and counts by status. A user's
rows are found through ``user_id``'s index, a webhook's through
``webhook_config_id``'s.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput
from pfd_db.models import EmailLog, User, WebhookConfiguration, WebhookLog
from pfd_db.models.enums import EventType
from pfd_db.store import paging
from pfd_db.store.notify.deliveries import MODELS, STATUSES, Channel
from pfd_db.store.validation import require_member
from pfd_db.store.writes import require_id
from pfd_db.types import utc_or_now


def history(
    session: Session,
    channel: Channel | str,
    user: User | int | None = None,
    *,
    webhook: WebhookConfiguration | int | None = None,
    status: str | None = None,
    event_type: EventType | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[EmailLog | WebhookLog]:
    """``user``'s e-mails or webhook deliveries, or ``webhook``'s deliveries (channel
    ``webhook``; with both, those of the webhook that are the user's), newest first
    (by creation time, then id), at most ``limit`` (up to 1000), optionally only
    those with ``status``, of ``event_type``, or created in ``[since, until)``.

    Keyset pages (:func:`pfd_db.store.paging.newest_page`): the next page is
    ``before_id`` = the id of the last delivery of this one. How many match in all:
    the sum of :func:`counts_by_status`."""
    channel = require_member(channel, Channel, "channel")
    model = MODELS[channel]
    where = _filters(session, channel, user, webhook, status, event_type, since, until)
    return paging.newest_page(session, model.created_at, model.id, where, limit, before_id)


def counts_by_status(
    session: Session,
    channel: Channel | str,
    user: User | int | None = None,
    *,
    webhook: WebhookConfiguration | int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, int]:
    """How many of ``user``'s e-mails or webhook deliveries, or of ``webhook``'s
    deliveries, have each status (every status listed, 0 included), optionally
    only those created in ``[since, until)``."""
    channel = require_member(channel, Channel, "channel")
    model = MODELS[channel]
    where = _filters(session, channel, user, webhook, None, None, since, until)
    counts = {status.value: 0 for status in STATUSES[channel]}
    for status, count in session.execute(
        select(model.status, func.count()).where(*where).group_by(model.status)
    ):
        counts[str(status)] = int(count)
    return counts


def _filters(
    session: Session,
    channel: Channel,
    user: User | int | None,
    webhook: WebhookConfiguration | int | None,
    status: object,
    event_type: object,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    model = MODELS[channel]
    if user is None and webhook is None:
        raise InvalidInput("a delivery history needs a user or a webhook (got neither)")
    if webhook is not None and channel is not Channel.WEBHOOK:
        raise InvalidInput(f"webhook applies to webhook deliveries only (channel is {channel})")
    where: list[ColumnElement[bool]] = []
    if user is not None:
        where.append(model.user_id == require_id(session, User, user, "user"))
    if webhook is not None:
        webhook_id = require_id(session, WebhookConfiguration, webhook, "webhook")
        where.append(WebhookLog.webhook_config_id == webhook_id)
    if status is not None:
        where.append(model.status == require_member(status, STATUSES[channel], "status").value)
    if event_type is not None:
        where.append(model.event_type == require_member(event_type, EventType, "event_type").value)
    if since is not None:
        where.append(model.created_at >= utc_or_now(since))
    if until is not None:
        where.append(model.created_at < utc_or_now(until))
    return where
