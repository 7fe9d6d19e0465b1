"""Security and authentication: users, their sessions, logins and backup codes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import ForeignKey, Index, String, false, func, text, true
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from pfd_db.models.base import Base, IndexedTimestamps, Timestamps, enum_column, one_of
from pfd_db.models.enums import LoginMethod, Role
from pfd_db.types import BigID, UTCDateTime, utcnow

if TYPE_CHECKING:
    from pfd_db.models.api import APIKey
    from pfd_db.models.notifications import (
        EmailDigestQueue,
        EmailLog,
        NotificationPreference,
        WebhookConfiguration,
        WebhookLog,
    )
    from pfd_db.models.search import SavedSearch


class User(IndexedTimestamps, Base):
    __tablename__ = "users"
    __repr_attrs__ = ("username", "role")
    __secret_columns__: ClassVar[frozenset[str]] = frozenset({"password_hash", "totp_secret"})
    __table_args__ = (  # revision 0007: unique regardless of case
        Index("ux_users_username_lower", func.lower(text("username")), unique=True),
        Index("ux_users_email_lower", func.lower(text("email")), unique=True),
    )

    username: Mapped[str] = mapped_column(String(100), unique=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        enum_column(Role, "role"), default=Role.VIEWER, server_default=Role.VIEWER.value
    )
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true(), index=True)
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    totp_last_step: Mapped[int | None]
    failed_login_count: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    api_keys: Mapped[list[APIKey]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    sessions: Mapped[list[SessionLog]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    notification_preferences: Mapped[list[NotificationPreference]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    email_logs: WriteOnlyMapped[EmailLog] = relationship(
        back_populates="user", passive_deletes=True
    )
    digest_queue: Mapped[list[EmailDigestQueue]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    webhook_configurations: Mapped[list[WebhookConfiguration]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    webhook_logs: WriteOnlyMapped[WebhookLog] = relationship(
        back_populates="user", passive_deletes=True
    )
    saved_searches: Mapped[list[SavedSearch]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class SessionLog(Timestamps, Base):
    __tablename__ = "session_logs"
    __secret_columns__: ClassVar[frozenset[str]] = frozenset({"session_token"})

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_token: Mapped[str] = mapped_column(String(255), unique=True)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    device_type: Mapped[str | None] = mapped_column(String(50))
    browser: Mapped[str | None] = mapped_column(String(100))
    location: Mapped[str | None] = mapped_column(String(200))
    last_active: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true(), index=True)
    logged_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="sessions")


class LoginHistory(Timestamps, Base):
    __tablename__ = "login_history"
    __table_args__ = (
        one_of("login_method", [m.value for m in LoginMethod], name="login_method"),
        Index("ix_login_history_user_time", "user_id", "timestamp"),  # revision 0006
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True, sort_order=-1)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    username_attempted: Mapped[str | None] = mapped_column(String(255))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    location: Mapped[str | None] = mapped_column(String(200))
    login_method: Mapped[str | None] = mapped_column(String(50))
    login_method_detail: Mapped[str | None] = mapped_column(String(50))  # source's name for 'other'
    success: Mapped[bool] = mapped_column(index=True)
    failure_reason: Mapped[str | None] = mapped_column(String(200))
    timestamp: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now(), index=True
    )


class BackupCode(Timestamps, Base):
    __tablename__ = "backup_codes"
    __secret_columns__: ClassVar[frozenset[str]] = frozenset({"code_hash"})
    __table_args__ = (Index("ix_backup_codes_user_unused", "user_id", "is_used"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(255), unique=True)
    is_used: Mapped[bool] = mapped_column(default=False, server_default=false(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip_address: Mapped[str | None] = mapped_column(String(45))
