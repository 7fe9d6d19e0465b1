"""Admin routes over the API traffic (``/api/v1/admin/traffic``).

Recent requests (keyset pages, newest first), per-endpoint figures, a timeline,
the hourly/daily/weekly rollups (read, run again, or brought up to date
incrementally), the busiest keys, one
key's usage, and the figures of every endpoint together. Each covers a time
range: ``since`` defaults to 24 hours ago and ``until`` to now (open). Every
route needs an admin key of an admin (:func:`pfd_db.api.access.admin_access`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from pfd_db.api.access import Caller, admin_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.paging import (
    DEFAULT_LIMIT,
    BadCursor,
    Cursor,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
)
from pfd_db.api.problems import ApiProblem
from pfd_db.api.routes.listing import before_id, log_page, naming
from pfd_db.api.schemas.admin import (
    DayUsage,
    EndpointFigures,
    Items,
    KeyTraffic,
    KeyUsage,
    RequestEntry,
    RequestFigures,
    RollupDone,
    RollupRefreshed,
    RollupRun,
    Summary,
    Timeline,
    TimelinePoint,
)
from pfd_db.api.schemas.common import PROBLEM_RESPONSES, problem_responses
from pfd_db.models.enums import Aggregation
from pfd_db.store.ops import request_figures, request_lists, rollup_schedule, rollups
from pfd_db.types import utcnow
from pfd_db.values import INT64_MAX

router = APIRouter(prefix="/api/v1/admin/traffic", tags=["admin"])

Admin = Annotated[Caller, Depends(admin_access)]
DEFAULT_SPAN = timedelta(hours=24)
WITH_404 = PROBLEM_RESPONSES | problem_responses(404)  # an unknown key or user named
ROLLUP_PERIODS_MAX = 10_000  # a request's work stays bounded (the store allows 100 000)
TIMES = ("since", "until", "start", "end", "bucket", "endpoint")
Since = Annotated[
    datetime | None, Query(description="From (inclusive), ISO 8601 UTC; default 24 hours ago.")
]
Until = Annotated[datetime | None, Query(description="To (exclusive), ISO 8601 UTC; default now.")]
Top = Annotated[int, Query(ge=1, le=1000, description="How many (1 to 1000).")]
KeyId = Annotated[int, Path(ge=1, le=INT64_MAX, description="an API key's id")]


def _since(since: datetime | None) -> datetime:
    return utcnow() - DEFAULT_SPAN if since is None else since


@router.get("/requests", response_model=Page[RequestEntry], responses=WITH_404)
def recent_requests(
    request: Request,
    caller: Admin,
    since: Since = None,
    until: Until = None,
    endpoint: Annotated[str | None, Query(max_length=255, description="A route template.")] = None,
    api_key: Annotated[int | None, Query(ge=1, le=INT64_MAX, description="A key's id.")] = None,
    status_code: Annotated[int | None, Query(ge=100, le=599)] = None,
    errors_only: Annotated[bool, Query(description="Only status 400 or more.")] = False,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[RequestEntry]:
    """The newest requests of the range, filtered; newest first."""
    with read_session(request) as session, naming(*TIMES):
        rows = request_lists.recent_requests(
            session,
            _since(since),
            until,
            endpoint=endpoint,
            api_key=api_key,
            status_code=status_code,
            errors_only=errors_only,
            limit=limit,
            before_id=before_id(cursor),
        )
        return log_page(rows, limit, RequestEntry.model_validate)


@router.get("/endpoints", response_model=Items[EndpointFigures], responses=PROBLEM_RESPONSES)
def endpoint_metrics(
    request: Request, caller: Admin, since: Since = None, until: Until = None, limit: Top = 50
) -> Items[EndpointFigures]:
    """The busiest endpoints of the range with their counts and p50/p95/p99."""
    with read_session(request) as session, naming(*TIMES):
        rows = request_figures.endpoint_metrics(session, _since(since), until, limit=limit)
        return Items[EndpointFigures](items=[EndpointFigures.model_validate(r) for r in rows])


@router.get("/timeline", response_model=Timeline, responses=PROBLEM_RESPONSES)
def timeline(
    request: Request,
    caller: Admin,
    since: Since = None,
    until: Until = None,
    bucket_seconds: Annotated[int, Query(ge=1, le=31_622_400)] = 3600,
) -> Timeline:
    """Requests, failures and mean response time per bucket, empty buckets included."""
    end = utcnow() if until is None else until
    with read_session(request) as session, naming(*TIMES):
        points = request_figures.timeline(
            session, _since(since), end, timedelta(seconds=bucket_seconds)
        )
        return Timeline(
            bucket_seconds=bucket_seconds,
            points=[TimelinePoint.model_validate(point) for point in points],
        )


@router.get("/rollups/{period}", response_model=Page[Summary], responses=PROBLEM_RESPONSES)
def summaries(
    request: Request,
    caller: Admin,
    period: Aggregation,
    since: Since = None,
    until: Until = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Summary]:
    """The rolled-up periods starting in the range, oldest first."""
    start = _since(since)
    if cursor is not None:
        start = _after_period(cursor)
    with read_session(request) as session, naming(*TIMES):
        rows = rollups.summaries(session, period, start, until, limit=limit)
        last = rows[-1].period_start if rows and len(rows) >= limit else None
        return Page[Summary](
            items=[Summary.model_validate(row) for row in rows],
            next_cursor=None if last is None else encode_cursor(last.isoformat()),
        )


def _after_period(cursor: str) -> datetime:
    """Just after the period start a rollup page's cursor holds."""
    value = decode_cursor(cursor)
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise BadCursor("cursor: not a cursor of this list")
    return moment + timedelta(microseconds=1)


@router.post("/rollups/{period}", response_model=RollupDone, responses=PROBLEM_RESPONSES)
def run_rollup(request: Request, caller: Admin, period: Aggregation, body: RollupRun) -> RollupDone:
    """Roll the request log up into every period overlapping ``start`` .. ``end``
    (re-runnable: a period's row is replaced)."""
    aware = body.start.tzinfo is not None and body.end.tzinfo is not None  # else: the store's 422
    if aware and body.end - body.start > ROLLUP_PERIODS_MAX * rollups.LENGTHS[period]:
        raise ApiProblem(
            422,
            f"end: at most {ROLLUP_PERIODS_MAX} {period.value} periods a request",
            slug="invalid-input",
            field="end",
        )
    with write_session(request) as session, naming(*TIMES):
        return RollupDone(periods=rollups.rollup(session, period, body.start, body.end))


@router.post(
    "/rollups/{period}/refresh", response_model=RollupRefreshed, responses=PROBLEM_RESPONSES
)
def refresh_rollup(request: Request, caller: Admin, period: Aggregation) -> RollupRefreshed:
    """Bring the rollups up to date incrementally: the periods with requests since
    the last refresh, the open one, and those late requests reopened; at most
    10 000 periods a request (``complete`` is false until a request finishes)."""
    with write_session(request) as session:
        done = rollup_schedule.refresh(session, period, limit=ROLLUP_PERIODS_MAX)
        return RollupRefreshed(
            computed=len(done.computed),
            stale=done.stale,
            written=done.written,
            computed_through=done.computed_through,
            complete=done.complete,
        )


@router.get("/top-keys", response_model=Items[KeyTraffic], responses=PROBLEM_RESPONSES)
def top_keys(
    request: Request, caller: Admin, since: Since = None, until: Until = None, limit: Top = 10
) -> Items[KeyTraffic]:
    """The keys that made the most requests in the range, most first."""
    with read_session(request) as session, naming(*TIMES):
        rows = request_figures.top_api_keys(session, _since(since), until, limit=limit)
        return Items[KeyTraffic](items=[KeyTraffic.model_validate(row) for row in rows])


@router.get(
    "/keys/{key_id}/usage",
    response_model=KeyUsage,
    responses=WITH_404,
)
def key_usage(
    request: Request,
    caller: Admin,
    key_id: KeyId,
    since: Since = None,
    until: Until = None,
    endpoints: Top = 20,
) -> KeyUsage:
    """One key's usage in the range: totals, per day, and its busiest endpoints."""
    with read_session(request) as session, naming(*TIMES, "key_usage"):
        start = _since(since)
        found = request_figures.key_usage(session, key_id, start, until, endpoints=endpoints)
        return KeyUsage(
            api_key_id=key_id,
            requests=found.requests,
            failures=found.failures,
            avg_response_time_ms=found.avg_response_time_ms,
            days=[DayUsage.model_validate(day) for day in found.days],
            endpoints=found.endpoints,
        )


@router.get("/figures", response_model=RequestFigures, responses=PROBLEM_RESPONSES)
def figures(
    request: Request, caller: Admin, since: Since = None, until: Until = None
) -> RequestFigures:
    """Every endpoint together in the range: counts, error rate, mean, largest, p50/p95/p99."""
    start = _since(since)
    with read_session(request) as session, naming(*TIMES):
        stats = request_figures.request_stats(session, start, until)
        spread = request_figures.request_percentiles(session, start, until)
        return RequestFigures(
            since=start,
            until=until,
            requests=stats.requests,
            successes=stats.successes,
            failures=stats.failures,
            error_rate=stats.error_rate,
            avg_response_time_ms=stats.avg_response_time_ms,
            max_response_time_ms=stats.max_response_time_ms,
            p50_response_time_ms=spread.p50_response_time_ms,
            p95_response_time_ms=spread.p95_response_time_ms,
            p99_response_time_ms=spread.p99_response_time_ms,
        )
