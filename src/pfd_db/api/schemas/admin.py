"""Request and response models of the admin routes (``/api/v1/admin/...``): users,
API traffic and the audit log.

A user's password hash, TOTP secret and key hashes never appear; a generated
password is in the 201 response of a creation, once. Request-log entries carry
no payload samples (a body may hold a secret).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import Field

from pfd_db.api.schemas.common import ApiModel
from pfd_db.models import User
from pfd_db.models.enums import Aggregation, Role

T = TypeVar("T")


class Items(ApiModel, Generic[T]):
    """A ranking (the busiest first): at most ``limit`` items, not paged."""

    items: list[T]


# --- users -----------------------------------------------------------------------


class UserOut(ApiModel):
    """A user account (never its password hash or 2FA secret)."""

    id: int
    username: str
    email: str
    role: Role
    is_active: bool
    two_factor: bool
    locked_until: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: User) -> UserOut:
        """The account of a ``users`` row."""
        return cls(**_user_fields(row))


def _user_fields(row: User) -> dict[str, Any]:
    return {
        "id": row.id,
        "username": row.username,
        "email": row.email,
        "role": row.role,
        "is_active": row.is_active,
        "two_factor": row.totp_enabled,
        "locked_until": row.locked_until,
        "created_at": row.created_at,
    }


class UserCreate(ApiModel):
    """A new user; without a password one is generated and shown once."""

    username: Annotated[str, Field(min_length=1, max_length=100)]
    email: Annotated[str, Field(min_length=1, max_length=254)]
    role: Role = Role.VIEWER
    password: Annotated[str, Field(min_length=1, max_length=1024)] | None = None


class UserCreated(UserOut):
    """A user just created; ``password`` is the generated one (shown this once),
    or null when the request gave it."""

    password: str | None

    @classmethod
    def made(cls, row: User, generated: str | None) -> UserCreated:
        """The response to a creation."""
        return cls(**_user_fields(row), password=generated)


class RoleChange(ApiModel):
    """The role to give a user."""

    role: Role


# --- traffic ---------------------------------------------------------------------


class RequestEntry(ApiModel):
    """One request the server logged (its route template, never its raw URL)."""

    id: int
    endpoint: str
    method: str
    status_code: int
    request_time: datetime
    response_time_ms: float
    request_size_bytes: int | None
    response_size_bytes: int | None
    ip_address: str | None
    user_agent: str | None
    api_key_id: int | None
    error_message: str | None


class EndpointFigures(ApiModel):
    """The requests to one endpoint in a time range."""

    endpoint: str
    requests: int
    successes: int
    failures: int
    error_rate: float
    avg_response_time_ms: float
    max_response_time_ms: float
    p50_response_time_ms: float
    p95_response_time_ms: float
    p99_response_time_ms: float


class TimelinePoint(ApiModel):
    """One bucket of the timeline."""

    start: datetime
    requests: int
    failures: int
    avg_response_time_ms: float | None


class Timeline(ApiModel):
    """Requests per fixed bucket, empty buckets included."""

    bucket_seconds: int
    points: list[TimelinePoint]


class Summary(ApiModel):
    """One rolled-up period of ``api_metrics_summary``."""

    period_start: datetime
    period_end: datetime
    aggregation_type: Aggregation
    total_requests: int
    successful_requests: int
    failed_requests: int
    avg_response_time_ms: float | None
    p50_response_time_ms: float | None
    p95_response_time_ms: float | None
    p99_response_time_ms: float | None
    requests_per_second: float | None
    error_rate: float | None
    endpoint_metrics: dict[str, Any] | None


class RollupRun(ApiModel):
    """The range to roll up: every period overlapping ``start`` .. ``end``."""

    start: datetime
    end: datetime


class RollupDone(ApiModel):
    """How many periods had requests and were written."""

    periods: int


class RollupRefreshed(ApiModel):
    """What an incremental rollup did (``store.ops.rollup_schedule.refresh``)."""

    computed: int
    stale: int
    written: int
    computed_through: datetime | None
    complete: bool


class KeyTraffic(ApiModel):
    """The requests one API key made in a time range (its prefix, never the key)."""

    api_key_id: int
    name: str
    prefix: str
    user_id: int
    requests: int
    failures: int
    avg_response_time_ms: float
    last_request: datetime


class DayUsage(ApiModel):
    """One key's requests on one day (UTC)."""

    day: date
    requests: int
    failures: int
    avg_response_time_ms: float | None


class KeyUsage(ApiModel):
    """One key's usage in a time range: totals, per day, per endpoint."""

    api_key_id: int
    requests: int
    failures: int
    avg_response_time_ms: float | None
    days: list[DayUsage]
    endpoints: dict[str, int]


class RequestFigures(ApiModel):
    """Every endpoint together, in a time range."""

    since: datetime
    until: datetime | None
    requests: int
    successes: int
    failures: int
    error_rate: float
    avg_response_time_ms: float | None
    max_response_time_ms: float | None
    p50_response_time_ms: float | None
    p95_response_time_ms: float | None
    p99_response_time_ms: float | None


# --- audit -----------------------------------------------------------------------


class AuditEntry(ApiModel):
    """One audit-log entry: who (``user_id``, null for the system) did what."""

    id: int
    created_at: datetime
    user_id: int | None
    action: str
    status: str
    details: dict[str, Any] | None
    error_message: str | None
