"""API keys and API traffic: usage records, request logs and their rollups."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, func, text, true
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from pfd_db.models.base import Base, IndexedTimestamps, Timestamps, one_of
from pfd_db.models.enums import Aggregation
from pfd_db.types import BigID, JSONDoc, StringList, UTCDateTime, utcnow

if TYPE_CHECKING:
    from pfd_db.models.auth import User


class APIKey(IndexedTimestamps, Base):
    __tablename__ = "api_keys"
    __secret_columns__: ClassVar[frozenset[str]] = frozenset({"key_hash"})

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    scopes: Mapped[list[str]] = mapped_column(
        StringList, default=lambda: ["read"], server_default=None
    )
    rate_limit: Mapped[int] = mapped_column(default=1000, server_default="1000")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true(), index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The hourly rate limit's fixed window (revision 0009; store.identity.rate_limits):
    # when the current window began, and the requests counted in it.
    rate_window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rate_window_count: Mapped[int] = mapped_column(default=0, server_default="0")

    user: Mapped[User] = relationship(back_populates="api_keys")
    usage_records: WriteOnlyMapped[APIUsage] = relationship(
        back_populates="api_key", cascade="all, delete-orphan", passive_deletes=True
    )
    request_logs: WriteOnlyMapped[APIRequestLog] = relationship(
        back_populates="api_key", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<APIKey id={self.id} {self.name!r} pfd_{self.prefix}_…>"


class APIUsage(Timestamps, Base):
    __tablename__ = "api_usage"
    __table_args__ = (
        Index("ix_api_usage_key_time", "api_key_id", "timestamp"),  # revision 0006
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True, sort_order=-1)
    api_key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int]
    response_time_ms: Mapped[int | None]
    timestamp: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now(), index=True
    )

    api_key: Mapped[APIKey] = relationship(back_populates="usage_records")


ERRORS_ONLY = text("status_code >= 400")


class APIRequestLog(IndexedTimestamps, Base):
    __tablename__ = "api_request_logs"
    __table_args__ = (
        # Added by revision 0006, for the dashboard's queries (pfd_db.store.ops.request_figures):
        # the rollup and timeline read the figures of a time range from this index alone.
        Index(
            "ix_api_request_logs_rollup",
            "request_time",
            "response_time_ms",
            "status_code",
            "endpoint",
        ),
        Index("ix_api_request_logs_endpoint_time", "endpoint", "request_time"),
        Index("ix_api_request_logs_key_time", "api_key_id", "request_time"),
        Index(
            "ix_api_request_logs_errors",
            "request_time",
            postgresql_where=ERRORS_ONLY,
            sqlite_where=ERRORS_ONLY,
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True, sort_order=-1)
    endpoint: Mapped[str] = mapped_column(String(255), index=True)
    method: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int] = mapped_column(index=True)
    request_time: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now(), index=True
    )
    response_time_ms: Mapped[float]
    request_size_bytes: Mapped[int | None] = mapped_column(default=0, server_default="0")
    response_size_bytes: Mapped[int | None] = mapped_column(default=0, server_default="0")
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(Text)
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    error_message: Mapped[str | None] = mapped_column(Text)
    request_payload_sample: Mapped[Any | None] = mapped_column(JSONDoc)
    response_payload_sample: Mapped[Any | None] = mapped_column(JSONDoc)

    api_key: Mapped[APIKey | None] = relationship(back_populates="request_logs")


class APIMetricsSummary(Timestamps, Base):
    __tablename__ = "api_metrics_summary"
    __table_args__ = (
        Index(
            "ix_api_metrics_summary_period_type",
            "period_start",
            "aggregation_type",
            unique=True,
        ),
        one_of("aggregation_type", [a.value for a in Aggregation], name="aggregation_type"),
    )

    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    aggregation_type: Mapped[str] = mapped_column(String(20))
    total_requests: Mapped[int] = mapped_column(default=0, server_default="0")
    successful_requests: Mapped[int] = mapped_column(default=0, server_default="0")
    failed_requests: Mapped[int] = mapped_column(default=0, server_default="0")
    avg_response_time_ms: Mapped[float | None]
    p50_response_time_ms: Mapped[float | None]
    p95_response_time_ms: Mapped[float | None]
    p99_response_time_ms: Mapped[float | None]
    requests_per_second: Mapped[float | None]
    error_rate: Mapped[float | None]
    endpoint_metrics: Mapped[Any | None] = mapped_column(JSONDoc)


class RollupWatermark(Timestamps, Base):
    """How far the incremental rollup of one aggregation type has got (revision 0010,
    :mod:`pfd_db.store.ops.rollup_schedule`): every period before ``computed_through``
    is closed and its ``api_metrics_summary`` row computed. NULL or no row: the next
    refresh computes every period from the earliest request."""

    __tablename__ = "rollup_watermarks"
    __table_args__ = (
        one_of("aggregation_type", [a.value for a in Aggregation], name="aggregation_type"),
    )
    __repr_attrs__ = ("aggregation_type", "computed_through")

    aggregation_type: Mapped[str] = mapped_column(String(20), unique=True)
    computed_through: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RollupStalePeriod(Timestamps, Base):
    """A closed period that late request-log rows went into (revision 0010): written by
    ``record_requests`` in the rows' transaction, computed again and deleted by the
    next refresh of its aggregation type."""

    __tablename__ = "rollup_stale_periods"
    __table_args__ = (
        UniqueConstraint("aggregation_type", "period_start"),
        one_of("aggregation_type", [a.value for a in Aggregation], name="aggregation_type"),
    )
    __repr_attrs__ = ("aggregation_type", "period_start")

    id: Mapped[int] = mapped_column(BigID, primary_key=True, sort_order=-1)
    aggregation_type: Mapped[str] = mapped_column(String(20))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
