"""The dashboard's overall request figures: every endpoint together, over a time range.

:func:`request_stats` counts the requests, successes and failures (a request
failed when its status is 400 or more, as everywhere in
:mod:`pfd_db.store.ops.traffic`) and their mean and largest response time;
:func:`request_percentiles` gives their p50/p95/p99 response times, the
"inclusive" percentiles of :func:`statistics.quantiles` as the rollups compute
them (see :mod:`pfd_db.store.ops.rollups`). The database computes every figure in one
statement, reading the time range of ``ix_api_request_logs_rollup`` (which holds
the time, response time and status) and nothing else. Both need a time range: a
figure of the whole table would grow with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput
from pfd_db.models import APIRequestLog
from pfd_db.store import paging
from pfd_db.store.ops import rollups


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


def request_stats(
    session: Session, since: datetime, until: datetime | None = None
) -> RequestStats:
    """The requests from ``since`` (inclusive) to ``until`` (exclusive; now and on
    when None) to every endpoint: how many, how many succeeded and failed, and
    their mean and largest response time. One aggregate the database computes
    over an index range of ``ix_api_request_logs_rollup``."""
    log = APIRequestLog
    failed = func.count().filter(log.status_code >= 400)
    requests, failures, mean, largest = session.execute(
        select(func.count(), failed, func.avg(log.response_time_ms), func.max(log.response_time_ms))
        .where(*_window(since, until))
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
    if since is None:
        raise InvalidInput("since is required: the figures cover a time range")
    return paging.in_range(APIRequestLog.request_time, since, until)
