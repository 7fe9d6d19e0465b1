"""Webhooks: per-user configurations, their signing secrets, health and statistics.

A user has at most one webhook per URL. Each subscribes to some of the
notifiable events (:data:`~pfd_db.models.enums.NOTIFIABLE_EVENTS`);
:func:`pfd_db.store.notify.notifications.emit` queues a delivery for each active
webhook subscribed to the event, and :func:`send_test` queues a ``test.webhook``
delivery to one webhook, active or not, whatever it subscribes to.

Signing. A secret is made at creation, returned once, and stored encrypted with
the instance key. A worker signs the body it sends with :func:`signature`
(header :data:`SIGNATURE_HEADER`), as Stripe does: ``t=<unix time>,v1=<hex
HMAC-SHA256 of "<t>.<body>">``. The receiver recomputes the HMAC and refuses an
old ``t``, so a captured request cannot be replayed later.

Health. Each failed delivery attempt counts one consecutive failure, each
success resets the count; at ``webhook_failure_limit`` (10) the webhook is
disabled with the reason recorded, and :func:`enable` resets the count.

Targets: only public http(s) hosts (:mod:`pfd_db.store.notify.webhook_targets`, checked
at creation and URL change; a worker calls ``resolve_target`` before sending).
Creation, a URL change, deletion and a new secret are audited (``webhook.created``,
``webhook.url_changed``, ``webhook.deleted``, ``webhook.secret_rotated``) with the
webhook's id, owner and host: never its path, query or secret.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.crypto import decrypt, encrypt, random_token
from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import User, WebhookConfiguration, WebhookLog
from pfd_db.models.enums import NOTIFIABLE_EVENTS, EventType, WebhookProvider, WebhookStatus
from pfd_db.store import paging
from pfd_db.store.notify.webhook_targets import check_url
from pfd_db.store.ops import audit
from pfd_db.store.ops.rotation import REENCRYPT_BATCH, Reencrypted, reencrypt_batch
from pfd_db.store.status import reread, update_if, update_where
from pfd_db.store.validation import (
    optional_text,
    require_items,
    require_member,
    require_object,
    require_str,
    require_text,
)
from pfd_db.store.writes import add_unique, load, one_of_kinds, require_id, set_unique
from pfd_db.types import utc_or_now
from pfd_db.values import shown

SIGNATURE_HEADER = "X-PFD-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the public prefix of every secret
SECRET_BYTES = 32
NAME_MAX = 200
DESCRIPTION_MAX = 10_000
ERROR_MAX = 10_000
URL_TAKEN = "this user already has a webhook for that URL"
CHANGEABLE = frozenset({"url", "events", "provider", "name", "description", "settings"})
TOUCH_INTERVAL = timedelta(minutes=1)
TEST_MESSAGE = "A test delivery from the PFD dashboard: this webhook is reachable."


@dataclass(frozen=True)
class WebhookStats:
    """A webhook's delivery record. ``success_rate`` is sent / finished (None
    before any finished); ``p95_latency_ms`` is the nearest-rank 95th percentile
    of the response times recorded (None before any)."""

    deliveries: int
    by_status: dict[str, int]
    success_rate: float | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    p95_latency_ms: float | None


# --- configurations ----------------------------------------------------------------


def create_webhook(
    session: Session,
    user: User | int,
    url: str,
    events: Iterable[EventType | str],
    *,
    provider: WebhookProvider | str = WebhookProvider.WEBHOOK,
    name: str | None = None,
    description: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> tuple[WebhookConfiguration, str]:
    """A new active webhook of ``user`` posting ``events`` to ``url``; returns
    ``(configuration, signing secret)``, the secret shown this once.
    :class:`InvalidInput` naming the field, :class:`Conflict` if the user has a
    webhook for that URL already."""
    user_id = require_id(session, User, user, "user")
    secret = SECRET_PREFIX + random_token(SECRET_BYTES)
    config = WebhookConfiguration(
        user_id=user_id,
        webhook_url=check_url(url),
        enabled_events=_events(events),
        provider_type=require_member(provider, WebhookProvider, "provider").value,
        name=optional_text(name, "name", NAME_MAX),
        description=optional_text(description, "description", DESCRIPTION_MAX),
        settings=require_object({} if settings is None else settings, "settings"),
        signing_secret=encrypt(secret),
    )
    key = {
        WebhookConfiguration.user_id: user_id,
        WebhookConfiguration.webhook_url: config.webhook_url,
    }
    add_unique(session, config, key, conflict=URL_TAKEN)
    _audit(session, "webhook.created", config, events=config.enabled_events)
    return config, secret


def get_webhook(
    session: Session, webhook: WebhookConfiguration | int, user: User | int | None = None
) -> WebhookConfiguration:
    """The webhook (a row or its id); with ``user``, only if it is theirs
    (:class:`NotFound` otherwise, as for an unknown id)."""
    config = load(session, WebhookConfiguration, webhook, "webhook")
    if user is not None and config.user_id != require_id(session, User, user, "user"):
        raise NotFound(f"no webhook with id {config.id} for this user")
    return config


def list_webhooks(session: Session, user: User | int) -> list[WebhookConfiguration]:
    """``user``'s webhooks, oldest first."""
    user_id = require_id(session, User, user, "user")
    return list(
        session.scalars(
            select(WebhookConfiguration)
            .where(WebhookConfiguration.user_id == user_id)
            .order_by(WebhookConfiguration.created_at, WebhookConfiguration.id)
        )
    )


def update_webhook(
    session: Session, webhook: WebhookConfiguration | int, **changes: Any
) -> WebhookConfiguration:
    """Change any of ``url``, ``events``, ``provider``, ``name``, ``description``,
    ``settings``; all are checked before any is applied."""
    config = load(session, WebhookConfiguration, webhook, "webhook")
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise InvalidInput(f"cannot change {sorted(unknown)}; changeable: {sorted(CHANGEABLE)}")
    values: dict[str, Any] = {}
    if "url" in changes:
        values["webhook_url"] = check_url(changes["url"])
    if "events" in changes:
        values["enabled_events"] = _events(changes["events"])
    if "provider" in changes:
        values["provider_type"] = require_member(
            changes["provider"], WebhookProvider, "provider"
        ).value
    if "name" in changes:
        values["name"] = optional_text(changes["name"], "name", NAME_MAX)
    if "description" in changes:
        values["description"] = optional_text(
            changes["description"], "description", DESCRIPTION_MAX
        )
    if "settings" in changes:
        values["settings"] = require_object(changes["settings"], "settings")
    url, old_url = values.get("webhook_url"), config.webhook_url
    if url is not None and url != old_url:
        set_unique(session, config, values, _others_with_url(config, url), conflict=URL_TAKEN)
        _audit(session, "webhook.url_changed", config, from_host=_host_of(old_url))
    else:
        for attribute, value in values.items():
            setattr(config, attribute, value)
        session.flush()
    return config


def enable(session: Session, webhook: WebhookConfiguration | int) -> WebhookConfiguration:
    """Activate the webhook, with its failure count reset and its disable reason cleared."""
    config = load(session, WebhookConfiguration, webhook, "webhook")
    changed = update_if(
        session, config, is_active=True, consecutive_failures=0, disabled_reason=None
    )
    return config if changed else reread(session, config)  # NotFound: deleted meanwhile


def disable(
    session: Session, webhook: WebhookConfiguration | int, reason: str = "disabled by its owner"
) -> WebhookConfiguration:
    """Deactivate the webhook, recording why; its pending deliveries wait until it is
    enabled again (a ``test.webhook`` delivery still goes out)."""
    config = load(session, WebhookConfiguration, webhook, "webhook")
    reason = require_text(reason, "reason", ERROR_MAX)
    changed = update_if(session, config, is_active=False, disabled_reason=reason)
    return config if changed else reread(session, config)  # NotFound: deleted meanwhile


def delete_webhook(session: Session, webhook: WebhookConfiguration | int) -> None:
    """Delete the webhook with its delivery log and pending deliveries."""
    config = load(session, WebhookConfiguration, webhook, "webhook")
    _audit(session, "webhook.deleted", config)
    session.delete(config)
    session.flush()


# --- signing ---------------------------------------------------------------------


def rotate_secret(session: Session, webhook: WebhookConfiguration | int) -> str:
    """Give the webhook a new signing secret and return it, shown this once (also
    the way to give one to a webhook made before secrets existed)."""
    config = load(session, WebhookConfiguration, webhook, "webhook")
    secret = SECRET_PREFIX + random_token(SECRET_BYTES)
    config.signing_secret = encrypt(secret)
    session.flush()
    _audit(session, "webhook.secret_rotated", config)
    return secret


def signature(config: WebhookConfiguration, body: bytes | str, now: datetime | None = None) -> str:
    """The :data:`SIGNATURE_HEADER` value for sending ``body`` to ``config`` at ``now``:
    ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body under the secret>``."""
    config = one_of_kinds(config, (WebhookConfiguration,), "config")
    if config.signing_secret is None:
        raise InvalidInput(f"webhook {config.id} has no signing secret; rotate_secret makes one")
    if not isinstance(body, bytes):
        body = require_str(body, "body").encode()
    timestamp = int(utc_or_now(now).timestamp())
    secret = decrypt(config.signing_secret).encode()
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, "sha256").hexdigest()
    return f"t={timestamp},v1={digest}"


def reencrypt_secrets(
    session: Session, after_id: int = 0, limit: int = REENCRYPT_BATCH
) -> Reencrypted:
    """Re-encrypt under the first instance key the signing secrets of up to ``limit``
    webhooks with an id above ``after_id``, in id order: the webhooks' share of
    ``pfd-db key rotate`` (see :func:`pfd_db.store.ops.rotation.reencrypt_batch`)."""
    return reencrypt_batch(session, WebhookConfiguration.signing_secret, after_id, limit)


# --- deliveries ------------------------------------------------------------------


def payload(
    event_type: EventType | str, data: Mapping[str, Any], now: datetime | None = None
) -> dict[str, Any]:
    """The JSON document a webhook receives for an event raised at ``now``."""
    event = require_member(event_type, EventType, "event_type")
    document = require_object(data, "data")
    return {"event": event.value, "created_at": utc_or_now(now).isoformat(), "data": document}


def send_test(
    session: Session, webhook: WebhookConfiguration | int, now: datetime | None = None
) -> WebhookLog:
    """Queue a ``test.webhook`` delivery to the webhook (the "send test" button)."""
    config = load(session, WebhookConfiguration, webhook, "webhook")
    now = utc_or_now(now)
    delivery = new_delivery(config, EventType.TEST_WEBHOOK, {"message": TEST_MESSAGE}, now)
    session.add(delivery)
    session.flush()
    return delivery


def new_delivery(
    config: WebhookConfiguration,
    event_type: EventType | str,
    data: Mapping[str, Any],
    now: datetime | None = None,
) -> WebhookLog:
    """A pending delivery of ``event_type`` to ``config``, due at ``now`` (not added
    to a session: :func:`~pfd_db.store.notify.notifications.emit` adds them)."""
    config = one_of_kinds(config, (WebhookConfiguration,), "config")
    now = utc_or_now(now)
    document = payload(event_type, data, now)
    return WebhookLog(
        webhook_config_id=config.id,
        user_id=config.user_id,
        event_type=document["event"],
        provider_type=config.provider_type,
        webhook_url=config.webhook_url,
        payload=document,
        status=WebhookStatus.PENDING.value,
        next_attempt_at=now,
    )


def record_success(
    session: Session, webhook: WebhookConfiguration | int, now: datetime | None = None
) -> None:
    """A delivery to the webhook succeeded: its failure count starts again from 0,
    and ``last_used_at`` moves on if it is a minute old (so that workers delivering
    to one webhook do not all queue to rewrite its row). (Called by
    :func:`pfd_db.store.notify.deliveries.succeed`.)"""
    webhook_id = require_id(session, WebhookConfiguration, webhook, "webhook")
    now = utc_or_now(now)
    config = WebhookConfiguration
    update_where(
        session,
        config,
        [
            config.id == webhook_id,
            or_(
                config.consecutive_failures != 0,
                config.last_used_at.is_(None),
                config.last_used_at <= now - TOUCH_INTERVAL,
            ),
        ],
        consecutive_failures=0,
        last_used_at=now,
    )


def record_failure(
    session: Session, webhook: WebhookConfiguration | int, error: str, now: datetime | None = None
) -> None:
    """A delivery attempt failed: count it, in one atomic update, and disable the
    webhook with the reason when the count reaches ``webhook_failure_limit``.
    (Called by :func:`pfd_db.store.notify.deliveries.fail`.)"""
    row = load(session, WebhookConfiguration, webhook, "webhook")
    error = require_text(error, "error", ERROR_MAX)
    now = utc_or_now(now)
    config = WebhookConfiguration
    limit = get_settings().webhook_failure_limit
    reaches_limit = and_(config.is_active, config.consecutive_failures + 1 >= limit)
    reason = f"disabled after {limit} consecutive failed deliveries; the last: {error}"
    update_if(
        session,
        row,
        consecutive_failures=config.consecutive_failures + 1,
        last_error=error,
        last_used_at=now,
        disabled_reason=case((reaches_limit, reason[:ERROR_MAX]), else_=config.disabled_reason),
        is_active=case((reaches_limit, False), else_=config.is_active),
    )


# --- statistics ------------------------------------------------------------------


def stats(
    session: Session,
    webhook: WebhookConfiguration | int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> WebhookStats:
    """Deliveries by status, success rate, last success and failure, p95 latency: of
    all the webhook's deliveries, or of those created in ``[since, until)``."""
    config_id = require_id(session, WebhookConfiguration, webhook, "webhook")
    window = paging.in_range(WebhookLog.created_at, since, until)
    mine = and_(WebhookLog.webhook_config_id == config_id, *window)
    by_status = {
        str(status): int(count)
        for status, count in session.execute(
            select(WebhookLog.status, func.count()).where(mine).group_by(WebhookLog.status)
        )
    }
    sent = WebhookStatus.SENT.value
    last_success, last_failure, timed = session.execute(
        select(
            func.max(WebhookLog.sent_at).filter(WebhookLog.status == sent),
            func.max(WebhookLog.failed_at),
            func.count(WebhookLog.response_time_ms),
        ).where(mine)
    ).one()
    finished = sum(n for status, n in by_status.items() if status != WebhookStatus.PENDING.value)
    return WebhookStats(
        deliveries=sum(by_status.values()),
        by_status=by_status,
        success_rate=by_status.get(sent, 0) / finished if finished else None,
        last_success_at=last_success,
        last_failure_at=last_failure,
        p95_latency_ms=_nearest_rank(session, mine, 0.95, timed),
    )


def _nearest_rank(session: Session, where: Any, fraction: float, count: int) -> float | None:
    if not count:
        return None
    rank = math.ceil(fraction * count)
    return session.scalar(
        select(WebhookLog.response_time_ms)
        .where(where, WebhookLog.response_time_ms.is_not(None))
        .order_by(WebhookLog.response_time_ms)
        .offset(rank - 1)
        .limit(1)
    )


# --- checks ----------------------------------------------------------------------


def _audit(session: Session, action: str, config: WebhookConfiguration, **details: Any) -> None:
    """Audit ``action`` on ``config``: its id, owner and host, never its path or query
    (a Slack-style URL carries a token there) nor its secret."""
    host = _host_of(config.webhook_url)
    named = {"webhook_id": config.id, "user_id": config.user_id, "host": host}
    audit.record(session, audit.actor(session), action, details=named | details)


def _host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def _events(values: object) -> list[str]:
    notifiable = ", ".join(e.value for e in NOTIFIABLE_EVENTS)
    events: list[str] = []
    for value in require_items(values, "events"):
        event = next((e for e in NOTIFIABLE_EVENTS if e == value), None)
        if event is None:
            raise InvalidInput(f"events: {shown(value)} is not one of {notifiable}")
        if event.value not in events:
            events.append(event.value)
    return events


def _others_with_url(config: WebhookConfiguration, url: str) -> ColumnElement[bool]:
    """Another webhook of ``config``'s owner posting to ``url``."""
    return and_(
        WebhookConfiguration.user_id == config.user_id,
        WebhookConfiguration.webhook_url == url,
        WebhookConfiguration.id != config.id,
    )
