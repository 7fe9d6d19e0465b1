"""The delivery queue: e-mails and webhook calls handed to workers with a lease.

``email_logs`` and ``webhook_logs`` are the queue: a row with status
``pending`` is *due* once its ``next_attempt_at`` has come, unless a worker
holds a lease on it (``lease_owner`` set, ``lease_expires_at`` ahead). A worker

1. :func:`claim`\\ s up to ``limit`` due deliveries of a channel for
   ``lease_seconds`` and commits (on PostgreSQL with ``SELECT ... FOR UPDATE
   SKIP LOCKED``, so concurrent workers pass over each other's rows instead of
   waiting; on SQLite under the write lock);
2. sends each, then reports it with :func:`succeed` or :func:`fail` and commits.

A user's or a webhook's past deliveries: :mod:`pfd_db.store.notify.delivery_history`.

A claimed delivery is handed to no one else while its lease runs. A worker that
dies loses nothing: when its lease runs out the delivery is due again and the
next claim takes it. A lease covers ``[claimed, lease_expires_at)``: at
``lease_expires_at`` itself the delivery is free. A claim reads the clock once
it holds the write lock (SQLite) and the rows (PostgreSQL), so a lease is never
shortened by the wait for them. Reporting checks that the worker still holds the lease it
was given (same owner, same attempt): a worker whose lease ran out and whose
delivery was claimed again gets :class:`~pfd_db.errors.LeaseLost` and changes
nothing. A worker that is done late but was not overtaken still reports fine.

A failure is retried after an exponential backoff (``delivery_backoff_seconds``
doubled per attempt, at most ``delivery_backoff_max_seconds``) until
``delivery_max_attempts`` attempts, then it is failed for good; ``retry=False``
fails it at once (an invalid address, a bounce). A claim counts an attempt, so
a delivery whose every worker dies also ends, failed, after that many attempts.
Webhook results also count towards the webhook's health
(:func:`pfd_db.store.notify.webhooks.record_failure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import ColumnElement, literal_column, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from pfd_db.config import get_settings
from pfd_db.errors import InvalidInput, LeaseLost
from pfd_db.models import EmailLog, WebhookConfiguration, WebhookLog
from pfd_db.models.enums import EmailStatus, EventType, WebhookStatus
from pfd_db.store import remote_text
from pfd_db.store.notify import webhooks
from pfd_db.store.validation import (
    require_count,
    require_flag,
    require_member,
    require_non_negative,
    require_text,
)
from pfd_db.store.writes import one_of_kinds, take_write_lock
from pfd_db.types import utc_or_now
from pfd_db.values import shown

Delivery = EmailLog | WebhookLog
WORKER_MAX = 200
CLAIM_MAX = 1000
LEASE_MAX_SECONDS = 86_400
ERROR_MAX = 10_000
RESPONSE_MAX = 10_000
LEASE_RAN_OUT = "its last attempt's lease ran out before the worker reported"


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


MODELS: dict[Channel, type[EmailLog] | type[WebhookLog]] = {
    Channel.EMAIL: EmailLog,
    Channel.WEBHOOK: WebhookLog,
}
STATUSES: dict[Channel, type[EmailStatus] | type[WebhookStatus]] = {
    Channel.EMAIL: EmailStatus,
    Channel.WEBHOOK: WebhookStatus,
}
FAILURES: dict[Channel, frozenset[str]] = {
    Channel.EMAIL: frozenset({EmailStatus.FAILED, EmailStatus.BOUNCED}),
    Channel.WEBHOOK: frozenset(
        {
            WebhookStatus.FAILED,
            WebhookStatus.TIMEOUT,
            WebhookStatus.RATE_LIMITED,
            WebhookStatus.INVALID_URL,
            WebhookStatus.PROVIDER_ERROR,
        }
    ),
}
PENDING = "pending"
PENDING_LITERAL: ColumnElement[Any] = literal_column("'pending'")
SENT = "sent"


# --- the queue ---------------------------------------------------------------------


def claim(
    session: Session,
    channel: Channel | str,
    worker: str,
    limit: int = 10,
    lease_seconds: int = 60,
    *,
    now: datetime | None = None,
) -> list[Delivery]:
    """Lease up to ``limit`` due deliveries of ``channel`` to ``worker`` for
    ``lease_seconds``, the longest-due first; commit before sending them.

    Each claim counts an attempt. A delivery whose last attempt's lease ran out
    with no attempts left is failed instead of handed out. Deliveries to a
    disabled webhook wait until it is enabled again (``test.webhook`` ones do not).
    """
    channel = require_member(channel, Channel, "channel")
    worker = require_text(worker, "worker", WORKER_MAX)
    limit = require_count(limit, "limit", 1, CLAIM_MAX)
    lease = timedelta(seconds=require_count(lease_seconds, "lease_seconds", 1, LEASE_MAX_SECONDS))
    given = None if now is None else utc_or_now(now)
    model = MODELS[channel]
    take_write_lock(session)  # SQLite: claims queue on the write lock; PostgreSQL: no-op
    picked = session.execute(
        select(model.id, model.attempts)
        .where(_due(channel, utc_or_now(given)))
        .order_by(model.next_attempt_at)  # the due index's order: no sort, LIMIT stops early
        .limit(limit)
        .with_for_update(skip_locked=True, of=model)
    ).all()
    now = utc_or_now(given)  # read once the lock and rows are held: a wait never shortens a lease
    max_attempts = get_settings().delivery_max_attempts
    spent = [row.id for row in picked if row.attempts >= max_attempts]
    if spent:
        _finish(session, model, spent, _failed(channel), error=LEASE_RAN_OUT, now=now)
    order = {row.id: i for i, row in enumerate(picked) if row.attempts < max_attempts}
    if not order:
        return []
    leased = session.scalars(
        update(model)
        .where(model.id.in_(order))
        .values(attempts=model.attempts + 1, lease_owner=worker, lease_expires_at=now + lease)
        .returning(model),
        execution_options={"populate_existing": True},
    ).all()
    if model is WebhookLog:
        _attach_webhooks(session, cast(Sequence[WebhookLog], leased))
    return sorted(cast(Sequence[Delivery], leased), key=lambda delivery: order[delivery.id])


def succeed(
    session: Session,
    delivery: Delivery,
    worker: str,
    *,
    now: datetime | None = None,
    provider: str | None = None,
    message_id: str | None = None,
    http_status_code: int | None = None,
    response_body: str | None = None,
    response_time_ms: float | None = None,
) -> Delivery:
    """Record that ``worker`` delivered ``delivery``: status ``sent``, lease released.
    E-mails take ``provider`` and ``message_id``; webhooks ``http_status_code``,
    ``response_body`` (stored cut to 10 000 characters) and ``response_time_ms``.
    :class:`LeaseLost`, with nothing written, if ``worker`` no longer holds it."""
    channel = _channel_of(delivery)
    now = utc_or_now(now)
    values: dict[str, Any] = {"status": SENT, "sent_at": now}
    values.update(
        _result(channel, provider, message_id, http_status_code, response_body, response_time_ms)
    )
    done = _report(session, delivery, worker, values)
    if isinstance(done, WebhookLog):
        webhooks.record_success(session, done.webhook_config_id, now)
    return done


def fail(
    session: Session,
    delivery: Delivery,
    worker: str,
    error: str,
    *,
    status: str | None = None,
    retry: bool = True,
    now: datetime | None = None,
    http_status_code: int | None = None,
    response_body: str | None = None,
    response_time_ms: float | None = None,
) -> Delivery:
    """Record that ``worker``'s attempt at ``delivery`` failed with ``error``.

    It is due again after the backoff, or, after its last attempt or with
    ``retry=False``, failed for good with ``status`` (default ``failed``;
    e-mails: failed, bounced; webhooks: failed, timeout, rate_limited,
    invalid_url, provider_error). :class:`LeaseLost`, with nothing written, if
    ``worker`` no longer holds it."""
    channel = _channel_of(delivery)
    message = require_text(error, "error", ERROR_MAX)
    final_status = _failure_status(channel, status)
    retry = require_flag(retry, "retry")
    now = utc_or_now(now)
    attempts = delivery.attempts
    settings = get_settings()
    values: dict[str, Any] = {
        "error_message": message,
        "retry_count": type(delivery).retry_count + 1,
    }
    values.update(_result(channel, None, None, http_status_code, response_body, response_time_ms))
    if channel is Channel.WEBHOOK:
        values["failed_at"] = now
    if retry and attempts < settings.delivery_max_attempts:
        values["next_attempt_at"] = now + backoff(attempts)
    else:
        values["status"] = final_status
    done = _report(session, delivery, worker, values)
    if isinstance(done, WebhookLog):
        webhooks.record_failure(session, done.webhook_config_id, message, now)
    return done


def backoff(attempts: int) -> timedelta:
    """How long a delivery waits after its ``attempts``-th attempt failed."""
    settings = get_settings()
    exponent = min(max(require_count(attempts, "attempts") - 1, 0), 60)
    seconds = min(
        settings.delivery_backoff_seconds * 2**exponent, settings.delivery_backoff_max_seconds
    )
    return timedelta(seconds=seconds)


def _due(channel: Channel, now: datetime) -> ColumnElement[bool]:
    model = MODELS[channel]
    due = (
        (model.status == PENDING_LITERAL)  # the due index is partial: it must see the literal
        & (model.next_attempt_at <= now)
        & or_(model.lease_expires_at.is_(None), model.lease_expires_at <= now)
    )
    if channel is Channel.WEBHOOK:
        active = select(WebhookConfiguration.id).where(WebhookConfiguration.is_active)
        due &= or_(
            WebhookLog.webhook_config_id.in_(active),
            WebhookLog.event_type == EventType.TEST_WEBHOOK.value,
        )
    return due


def _attach_webhooks(session: Session, calls: Sequence[WebhookLog]) -> None:
    """Load the webhooks of ``calls`` in one query and hand each call its own, so a
    worker signing them sends no query per call."""
    ids = {call.webhook_config_id for call in calls}
    configs = {
        config.id: config
        for config in session.scalars(
            select(WebhookConfiguration).where(WebhookConfiguration.id.in_(ids))
        )
    }
    for call in calls:
        set_committed_value(call, "webhook_config", configs[call.webhook_config_id])


def _report(session: Session, delivery: Delivery, worker: str, values: dict[str, Any]) -> Delivery:
    """Apply ``values`` and release the lease, if ``worker`` still holds the lease
    on the attempt ``delivery`` records.

    The documented exception to :mod:`pfd_db.store.status`: the condition is the
    lease (owner and attempt), not a status machine, and ``delivery`` may be a
    copy of what the worker was handed, attached to no session, so the UPDATE
    names the row by its id rather than through ``status.update_if``."""
    model = type(delivery)
    worker = require_text(worker, "worker", WORKER_MAX)
    done = session.scalars(
        update(model)
        .where(
            model.id == delivery.id,
            model.status == PENDING,
            model.lease_owner == worker,
            model.attempts == delivery.attempts,
        )
        .values(lease_owner=None, lease_expires_at=None, **values)
        .returning(model),  # the worker holds the lease: only these columns changed
    ).one_or_none()
    if done is None:
        raise LeaseLost(
            f"{model.__tablename__} {delivery.id}: worker {worker!r} no longer holds attempt "
            f"{delivery.attempts} (its lease ran out and another worker took it, or it is done)"
        )
    return cast(Delivery, done)


def _finish(
    session: Session,
    model: type[Delivery],
    ids: Sequence[int],
    status: str,
    *,
    error: str,
    now: datetime,
) -> None:
    values: dict[str, Any] = {"status": status, "error_message": error}
    values.update(lease_owner=None, lease_expires_at=None)
    if model is WebhookLog:
        values["failed_at"] = now
    session.execute(
        update(model).where(model.id.in_(ids)).values(**values),
        execution_options={"synchronize_session": False},
    )


def _result(
    channel: Channel,
    provider: str | None,
    message_id: str | None,
    http_status_code: int | None,
    response_body: str | None,
    response_time_ms: float | None,
) -> dict[str, Any]:
    """The checked outcome details of an attempt, for the columns its channel has."""
    email_only = {"provider": provider, "message_id": message_id}
    webhook_only = {
        "http_status_code": http_status_code,
        "response_body": response_body,
        "response_time_ms": response_time_ms,
    }
    wrong = email_only if channel is Channel.WEBHOOK else webhook_only
    given = [name for name, value in wrong.items() if value is not None]
    if given:
        raise InvalidInput(f"{given} do not apply to {channel.value} deliveries")
    values: dict[str, Any] = {}
    if provider is not None:
        values["provider"] = require_text(provider, "provider", 50)
    if message_id is not None:
        values["message_id"] = require_text(message_id, "message_id", 255)
    if http_status_code is not None:
        values["http_status_code"] = require_count(http_status_code, "http_status_code", 100, 599)
    if response_body is not None:
        values["response_body"] = remote_text.checked(response_body, "response_body", RESPONSE_MAX)
    if response_time_ms is not None:
        values["response_time_ms"] = require_non_negative(response_time_ms, "response_time_ms")
    return values


def _channel_of(delivery: object) -> Channel:
    kind = one_of_kinds(delivery, (EmailLog, WebhookLog), "delivery")
    return Channel.EMAIL if isinstance(kind, EmailLog) else Channel.WEBHOOK


def _failed(channel: Channel) -> str:
    return EmailStatus.FAILED.value if channel is Channel.EMAIL else WebhookStatus.FAILED.value


def _failure_status(channel: Channel, status: object) -> str:
    if status is None:
        return _failed(channel)
    if not isinstance(status, str) or status not in FAILURES[channel]:
        allowed = ", ".join(sorted(FAILURES[channel]))
        raise InvalidInput(
            f"status must be one of {allowed} for {channel.value} (got {shown(status)})"
        )
    return str(status)
