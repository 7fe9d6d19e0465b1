"""API traffic, in figures: what the dashboard shows of the requests of a time range.

- :func:`request_stats` and :func:`request_percentiles`: every endpoint together
  (counts, mean and largest response time; p50/p95/p99);
- :func:`endpoint_metrics`: per endpoint, requests, failures, mean and
  percentile response times;
- :func:`timeline`: requests, failures and mean response time per fixed bucket;
- :func:`top_api_keys`: the keys that made the most requests;
- :func:`key_usage`: one key's usage (``api_usage``) per day and per endpoint.

The hourly, daily and weekly rows of ``api_metrics_summary`` are
:mod:`pfd_db.store.ops.rollups`. A request failed when its status is 400 or
more. Percentiles are the "inclusive" ones of :func:`statistics.quantiles`
(linear interpolation between the closest ranks), computed by the database. Every
figure needs a time range (a figure of the whole table would grow with it) and is
one statement over an index range of revision 0006.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, String, case, cast, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput
from pfd_db.models import APIKey, APIRequestLog, APIUsage
from pfd_db.store import paging
from pfd_db.store.ops import rollups
from pfd_db.store.writes import load
from pfd_db.types import utcnow

BUCKET_MIN = timedelta(seconds=1)
BUCKETS_MAX = 10_000
DAYS_MAX = 3_660


@dataclass(frozen=True)
class RequestStats:
    """All the requests of a time range, every endpoint together."""

    requests: int
    successes: int
    failures: int
    """Requests whose status is 400 or more."""
    avg_response_time_ms: float | None
    """None when there were no requests."""
    max_response_time_ms: float | None

    @property
    def error_rate(self) -> float:
        """Failures per request (0 to 1; 0 without requests)."""
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class RequestPercentiles:
    """The response-time percentiles of all the requests of a time range (None
    for each when there were none)."""

    p50_response_time_ms: float | None
    p95_response_time_ms: float | None
    p99_response_time_ms: float | None


def request_stats(session: Session, since: datetime, until: datetime | None = None) -> RequestStats:
    """The requests from ``since`` (inclusive) to ``until`` (exclusive; now and on
    when None) to every endpoint: how many, how many succeeded and failed, and
    their mean and largest response time. One aggregate the database computes
    over an index range of ``ix_api_request_logs_rollup``."""
    log = APIRequestLog
    failed = func.count().filter(log.status_code >= 400)
    requests, failures, mean, largest = session.execute(
        select(
            func.count(), failed, func.avg(log.response_time_ms), func.max(log.response_time_ms)
        ).where(*_window(since, until))
    ).one()
    return RequestStats(
        requests=int(requests),
        successes=int(requests) - int(failures or 0),
        failures=int(failures or 0),
        avg_response_time_ms=None if mean is None else float(mean),
        max_response_time_ms=None if largest is None else float(largest),
    )


def request_percentiles(
    session: Session, since: datetime, until: datetime | None = None
) -> RequestPercentiles:
    """The p50/p95/p99 response times of the requests from ``since`` to ``until``
    to every endpoint, computed by the database (PostgreSQL's ``percentile_cont``;
    on SQLite the same interpolation in SQL, over the sorted index range)."""
    p50, p95, p99 = rollups.percentiles(session, _window(since, until))
    return RequestPercentiles(
        *(None if value is None else float(value) for value in (p50, p95, p99))
    )


def _window(since: datetime, until: datetime | None) -> list[ColumnElement[bool]]:
    return paging.window(APIRequestLog.request_time, since, until)


# --- per endpoint, per bucket, per key ----------------------------------------------


@dataclass(frozen=True)
class EndpointFigures:
    """The requests to one endpoint in a time range."""

    endpoint: str
    requests: int
    successes: int
    failures: int
    avg_response_time_ms: float
    max_response_time_ms: float
    p50_response_time_ms: float
    p95_response_time_ms: float
    p99_response_time_ms: float

    @property
    def error_rate(self) -> float:
        """Failures per request (0 to 1)."""
        return self.failures / self.requests


def endpoint_metrics(
    session: Session, since: datetime, until: datetime | None = None, *, limit: int = 50
) -> list[EndpointFigures]:
    """Per endpoint, the requests from ``since`` to ``until``: the ``limit`` (up to
    1000) busiest endpoints, busiest first, each with its counts, mean, largest and
    p50/p95/p99 response times. The database computes all of it (read from
    ``ix_api_request_logs_rollup``; the percentiles of each endpoint from
    ``ix_api_request_logs_endpoint_time``)."""
    conditions = _window(since, until)
    limit = paging.page_size(limit)
    counted = rollups.count_by_endpoint(session, conditions, limit)
    percentiles = rollups.percentiles_by_endpoint(
        session, conditions, [row.endpoint for row in counted]
    )
    return [
        EndpointFigures(
            endpoint=row.endpoint,
            requests=row.requests,
            successes=row.successes,
            failures=row.requests - row.successes,
            avg_response_time_ms=row.avg_ms,
            max_response_time_ms=row.max_ms,
            p50_response_time_ms=percentiles[row.endpoint][0],
            p95_response_time_ms=percentiles[row.endpoint][1],
            p99_response_time_ms=percentiles[row.endpoint][2],
        )
        for row in counted
    ]


@dataclass(frozen=True)
class TimelinePoint:
    """One bucket of :func:`timeline`."""

    start: datetime
    requests: int
    failures: int
    avg_response_time_ms: float | None
    """None for a bucket without requests."""


def timeline(
    session: Session, since: datetime, until: datetime, bucket: timedelta
) -> list[TimelinePoint]:
    """Requests, failures and mean response time per ``bucket`` (a whole number of
    seconds) from ``since`` to ``until``: every bucket, empty ones included, the
    first starting at ``since`` (to the whole second). At most 10 000 buckets.
    One grouped query over ``ix_api_request_logs_rollup``."""
    conditions = _window(since, until)
    origin = int(paging.moment(since, "since").timestamp())
    end = paging.moment(until, "until")
    width = _bucket_seconds(bucket)
    count = -(-(int(end.timestamp()) - origin) // width) or 1  # ceiling
    if count > BUCKETS_MAX:
        raise InvalidInput(
            f"bucket {bucket} gives {count} buckets from since to until: at most {BUCKETS_MAX}"
        )
    number = _bucket_number(session, APIRequestLog.request_time, origin, width).label("n")
    failed = func.sum(case((APIRequestLog.status_code >= 400, 1), else_=0))
    found = session.execute(
        select(number, func.count(), failed, func.avg(APIRequestLog.response_time_ms))
        .where(*conditions)
        .group_by(number)
    )
    by_number = {int(n): (int(c), int(f or 0), float(a)) for n, c, f, a in found}
    first = datetime.fromtimestamp(origin, UTC)
    return [
        TimelinePoint(first + i * timedelta(seconds=width), *by_number.get(i, (0, 0, None)))
        for i in range(count)
    ]


@dataclass(frozen=True)
class KeyTraffic:
    """The requests one API key made in a time range."""

    api_key_id: int
    name: str
    prefix: str
    user_id: int
    requests: int
    failures: int
    avg_response_time_ms: float
    last_request: datetime


def top_api_keys(
    session: Session, since: datetime, until: datetime | None = None, *, limit: int = 10
) -> list[KeyTraffic]:
    """The ``limit`` (up to 1000) API keys that made the most requests from
    ``since`` to ``until``, most first (ties: the lower id), with their failures,
    mean response time and last request. Requests without a key do not count."""
    conditions = _window(since, until)
    limit = paging.page_size(limit)
    log = APIRequestLog
    requests = func.count().label("requests")
    per_key = (
        select(
            log.api_key_id,
            requests,
            func.sum(case((log.status_code >= 400, 1), else_=0)).label("failures"),
            func.avg(log.response_time_ms).label("avg_ms"),
            func.max(log.request_time).label("last_request"),
        )
        .where(*conditions, log.api_key_id.is_not(None))
        .group_by(log.api_key_id)
        .order_by(requests.desc(), log.api_key_id)
        .limit(limit)
        .subquery()
    )
    found = session.execute(
        select(APIKey.id, APIKey.name, APIKey.prefix, APIKey.user_id, per_key)
        .join(per_key, per_key.c.api_key_id == APIKey.id)
        .order_by(per_key.c.requests.desc(), APIKey.id)
    )
    return [
        KeyTraffic(
            api_key_id=key_id,
            name=name,
            prefix=prefix,
            user_id=user_id,
            requests=int(count),
            failures=int(failures or 0),
            avg_response_time_ms=float(avg_ms),
            last_request=_as_moment(last),
        )
        for key_id, name, prefix, user_id, _key, count, failures, avg_ms, last in found
    ]


@dataclass(frozen=True)
class DayUsage:
    """One key's requests on one day (UTC)."""

    day: date
    requests: int
    failures: int
    avg_response_time_ms: float | None


@dataclass(frozen=True)
class KeyUsage:
    """One key's usage in a time range: totals, per day (busy days only, in order)
    and per endpoint (the busiest first)."""

    requests: int
    failures: int
    avg_response_time_ms: float | None
    days: list[DayUsage]
    endpoints: dict[str, int]


def key_usage(
    session: Session,
    key: APIKey | int,
    since: datetime,
    until: datetime | None = None,
    *,
    endpoints: int = 20,
) -> KeyUsage:
    """``key``'s usage records (``api_usage``) from ``since`` to ``until`` (at most
    3 660 days): per day, and the ``endpoints`` (up to 1000) busiest endpoints.
    Served by ``ix_api_usage_key_time``."""
    key = load(session, APIKey, key, "key")
    conditions = [APIUsage.api_key_id == key.id, *paging.window(APIUsage.timestamp, since, until)]
    end = utcnow() if until is None else paging.moment(until, "until")
    if end - paging.moment(since, "since") > timedelta(days=DAYS_MAX):
        raise InvalidInput(f"key_usage covers at most {DAYS_MAX} days")
    top = paging.page_size(endpoints)
    failed = func.sum(case((APIUsage.status_code >= 400, 1), else_=0))
    totals = select(func.count(), failed, func.avg(APIUsage.response_time_ms)).where(*conditions)
    requests, failures, mean = session.execute(totals).one()
    day = _day(session, APIUsage.timestamp).label("day")
    per_day = (
        select(day, func.count(), failed, func.avg(APIUsage.response_time_ms))
        .where(*conditions)
        .group_by(day)
        .order_by(day)
    )
    count = func.count().label("requests")
    busiest = (
        select(APIUsage.endpoint, count)
        .where(*conditions)
        .group_by(APIUsage.endpoint)
        .order_by(count.desc(), APIUsage.endpoint)
        .limit(top)
    )
    return KeyUsage(
        requests=int(requests),
        failures=int(failures or 0),
        avg_response_time_ms=None if mean is None else float(mean),
        days=[
            DayUsage(_as_date(d), int(n), int(f or 0), None if a is None else float(a))
            for d, n, f, a in session.execute(per_day)
        ],
        endpoints={endpoint: int(n) for endpoint, n in session.execute(busiest)},
    )


def _bucket_seconds(bucket: object) -> int:
    if not isinstance(bucket, timedelta) or bucket < BUCKET_MIN or bucket % BUCKET_MIN:
        raise InvalidInput(
            f"bucket must be a timedelta of whole seconds, at least 1 (got {bucket!r})"
        )
    return int(bucket.total_seconds())


def _bucket_number(session: Session, column: Any, origin: int, width: int) -> ColumnElement[int]:
    """Which ``width``-second bucket from ``origin`` (epoch seconds) ``column`` falls
    in, computed by the database (rows before ``origin`` are filtered out)."""
    if session.get_bind().dialect.name == "postgresql":
        seconds = func.extract("epoch", column) - origin
        return cast(func.floor(seconds / width), Integer)
    whole = cast(func.strftime("%s", column), Integer)  # SQLite: stored as UTC text
    return (whole - origin) // width  # both whole and at least 0: integer division floors


def _day(session: Session, column: Any) -> ColumnElement[Any]:
    """The UTC day of ``column``, computed by the database."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), postgresql.DATE)
    return func.substr(column, 1, 10, type_=String())  # SQLite stores "YYYY-MM-DD HH:..."


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _as_moment(value: datetime | str) -> datetime:
    """A time the database computed (max, ...): SQLite gives its stored text."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
