"""Notification preferences, and :func:`emit`: the one call that raises an event.

:func:`emit` is a transactional outbox: it only adds rows to the caller's
transaction. If the caller rolls back, nothing was emitted; once it commits,
the workers (:mod:`pfd_db.store.notify.deliveries`, :mod:`pfd_db.store.notify.digests`)
deliver what it queued, even if the process that emitted dies right after.

What a user gets for an event, from their preference for it (the defaults of
:func:`~pfd_db.models.enums.default_preferences` when they have none stored):

- with ``email_enabled``: an e-mail queued at once (``email_frequency``
  ``immediate``), or an entry in their next daily or weekly digest;
- for each of their active webhooks subscribed to the event, a webhook
  delivery (the webhook's own subscription decides, not the preference flags).

Inactive users get nothing. ``in_app_enabled``, ``slack_enabled`` and
``webhook_enabled`` are kept for the dashboard to read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput
from pfd_db.models import (
    EmailDigestQueue,
    EmailLog,
    NotificationPreference,
    User,
    WebhookConfiguration,
    WebhookLog,
)
from pfd_db.models.enums import (
    NOTIFIABLE_EVENTS,
    EmailFrequency,
    EmailStatus,
    EventType,
    default_preferences,
)
from pfd_db.store.notify import digests, webhooks
from pfd_db.store.validation import (
    require_flag,
    require_items,
    require_member,
    require_object,
    require_text,
)
from pfd_db.store.writes import insert_ignoring_conflicts, load, require_id
from pfd_db.types import utc_or_now

FLAGS = ("email_enabled", "in_app_enabled", "slack_enabled", "webhook_enabled")
SUBJECT_MAX = 255
SUBJECTS = {
    EventType.TRAINING_STARTED: "Training started",
    EventType.TRAINING_COMPLETE: "Training complete",
    EventType.TRAINING_FAILED: "Training failed",
    EventType.TRAINING_PAUSED: "Training paused",
    EventType.TRAINING_RESUMED: "Training resumed",
    EventType.HPO_CAMPAIGN_STARTED: "HPO campaign started",
    EventType.HPO_TRIAL_COMPLETE: "HPO trial complete",
    EventType.HPO_CAMPAIGN_COMPLETE: "HPO campaign complete",
    EventType.HPO_CAMPAIGN_FAILED: "HPO campaign failed",
    EventType.ACCURACY_MILESTONE: "Accuracy milestone reached",
    EventType.MODEL_DEPLOYED: "Model deployed",
    EventType.SYSTEM_MAINTENANCE: "System maintenance",
}


@dataclass
class Emitted:
    """What :func:`emit` queued: e-mails, digest entries and webhook deliveries."""

    emails: list[EmailLog] = field(default_factory=list)
    digest_entries: list[EmailDigestQueue] = field(default_factory=list)
    webhook_deliveries: list[WebhookLog] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.emails) + len(self.digest_entries) + len(self.webhook_deliveries)


# --- preferences -------------------------------------------------------------------


def add_default_preferences(session: Session, user: User | int) -> int:
    """Give ``user`` the default preference for every notifiable event they have
    none for; returns how many were added (0 when they had them all)."""
    user_id = require_id(session, User, user, "user")
    rows = [
        {"user_id": user_id, "event_type": event.value, **values}
        for event, values in default_preferences().items()
    ]
    added = session.scalars(
        insert_ignoring_conflicts(session, NotificationPreference)
        .values(rows)
        .returning(NotificationPreference.id)
    ).all()
    return len(added)


def preferences(session: Session, user: User | int) -> dict[EventType, NotificationPreference]:
    """``user``'s stored preferences by event, in the order of the event types."""
    user_id = require_id(session, User, user, "user")
    stored = {
        pref.event_type: pref
        for pref in session.scalars(
            select(NotificationPreference).where(NotificationPreference.user_id == user_id)
        )
    }
    return {event: stored[event.value] for event in NOTIFIABLE_EVENTS if event.value in stored}


def set_preference(
    session: Session, user: User | int, event_type: EventType | str, **changes: Any
) -> NotificationPreference:
    """Change ``user``'s preference for ``event_type``: any of ``email_enabled``,
    ``in_app_enabled``, ``slack_enabled``, ``webhook_enabled`` (bools) and
    ``email_frequency`` (immediate, digest_daily, digest_weekly). A missing
    preference is made from the defaults first."""
    event = _notifiable(event_type, "event_type")
    values = _preference_values(changes)
    user_id = require_id(session, User, user, "user")
    defaults = default_preferences()[event]
    session.execute(
        insert_ignoring_conflicts(session, NotificationPreference).values(
            user_id=user_id, event_type=event.value, **defaults
        )
    )
    pref = session.scalars(
        select(NotificationPreference).where(
            NotificationPreference.user_id == user_id,
            NotificationPreference.event_type == event.value,
        )
    ).one()
    for name, value in values.items():
        setattr(pref, name, value)
    session.flush()
    return pref


# --- emit --------------------------------------------------------------------------


def emit(
    session: Session,
    event_type: EventType | str,
    users: Iterable[User | int],
    data: Mapping[str, Any],
    *,
    subject: str | None = None,
    now: datetime | None = None,
) -> Emitted:
    """Raise ``event_type`` for ``users`` (rows or ids) with ``data`` (a JSON
    object), queuing in the caller's transaction what each user's preference and
    webhooks ask for (see the module doc). ``subject`` replaces the e-mail
    subject made from the event. Nothing is queued, and :class:`InvalidInput` or
    :class:`NotFound` raised, when the event, the data or any user is unknown or malformed."""
    event = _notifiable(event_type, "event_type")
    data = require_object(data, "data")
    subject = require_text(subject or SUBJECTS[event], "subject", SUBJECT_MAX)
    now = utc_or_now(now)
    recipients = _active_users(session, users)
    ids = [user.id for user in recipients]
    stored = {
        pref.user_id: pref
        for pref in session.scalars(
            select(NotificationPreference).where(
                NotificationPreference.user_id.in_(ids),
                NotificationPreference.event_type == event.value,
            )
        )
    }
    subscribed = [
        config
        for config in session.scalars(
            select(WebhookConfiguration)
            .where(WebhookConfiguration.user_id.in_(ids), WebhookConfiguration.is_active)
            .order_by(WebhookConfiguration.id)
        )
        if event.value in config.enabled_events
    ]
    defaults = default_preferences()[event]
    emitted = Emitted()
    for user in recipients:
        pref = stored.get(user.id)
        email_on = pref.email_enabled if pref else bool(defaults["email_enabled"])
        frequency = EmailFrequency(
            pref.email_frequency if pref else str(defaults["email_frequency"])
        )
        if not email_on:
            continue
        if frequency is EmailFrequency.IMMEDIATE:
            emitted.emails.append(_email(user, event, subject, data, now))
        else:
            scheduled = digests.next_digest_at(frequency, now)
            emitted.digest_entries.append(
                EmailDigestQueue(
                    user_id=user.id,
                    event_type=event.value,
                    event_data=data,
                    scheduled_for=scheduled,
                )
            )
    emitted.webhook_deliveries = [
        webhooks.new_delivery(config, event, data, now) for config in subscribed
    ]
    session.add_all([*emitted.emails, *emitted.digest_entries, *emitted.webhook_deliveries])
    session.flush()
    return emitted


def _email(
    user: User, event: EventType, subject: str, data: dict[str, Any], now: datetime
) -> EmailLog:
    return EmailLog(
        user_id=user.id,
        recipient_email=user.email,
        event_type=event.value,
        subject=subject,
        template_name=event.value.replace(".", "_"),
        event_data=data,
        status=EmailStatus.PENDING.value,
        next_attempt_at=now,
    )


def _active_users(session: Session, users: Iterable[User | int]) -> list[User]:
    rows = [load(session, User, user, "users") for user in require_items(users, "users")]
    if any(row.id is None for row in rows):
        session.flush()
    return [row for row in {row.id: row for row in rows}.values() if row.is_active]


# --- checks ------------------------------------------------------------------------


def _notifiable(value: object, field_name: str) -> EventType:
    event = require_member(value, EventType, field_name)
    if event not in NOTIFIABLE_EVENTS:
        raise InvalidInput(
            f"{field_name}: {event.value} is not a notifiable event "
            "(webhooks.send_test sends test.webhook)"
        )
    return event


def _preference_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - {*FLAGS, "email_frequency"}
    if unknown:
        raise InvalidInput(
            f"unknown preference fields {sorted(unknown)}; known: {[*FLAGS, 'email_frequency']}"
        )
    values: dict[str, Any] = {
        name: require_flag(value, name) for name, value in changes.items() if name in FLAGS
    }
    if "email_frequency" in changes:
        values["email_frequency"] = require_member(
            changes["email_frequency"], EmailFrequency, "email_frequency"
        ).value
    return values
