"""Notifications: per-user preferences, e-mail log and digest queue, webhooks.

``email_logs`` and ``webhook_logs`` double as the delivery queue (see
:mod:`pfd_db.store.notify.deliveries`): a pending row is due at ``next_attempt_at``;
a worker holds it while ``lease_owner`` is set and ``lease_expires_at`` lies
ahead; ``attempts`` counts the times it was handed out.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from pfd_db.models.base import Base, IndexedTimestamps, Timestamps, one_of
from pfd_db.models.enums import (
    EmailFrequency,
    EmailStatus,
    EventType,
    WebhookProvider,
    WebhookStatus,
)
from pfd_db.types import BigID, JSONDoc, UTCDateTime, utcnow

if TYPE_CHECKING:
    from pfd_db.models.auth import User

EVENT_TYPES = [e.value for e in EventType]
PROVIDERS = [p.value for p in WebhookProvider]
PENDING_ONLY = text("status = 'pending'")


class Queued:
    """The columns that make a log table a delivery queue."""

    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def due_index(table: str) -> Index:
    """The index a worker's claim reads: pending rows by their next attempt."""
    return Index(
        f"ix_{table}_due",
        "next_attempt_at",
        postgresql_where=PENDING_ONLY,
        sqlite_where=PENDING_ONLY,
    )


class NotificationPreference(Timestamps, Base):
    __tablename__ = "notification_preferences"
    __table_args__ = (
        UniqueConstraint("user_id", "event_type", name="uq_user_event_type"),
        one_of("event_type", EVENT_TYPES, name="event_type"),
        one_of("email_frequency", [f.value for f in EmailFrequency], name="email_frequency"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(50), index=True)
    email_enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    in_app_enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    slack_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    webhook_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    email_frequency: Mapped[str] = mapped_column(
        String(20),
        default=EmailFrequency.IMMEDIATE.value,
        server_default=EmailFrequency.IMMEDIATE.value,
    )

    user: Mapped[User] = relationship(back_populates="notification_preferences")


class EmailLog(Queued, IndexedTimestamps, Base):
    __tablename__ = "email_logs"
    __table_args__ = (
        due_index("email_logs"),
        one_of("event_type", EVENT_TYPES, name="event_type"),
        one_of("status", [s.value for s in EmailStatus], name="status"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True, sort_order=-1)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    recipient_email: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(50), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    template_name: Mapped[str] = mapped_column(String(100))
    event_data: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    provider: Mapped[str | None] = mapped_column(String(50))
    message_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), index=True)
    error_message: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_count: Mapped[int] = mapped_column(default=0, server_default="0")

    user: Mapped[User | None] = relationship(back_populates="email_logs")


class EmailDigestQueue(Timestamps, Base):
    __tablename__ = "email_digest_queue"
    __table_args__ = (
        Index("idx_digest_queue_user_scheduled", "user_id", "scheduled_for"),
        Index("idx_digest_queue_included", "included_in_digest", "scheduled_for"),
        Index("idx_digest_queue_event_scheduled", "event_type", "scheduled_for"),
        one_of("event_type", EVENT_TYPES, name="event_type"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(50))
    event_data: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    included_in_digest: Mapped[bool] = mapped_column(default=False, server_default=false())

    user: Mapped[User] = relationship(back_populates="digest_queue")


class WebhookConfiguration(IndexedTimestamps, Base):
    __tablename__ = "webhook_configurations"
    __table_args__ = (
        UniqueConstraint("user_id", "webhook_url", name="uq_user_webhook_url"),
        one_of("provider_type", PROVIDERS, name="provider_type"),
    )
    __secret_columns__ = frozenset({"signing_secret"})

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider_type: Mapped[str] = mapped_column(String(50), index=True)
    webhook_url: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true(), index=True)
    enabled_events: Mapped[list[str]] = mapped_column(
        JSONDoc, default=list, server_default=text("'[]'")
    )
    settings: Mapped[dict[str, Any]] = mapped_column(
        JSONDoc, default=dict, server_default=text("'{}'")
    )
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    signing_secret: Mapped[str | None] = mapped_column(Text)  # encrypted with the instance key
    disabled_reason: Mapped[str | None] = mapped_column(Text)

    user: Mapped[User] = relationship(back_populates="webhook_configurations")
    logs: WriteOnlyMapped[WebhookLog] = relationship(
        back_populates="webhook_config", cascade="all, delete-orphan", passive_deletes=True
    )


class WebhookLog(Queued, IndexedTimestamps, Base):
    __tablename__ = "webhook_logs"
    __table_args__ = (
        due_index("webhook_logs"),
        one_of("event_type", EVENT_TYPES, name="event_type"),
        one_of("provider_type", PROVIDERS, name="provider_type"),
        one_of("status", [s.value for s in WebhookStatus], name="status"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True, sort_order=-1)
    webhook_config_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_configurations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(50), index=True)
    provider_type: Mapped[str] = mapped_column(String(50))
    webhook_url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    status: Mapped[str] = mapped_column(String(20), index=True)
    http_status_code: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(default=0, server_default="0")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # of the latest failed attempt
    response_time_ms: Mapped[float | None]

    webhook_config: Mapped[WebhookConfiguration] = relationship(back_populates="logs")
    user: Mapped[User | None] = relationship(back_populates="webhook_logs")
