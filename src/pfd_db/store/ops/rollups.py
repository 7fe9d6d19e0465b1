"""Rollups of the request log into ``api_metrics_summary``, and percentiles in SQL.

:func:`rollup` fills one row per period (hourly, daily or weekly, UTC; weeks
start on Monday) and aggregation type: total, successful (status below 400) and
failed requests, the mean and the p50/p95/p99 response times, requests per
second (over the whole period), the error rate and per-endpoint figures
(``{"/api/x": {"requests", "successes", "failures", "avg_response_time_ms",
"max_response_time_ms"}}``). The database computes every figure; Python only
lists the periods. The rows are written by ``INSERT ... SELECT ... ON CONFLICT
(period_start, aggregation_type) DO UPDATE`` (on PostgreSQL one statement for up
to 1 000 periods, a LATERAL pair of aggregates per period; on SQLite one per
period), so running a rollup again replaces its rows with the figures of the
rows stored now. A period without requests gets no row (and keeps one it had:
a rollup of a range whose requests retention removed keeps their figures).
:mod:`pfd_db.store.ops.rollup_schedule` runs it incrementally (``refresh``).

Percentiles are those of :func:`statistics.quantiles` with ``method="inclusive"``
(the closest ranks, interpolated linearly), on each dialect:

- PostgreSQL: ``percentile_cont``, which computes exactly that;
- SQLite, which has no percentile function: the period's response times,
  sorted once into a materialized CTE, give the two closest ranks ``j`` and
  ``j + 1`` of each percentile (``j, d = divmod(i * (n - 1), 100)``) and the
  interpolation ``(x[j] * (100 - d) + x[j + 1] * d) / 100``, Python's own
  formula, in SQL.

Each period's rows are an index range of ``ix_api_request_logs_rollup``, read
from that index alone (it holds the time, response time, status and endpoint).
On PostgreSQL the rollup runs with JIT off (compiling costs more than it saves
here) and gives the caller's setting back after.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    Integer,
    Select,
    bindparam,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from pfd_db.errors import InvalidInput
from pfd_db.models import APIMetricsSummary, APIRequestLog
from pfd_db.models.enums import Aggregation
from pfd_db.store import paging
from pfd_db.store.validation import require_items, require_member
from pfd_db.types import EARLIEST, LATEST, UTCDateTime, utcnow

PERCENTILES = (50, 95, 99)
PERIODS_MAX = 100_000
STATEMENT_PERIODS = 1_000  # PostgreSQL: periods per statement
FLOATS = postgresql.ARRAY(Float())
MONDAY = datetime(2001, 1, 1, tzinfo=UTC)  # weeks are counted from a Monday
LENGTHS = {
    Aggregation.HOURLY: timedelta(hours=1),
    Aggregation.DAILY: timedelta(days=1),
    Aggregation.WEEKLY: timedelta(weeks=1),
}
FIGURES = (
    "total_requests",
    "successful_requests",
    "failed_requests",
    "avg_response_time_ms",
    "p50_response_time_ms",
    "p95_response_time_ms",
    "p99_response_time_ms",
    "requests_per_second",
    "error_rate",
    "endpoint_metrics",
)
STAMPS = ("created_at", "updated_at")
CONFLICT_KEY = ["period_start", "aggregation_type"]  # ix_api_metrics_summary_period_type


# --- rollups -----------------------------------------------------------------------


def rollup(session: Session, period: Aggregation | str, start: datetime, end: datetime) -> int:
    """Fill ``api_metrics_summary`` with the ``period`` ("hourly", "daily" or
    "weekly") rows of every period that overlaps ``start`` .. ``end`` (UTC; a
    period's start is on the hour, at midnight, or at midnight on Monday); how
    many periods had requests and were written. Re-runnable: a period's row is
    replaced. At most 100 000 periods per call. Flushes; the caller commits (on
    SQLite the write lock is held until then).
    """
    kind = require_member(period, Aggregation, "period")
    first, stop = period_start(kind, start, "start"), paging.moment(end, "end")
    if stop <= first:
        raise InvalidInput(f"end ({stop.isoformat()}) must be after start ({start.isoformat()})")
    length = LENGTHS[kind]
    count = -(-(stop - first) // length)  # ceiling
    if count > PERIODS_MAX:
        raise InvalidInput(f"{count} {kind.value} periods from start to end: at most {PERIODS_MAX}")
    return roll_up_periods(session, kind, [first + number * length for number in range(count)])


def roll_up_periods(session: Session, period: Aggregation | str, starts: Sequence[datetime]) -> int:
    """:func:`rollup` of the ``period`` periods that begin at ``starts`` (each a
    period's start; at most 100 000, in any order, scattered as
    :mod:`.rollup_schedule` gives them); how many had requests and were written."""
    kind = require_member(period, Aggregation, "period")
    listed = sorted({paging.moment(low, "starts") for low in require_items(starts, "starts")})
    if len(listed) > PERIODS_MAX or any(
        period_start(kind, low) != low or not EARLIEST <= low < LATEST for low in listed
    ):
        raise InvalidInput(f"starts: at most {PERIODS_MAX} {kind.value} period starts (1900-8999)")
    session.flush()
    connection, length = session.connection(), LENGTHS[kind]
    shared = {"kind": kind.value, "seconds": length.total_seconds(), "now": utcnow()}
    if connection.dialect.name == "postgresql":  # many periods per statement
        every = _postgresql_rollup()
        cuts = range(0, len(listed), STATEMENT_PERIODS)
        runs = [
            (every, {"starts": listed[i : i + STATEMENT_PERIODS], "length": length}) for i in cuts
        ]
        with _without_jit(connection):
            return sum(len(connection.execute(sql, {**shared, **more}).all()) for sql, more in runs)
    one = _sqlite_rollup(connection.dialect)  # SQLite: one period per statement
    runs = [(one, {"low": low, "high": low + length}) for low in listed]
    return sum(len(connection.execute(sql, {**shared, **more}).all()) for sql, more in runs)


def summaries(
    session: Session,
    period: Aggregation | str,
    since: datetime,
    until: datetime | None = None,
    *,
    limit: int = 1000,
) -> list[APIMetricsSummary]:
    """The ``period`` rows of ``api_metrics_summary`` whose period starts from
    ``since`` to ``until`` (exclusive; open when None), oldest first, at most
    ``limit`` (up to 1000): what a dashboard chart plots."""
    kind = require_member(period, Aggregation, "period")
    conditions = paging.in_range(APIMetricsSummary.period_start, since, until)
    return list(
        session.scalars(
            select(APIMetricsSummary)
            .where(APIMetricsSummary.aggregation_type == kind.value, *conditions)
            .order_by(APIMetricsSummary.period_start)
            .limit(paging.page_size(limit)),
            execution_options={"populate_existing": True},
        )
    )


def period_start(kind: Aggregation, moment: datetime, field: str = "moment") -> datetime:
    """The start of the ``kind`` period that holds ``moment`` (UTC)."""
    utc = paging.moment(moment, field)
    if kind is Aggregation.HOURLY:
        return utc.replace(minute=0, second=0, microsecond=0)
    day = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind is Aggregation.DAILY:
        return day
    return day - timedelta(days=(day - MONDAY).days % 7)


@contextmanager
def _without_jit(connection: Connection) -> Iterator[None]:
    """PostgreSQL's JIT off meanwhile, then as the caller had it: the rollup's
    estimated cost passes the JIT thresholds, and compiling costs more than it
    saves (20 ms to a quarter of a second per statement). Not restored when the body
    fails: the caller's transaction is then aborted, and its rollback undoes it."""
    previous = connection.execute(text("SELECT current_setting('jit')")).scalar_one()
    connection.execute(text("SELECT set_config('jit', 'off', true)"))
    yield
    connection.execute(text("SELECT set_config('jit', :previous, true)"), {"previous": previous})


# --- the statement of one period, per dialect ---------------------------------------------


@lru_cache(maxsize=16)
def _sqlite_rollup(dialect: Dialect) -> Executable:
    """``INSERT INTO api_metrics_summary ... SELECT <the figures of :low .. :high>
    ... ON CONFLICT (period_start, aggregation_type) DO UPDATE``, built once."""
    log = APIRequestLog.__table__
    window = [
        log.c.request_time >= bindparam("low", type_=UTCDateTime()),
        log.c.request_time < bindparam("high", type_=UTCDateTime()),
    ]
    insert = sqlite.insert(APIMetricsSummary)
    columns = ["period_start", "period_end", "aggregation_type", *FIGURES, *STAMPS]
    statement = insert.from_select(columns, _sqlite_figures(window))
    upsert: Executable = statement.on_conflict_do_update(
        index_elements=CONFLICT_KEY,
        set_={name: statement.excluded[name] for name in (*FIGURES, "updated_at")},
    ).returning(APIMetricsSummary.id)  # a rowcount SQLite does not give for WITH ... INSERT
    return upsert


@cache
def _postgresql_rollup() -> Executable:
    """The rollup of every period starting at one of ``:starts`` (each ``:length``
    long), in one statement: a LATERAL pair of aggregates per period, each an
    index-only range of ``ix_api_request_logs_rollup``."""
    replaced = ", ".join(f"{name} = excluded.{name}" for name in (*FIGURES, "updated_at"))
    fractions = ", ".join(str(p / 100) for p in PERCENTILES)
    percentiles = ", ".join(f"totals.p[{i + 1}]" for i in range(len(PERCENTILES)))
    window = "request_time >= period.low AND request_time < period.low + CAST(:length AS interval)"
    mean = "sum(response_time_ms) / count(*)"  # avg's own sum and division, a cheaper step

    def rows(columns: str) -> str:
        # Ordered like ix_api_request_logs_rollup, so the planner reads that index
        # alone (an index-only scan) rather than ix_api_request_logs_request_time
        # and the table: a fifth faster.
        order = "ORDER BY request_time, response_time_ms"
        return f"SELECT {columns} FROM api_request_logs WHERE {window} {order}"  # noqa: S608

    statement = text(  # made of the constants above only
        f"""
        INSERT INTO api_metrics_summary (period_start, period_end, aggregation_type,
            {", ".join(FIGURES)}, {", ".join(STAMPS)})
        SELECT period.low, period.low + CAST(:length AS interval), :kind,
            totals.n, totals.ok, totals.n - totals.ok, totals.mean, {percentiles},
            totals.n / CAST(:seconds AS float8), CAST(totals.n - totals.ok AS float8) / totals.n,
            endpoints.figures, :now, :now
        FROM unnest(CAST(:starts AS timestamptz[])) AS period(low)
        CROSS JOIN LATERAL (
            SELECT count(*) AS n, count(*) FILTER (WHERE status_code < 400) AS ok,
                {mean} AS mean,
                percentile_cont(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY response_time_ms) AS p
            FROM ({rows("response_time_ms, status_code")}) AS logged
        ) AS totals
        CROSS JOIN LATERAL (
            SELECT jsonb_object_agg(endpoint, jsonb_build_object(
                'requests', requests, 'successes', successes,
                'failures', requests - successes,
                'avg_response_time_ms', mean, 'max_response_time_ms', largest)) AS figures
            FROM (
                SELECT endpoint, count(*) AS requests,
                    count(*) FILTER (WHERE status_code < 400) AS successes,
                    {mean} AS mean, max(response_time_ms) AS largest
                FROM ({rows("endpoint, response_time_ms, status_code")}) AS logged
                GROUP BY endpoint
            ) AS per_endpoint
        ) AS endpoints
        WHERE totals.n > 0
        ON CONFLICT (period_start, aggregation_type) DO UPDATE SET {replaced}
        RETURNING id
        """  # noqa: S608
    ).bindparams(
        bindparam("starts", type_=postgresql.ARRAY(DateTime(timezone=True))),
        bindparam("now", type_=DateTime(timezone=True)),
    )
    return statement


def _head() -> list[Any]:
    """The columns every period's row starts with: its start, end and type."""
    return [bindparam(n, type_=UTCDateTime()) for n in ("low", "high")] + [bindparam("kind")]


def _stamps() -> list[Any]:
    return [bindparam("now", type_=UTCDateTime())] * 2


def _sqlite_figures(window: list[ColumnElement[bool]]) -> Select[Any]:
    log = APIRequestLog.__table__
    ordered = (
        select(
            log.c.response_time_ms.label("v"),
            (log.c.status_code < 400).label("ok"),
            log.c.endpoint.label("endpoint"),
        )
        .where(*window)
        .order_by(log.c.response_time_ms)
        .cte("ordered")
        .prefix_with("MATERIALIZED")
    )
    totals = (
        select(
            func.count().label("n"),
            func.coalesce(func.sum(ordered.c.ok), 0).label("ok"),
            func.avg(ordered.c.v).label("mean"),
        )
        .select_from(ordered)
        .cte("totals")
        .prefix_with("MATERIALIZED")
    )
    counted = select(totals.c.n).scalar_subquery()
    per_endpoint = (
        select(
            ordered.c.endpoint,
            func.count().label("requests"),
            func.sum(ordered.c.ok).label("successes"),
            func.avg(ordered.c.v).label("mean"),
            func.max(ordered.c.v).label("largest"),
        )
        .group_by(ordered.c.endpoint)
        .subquery("per_endpoint")
    )
    endpoints = (
        select(
            func.json_group_object(
                per_endpoint.c.endpoint,
                func.json_object(*_endpoint_fields(per_endpoint)),
            )
        )
        .select_from(per_endpoint)
        .scalar_subquery()
    )
    n, ok = totals.c.n, totals.c.ok
    return select(
        *_head(),
        n,
        ok,
        n - ok,
        totals.c.mean,
        *(_sqlite_percentile(ordered, counted, p) for p in PERCENTILES),
        cast(n, Float) / bindparam("seconds", type_=Float()),
        cast(n - ok, Float) / cast(n, Float),
        endpoints,
        *_stamps(),
    ).where(n > 0)


def _sqlite_percentile(ordered: Any, n: Any, percent: int) -> Any:
    """The ``percent``-th percentile of ``ordered.v`` (sorted, ``n`` rows) as
    :func:`statistics.quantiles` computes it: ``j, d = divmod(percent * (n - 1),
    100)``, then ``(x[j] * (100 - d) + x[j + 1] * d) / 100`` (``x[j + 1]`` is
    ``x[j]`` when ``j`` is the last rank, where ``d`` is 0)."""
    scaled = (n - 1) * percent
    rank = cast(scaled, Integer) // 100  # n >= 1: integer division floors
    delta = scaled % 100
    pair = select(ordered.c.v).limit(2).offset(rank).subquery("pair")
    low, high = func.min(pair.c.v), func.max(pair.c.v)
    return select((low * (100 - delta) + high * delta) / 100.0).scalar_subquery()


def _per_endpoint(window: list[ColumnElement[bool]]) -> Select[Any]:
    log = APIRequestLog.__table__
    return (
        select(
            log.c.endpoint,
            func.count().label("requests"),
            func.count().filter(log.c.status_code < 400).label("successes"),
            func.avg(log.c.response_time_ms).label("mean"),
            func.max(log.c.response_time_ms).label("largest"),
        )
        .where(*window)
        .group_by(log.c.endpoint)
    )


def _endpoint_fields(per_endpoint: Any) -> list[Any]:
    """The key/value arguments of one endpoint's JSON object."""
    c = per_endpoint.c
    names = ("requests", "successes", "failures", "avg_response_time_ms", "max_response_time_ms")
    values = (c.requests, c.successes, c.requests - c.successes, c.mean, c.largest)
    return [
        part for pair in zip(names, values, strict=True) for part in (literal(pair[0]), pair[1])
    ]


# --- per-endpoint figures of a time range (request_figures.endpoint_metrics) ---------


@dataclass(frozen=True)
class Counted:
    """One endpoint's counts in a time range."""

    endpoint: str
    requests: int
    successes: int
    avg_ms: float
    max_ms: float


def count_by_endpoint(
    session: Session, conditions: Sequence[ColumnElement[bool]], limit: int
) -> list[Counted]:
    """The ``limit`` busiest endpoints among the requests matching ``conditions``,
    busiest first (ties by name)."""
    per_endpoint = _per_endpoint(list(conditions)).subquery()
    c = per_endpoint.c
    found = session.execute(
        select(c.endpoint, c.requests, c.successes, c.mean, c.largest)
        .order_by(c.requests.desc(), c.endpoint)
        .limit(limit)
    )
    return [Counted(e, int(n), int(ok), float(mean), float(mx)) for e, n, ok, mean, mx in found]


def percentiles_by_endpoint(
    session: Session, conditions: Sequence[ColumnElement[bool]], endpoints: list[str]
) -> dict[str, tuple[float, ...]]:
    """The p50/p95/p99 response times of each of ``endpoints`` among the requests
    matching ``conditions``, computed by the database."""
    if not endpoints:
        return {}
    log = APIRequestLog.__table__
    v = log.c.response_time_ms
    if session.get_bind().dialect.name == "postgresql":
        found = session.execute(
            select(log.c.endpoint, _postgresql_percentiles(v))
            .where(*conditions, log.c.endpoint.in_(endpoints))
            .group_by(log.c.endpoint)
        )
        return {endpoint: tuple(values) for endpoint, values in found}
    return {  # SQLite: one endpoint at a time, over its own index range
        endpoint: _sqlite_percentiles(session, [*conditions, log.c.endpoint == endpoint])
        for endpoint in endpoints
    }


def percentiles(
    session: Session, conditions: Sequence[ColumnElement[bool]]
) -> tuple[float | None, ...]:
    """The p50/p95/p99 response times of all the requests matching ``conditions``,
    computed by the database (None for each when none match)."""
    v = APIRequestLog.__table__.c.response_time_ms
    if session.get_bind().dialect.name == "postgresql":
        found = session.execute(select(_postgresql_percentiles(v)).where(*conditions)).scalar()
        return (None,) * len(PERCENTILES) if found is None else tuple(found)
    return _sqlite_percentiles(session, conditions)


def _sqlite_percentiles(
    session: Session, conditions: Sequence[ColumnElement[bool]]
) -> tuple[Any, ...]:
    v = APIRequestLog.__table__.c.response_time_ms
    ordered = select(v.label("v")).where(*conditions).order_by(v).cte("ordered")
    ordered = ordered.prefix_with("MATERIALIZED")
    n = select(func.count()).select_from(ordered).scalar_subquery()
    row = session.execute(select(*(_sqlite_percentile(ordered, n, p) for p in PERCENTILES)))
    return tuple(row.one())


def _postgresql_percentiles(v: Any) -> Any:
    fractions = postgresql.array([literal(p / 100) for p in PERCENTILES])
    return cast(func.percentile_cont(fractions).within_group(v), FLOATS)
