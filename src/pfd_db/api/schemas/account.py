"""Request and response models of the caller's own account (``/api/v1/me/...``).

Secrets appear in exactly two responses, once: the signing secret of a webhook
just created (:class:`WebhookCreated`) and an API key just issued
(:class:`ApiKeyIssued`). Lists show a key's public prefix only, and a webhook's
URL without its path or query (where Slack-style URLs carry their token).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from pfd_db.api.schemas.common import ApiModel
from pfd_db.models import (
    APIKey,
    EmailLog,
    LoginHistory,
    NotificationPreference,
    SessionLog,
    WebhookConfiguration,
)
from pfd_db.models.enums import EmailFrequency, WebhookProvider

# --- notifications ---------------------------------------------------------------


class Notification(ApiModel):
    """One notification: an e-mail :func:`emit` addressed to the caller."""

    id: int
    event_type: str
    subject: str
    data: dict[str, Any] | None
    status: str
    created_at: datetime
    sent_at: datetime | None
    read: bool
    read_at: datetime | None

    @classmethod
    def of(cls, row: EmailLog) -> Notification:
        """The notification of an ``email_logs`` row."""
        return cls(
            id=row.id,
            event_type=row.event_type,
            subject=row.subject,
            data=row.event_data,
            status=row.status,
            created_at=row.created_at,
            sent_at=row.sent_at,
            read=row.opened_at is not None,
            read_at=row.opened_at,
        )


class UnreadCount(ApiModel):
    """How many of the caller's notifications are unread."""

    unread: int


class MarkedRead(ApiModel):
    """How many notifications a "mark all read" marked."""

    marked: int


# --- preferences -----------------------------------------------------------------


class Preference(ApiModel):
    """What the caller gets for one event."""

    event_type: str
    email_enabled: bool
    in_app_enabled: bool
    slack_enabled: bool
    webhook_enabled: bool
    email_frequency: EmailFrequency


class Preferences(ApiModel):
    """The caller's preference for every notifiable event they have one for."""

    preferences: list[Preference]

    @classmethod
    def of(cls, rows: list[NotificationPreference]) -> Preferences:
        """The preferences of stored rows."""
        return cls(preferences=[Preference.model_validate(row) for row in rows])


class PreferenceChange(ApiModel):
    """A change to one event's preference: only the fields given change."""

    email_enabled: bool | None = None
    in_app_enabled: bool | None = None
    slack_enabled: bool | None = None
    webhook_enabled: bool | None = None
    email_frequency: EmailFrequency | None = None


# --- webhooks --------------------------------------------------------------------


class Webhook(ApiModel):
    """One of the caller's webhooks; its URL without path or query, never its secret."""

    id: int
    user_id: int
    url: str
    host: str
    name: str | None
    description: str | None
    provider: WebhookProvider
    events: list[str]
    is_active: bool
    consecutive_failures: int
    disabled_reason: str | None
    last_used_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: WebhookConfiguration) -> Webhook:
        """The webhook of a stored configuration."""
        return cls(**_webhook_fields(row))


def _webhook_fields(row: WebhookConfiguration) -> dict[str, Any]:
    parts = urlsplit(row.webhook_url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    hidden = "/…" if parts.path.strip("/") or parts.query else "/"
    return {
        "id": row.id,
        "user_id": row.user_id,
        "url": f"{parts.scheme}://{host}{port}{hidden}",
        "host": host,
        "name": row.name,
        "description": row.description,
        "provider": row.provider_type,
        "events": list(row.enabled_events),
        "is_active": row.is_active,
        "consecutive_failures": row.consecutive_failures,
        "disabled_reason": row.disabled_reason,
        "last_used_at": row.last_used_at,
        "created_at": row.created_at,
    }


class WebhookCreate(ApiModel):
    """A new webhook: where it posts and which events it subscribes to."""

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Annotated[list[str], Field(min_length=1, max_length=50)]
    provider: WebhookProvider = WebhookProvider.WEBHOOK
    name: Annotated[str, Field(max_length=200)] | None = None
    description: Annotated[str, Field(max_length=10_000)] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class WebhookCreated(Webhook):
    """A webhook just created, with its signing secret: shown this once."""

    secret: str

    @classmethod
    def made(cls, row: WebhookConfiguration, secret: str) -> WebhookCreated:
        """The response to a creation."""
        return cls(**_webhook_fields(row), secret=secret)


class TestDelivery(ApiModel):
    """The ``test.webhook`` delivery queued to a webhook."""

    delivery_id: int
    webhook_id: int
    event_type: str
    status: str


# --- API keys --------------------------------------------------------------------

Scope = Literal["read", "write", "admin"]


class ApiKey(ApiModel):
    """One API key, masked: its public prefix, never the key."""

    id: int
    user_id: int
    name: str
    prefix: str
    scopes: list[str]
    rate_limit: int
    is_active: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: APIKey) -> ApiKey:
        """The masked key of a stored row."""
        return cls(**_key_fields(row))


def _key_fields(row: APIKey) -> dict[str, Any]:
    return {name: getattr(row, name) for name in ApiKey.model_fields}


def _read_only() -> list[Scope]:
    return ["read"]


class ApiKeyCreate(ApiModel):
    """A key to issue to the caller: at most the scopes of the key that asks."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=3)] = Field(
        default_factory=_read_only
    )
    expires_at: datetime | None = None
    rate_limit: Annotated[int, Field(ge=1, le=2_147_483_647)] = 1000


class ApiKeyIssued(ApiKey):
    """A key just issued, with the key itself: shown this once, never stored."""

    key: str

    @classmethod
    def made(cls, row: APIKey, plaintext: str) -> ApiKeyIssued:
        """The response to an issue."""
        return cls(**_key_fields(row), key=plaintext)


# --- security --------------------------------------------------------------------


class Login(ApiModel):
    """One authentication attempt on the caller's account."""

    id: int
    timestamp: datetime
    success: bool
    login_method: str | None
    failure_reason: str | None
    ip_address: str | None
    user_agent: str | None
    location: str | None

    @classmethod
    def of(cls, row: LoginHistory) -> Login:
        """The attempt of a ``login_history`` row."""
        return cls.model_validate(row)


class ActiveSession(ApiModel):
    """One device the caller is logged in on (never its token)."""

    id: int
    created_at: datetime
    last_active: datetime | None
    expires_at: datetime | None
    ip_address: str | None
    user_agent: str | None
    device_type: str | None
    browser: str | None
    location: str | None

    @classmethod
    def of(cls, row: SessionLog) -> ActiveSession:
        """The device of a live ``session_logs`` row."""
        return cls.model_validate(row)


class SessionRevoked(ApiModel):
    """Whether revoking the session ended it (False: it had ended already)."""

    revoked: bool
