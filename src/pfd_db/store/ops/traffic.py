"""API traffic: request logs written in bulk, and the figures the dashboard shows.

A web server hands :func:`record_requests` the requests it served, many at a
time. The dashboard reads them back through bounded queries (a time range and,
for lists, a limit), each served by an index (revision 0006):

- :func:`recent_requests` and :func:`error_logs`: the newest requests, filtered,
  a page at a time;
- :func:`endpoint_metrics`: per endpoint, requests, failures, mean and
  percentile response times;
- :func:`timeline`: requests, failures and mean response time per fixed bucket;
- :func:`top_api_keys`: the keys that made the most requests;
- :func:`key_usage`: one key's usage (``api_usage``) per day and per endpoint;
- :func:`rollup` and :func:`summaries`: the hourly, daily and weekly rows of
  ``api_metrics_summary`` (see :mod:`pfd_db.store.ops.rollups`).

A request succeeded when its status is below 400. Percentiles are the
"inclusive" ones of :func:`statistics.quantiles` (linear interpolation between
the closest ranks), computed by the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Executable,
    Integer,
    String,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import JSON, TypeEngine

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import APIKey, APIRequestLog, APIUsage
from pfd_db.store import paging
from pfd_db.store.identity.logins import storable
from pfd_db.store.ops import rollups
from pfd_db.store.ops.rollups import rollup, summaries
from pfd_db.store.validation import (
    optional_str,
    require_count,
    require_items,
    require_json,
    require_non_negative,
    require_text,
)
from pfd_db.store.writes import load
from pfd_db.types import utcnow
from pfd_db.values import INT32_MAX, INT64_MAX

__all__ = [
    "DayUsage",
    "EndpointFigures",
    "KeyTraffic",
    "KeyUsage",
    "TimelinePoint",
    "endpoint_metrics",
    "error_logs",
    "key_usage",
    "recent_requests",
    "record_requests",
    "rollup",
    "summaries",
    "timeline",
    "top_api_keys",
]

COLUMNS = (
    "endpoint",
    "method",
    "status_code",
    "request_time",
    "response_time_ms",
    "request_size_bytes",
    "response_size_bytes",
    "ip_address",
    "user_agent",
    "api_key_id",
    "error_message",
    "request_payload_sample",
    "response_payload_sample",
)
ROW_KEYS = frozenset(COLUMNS)
SHARED = ("created_at", "updated_at")  # the same for every row of a call
REQUEST_TIME, API_KEY_ID = COLUMNS.index("request_time"), COLUMNS.index("api_key_id")
ENDPOINT_MAX = 255
METHOD_MAX = 10
IP_MAX = 45
USER_AGENT_MAX = 2000
ERROR_MAX = 10_000
BATCH = 5_000  # rows per statement: bounds the memory a huge call takes
KEY_CHECK_BATCH = 1_000
BUCKET_MIN = timedelta(seconds=1)
BUCKETS_MAX = 10_000
DAYS_MAX = 3_660
# dimensions=1: a sample that is a JSON list is one document, not a sub-array of the batch
DOCUMENT_ARRAY = postgresql.ARRAY(postgresql.JSONB(none_as_null=True), dimensions=1)
DOCUMENT_TEXT = JSON(none_as_null=True)  # SQLite: a payload sample as JSON text, None as NULL
ERRORS = APIRequestLog.status_code >= literal_column("400")
"""Failed requests, in the words of the partial index ``ix_api_request_logs_errors``
(a constant, not a parameter, so that the planner can use it)."""

Row = tuple[Any, ...]
"""One request, checked: its values in :data:`COLUMNS` order, as the writer takes them."""


# --- writing -----------------------------------------------------------------------


def record_requests(session: Session, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write many request-log rows at once; returns how many.

    Each row has ``endpoint`` (at most 255 characters), ``method`` (an HTTP
    method, stored upper-case), ``status_code`` (100 to 599) and
    ``response_time_ms`` (a finite number, at least 0), and may have
    ``request_time`` (timezone-aware; default: now), ``request_size_bytes`` and
    ``response_size_bytes`` (whole numbers, default 0), ``ip_address`` and
    ``user_agent`` (as the client sent them: clipped and escaped like the login
    history's), ``api_key_id`` (an API key's id, or None), ``error_message`` and
    the JSON samples ``request_payload_sample`` and ``response_payload_sample``.

    Every row is checked first: the first bad one raises :class:`InvalidInput`
    naming its index and field (:class:`NotFound` for an ``api_key_id`` no key
    has), and nothing is written. Then each batch of ``BATCH`` rows is one
    statement: on SQLite the driver's executemany of one prepared INSERT, on
    PostgreSQL one INSERT that unnests an array per column. Flushes first (so a
    key just added counts); the caller commits.
    """
    session.flush()
    connection = session.connection()
    writer = _writer_for(connection.dialect)
    now = utcnow()
    checked = _checked_rows(rows, writer.stamp)
    if not checked:
        return 0
    _refuse_unknown_keys(session, checked)
    for start in range(0, len(checked), BATCH):
        writer.write(connection, checked[start : start + BATCH], now)
    return len(checked)


def _checked_rows(rows: Iterable[Mapping[str, Any]], stamp: Callable[[datetime], Any]) -> list[Row]:
    checked: list[Row] = []
    for index, row in enumerate(require_items(rows, "rows")):
        try:
            checked.append(_checked_row(row, stamp))
        except InvalidInput as exc:
            raise InvalidInput(f"row {index}: {exc}") from None
    return checked


def _checked_row(row: object, stamp: Callable[[datetime], Any]) -> Row:
    """``row``'s values in COLUMNS order (a missing request_time as None: now)."""
    if not isinstance(row, Mapping):
        raise InvalidInput(
            f"must be a mapping of column names to values (got {type(row).__name__})"
        )
    if not ROW_KEYS.issuperset(row):
        unknown = sorted(str(key) for key in set(row) - ROW_KEYS)
        raise InvalidInput(f"unknown fields {unknown} (expected some of {sorted(ROW_KEYS)})")
    get = row.get
    request_time = get("request_time")
    return (
        require_text(get("endpoint"), "endpoint", ENDPOINT_MAX),
        require_text(get("method"), "method", METHOD_MAX).upper(),
        _status_code(get("status_code")),
        None if request_time is None else stamp(paging.moment(request_time, "request_time")),
        require_non_negative(get("response_time_ms"), "response_time_ms"),
        _size(get("request_size_bytes", 0), "request_size_bytes"),
        _size(get("response_size_bytes", 0), "response_size_bytes"),
        _client_text(get("ip_address"), "ip_address", IP_MAX),
        _client_text(get("user_agent"), "user_agent", USER_AGENT_MAX),
        _key_id(get("api_key_id")),
        optional_str(get("error_message"), "error_message", ERROR_MAX),
        require_json(get("request_payload_sample"), "request_payload_sample"),
        require_json(get("response_payload_sample"), "response_payload_sample"),
    )


def _status_code(value: object) -> int:
    return require_count(value, "status_code", 100, 599)


def _size(value: object, field: str) -> int | None:
    return None if value is None else require_count(value, field, 0, INT32_MAX)


def _client_text(value: object, field: str, length: int) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string (got {type(value).__name__})")
    return storable(value, length)


def _key_id(value: object) -> int | None:
    return None if value is None else require_count(value, "api_key_id", 1, INT64_MAX)


def _refuse_unknown_keys(session: Session, rows: list[Row]) -> None:
    """NotFound naming the first row whose api_key_id no key has."""
    wanted = sorted({row[API_KEY_ID] for row in rows} - {None})
    found: set[int] = set()
    for start in range(0, len(wanted), KEY_CHECK_BATCH):
        chunk = wanted[start : start + KEY_CHECK_BATCH]
        found.update(session.scalars(select(APIKey.id).where(APIKey.id.in_(chunk))))
    if len(found) == len(wanted):
        return
    index = next(i for i, row in enumerate(rows) if row[API_KEY_ID] not in (None, *found))
    raise NotFound(f"row {index}: no APIKey with id {rows[index][API_KEY_ID]} (api_key_id)")


# --- writing, per dialect --------------------------------------------------------------


@dataclass(frozen=True)
class _Writer:
    """How request rows reach ``api_request_logs`` through one dialect, prepared once."""

    stamp: Callable[[datetime], Any]
    """A checked request time as :attr:`write` takes it."""
    write: Callable[[Connection, list[Row], datetime], None]
    """Insert a batch of checked rows; ``now`` fills missing request times and the
    two timestamps."""


@lru_cache(maxsize=16)
def _writer_for(dialect: Dialect) -> _Writer:
    """The writer for ``dialect`` (an engine's, with its own JSON serializer)."""
    if dialect.name == "postgresql":
        return _Writer(_as_is, _write_postgresql)
    table = _table()
    stamp = table.c.request_time.type.dialect_impl(dialect).bind_processor(dialect)
    document = DOCUMENT_TEXT.dialect_impl(dialect).bind_processor(dialect)
    assert stamp is not None and document is not None  # SQLite stores both as text
    statement = _sqlite_insert(dialect)

    def write(connection: Connection, rows: list[Row], now: datetime) -> None:
        stamped = stamp(now)
        connection.exec_driver_sql(
            statement,
            [
                (
                    *row[:REQUEST_TIME],
                    stamped if row[REQUEST_TIME] is None else row[REQUEST_TIME],
                    *row[REQUEST_TIME + 1 : -2],
                    document(row[-2]),
                    document(row[-1]),
                    stamped,
                    stamped,
                )
                for row in rows
            ],
        )

    return _Writer(stamp, write)


def _as_is(value: datetime) -> datetime:
    return value


def _sqlite_insert(dialect: Dialect) -> str:
    """The INSERT of one request compiled for ``dialect``, its parameters (``?``) in
    COLUMNS order then the two timestamps."""
    order = [*COLUMNS, *SHARED]
    statement = sqlite.insert(_table()).values({name: bindparam(name) for name in order})
    compiled = statement.compile(dialect=dialect)
    if compiled.positiontup != order:
        raise AssertionError(f"unexpected parameter order {compiled.positiontup}")
    return compiled.string


def _write_postgresql(connection: Connection, rows: list[Row], now: datetime) -> None:
    """:func:`_unnest_insert` with one array per column; the timestamps once."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    columns[REQUEST_TIME] = [now if moment is None else moment for moment in columns[REQUEST_TIME]]
    arrays = dict(zip(COLUMNS, columns, strict=True))
    connection.execute(_unnest_insert(), {**arrays, "now": now})


@cache
def _unnest_insert() -> Executable:
    """``INSERT INTO api_request_logs ... SELECT *, :now, :now FROM unnest(:endpoint,
    :method, ...)``: a fixed statement whatever the number of rows."""
    table = _table()
    arrays = [bindparam(name, type_=_array_of(name, table.c[name].type)) for name in COLUMNS]
    batch = func.unnest(*arrays).table_valued(*COLUMNS).render_derived()
    now = bindparam("now", type_=DateTime(timezone=True))
    rows = select(*(batch.c[name] for name in COLUMNS), now, now)
    return postgresql.insert(table).from_select([*COLUMNS, *SHARED], rows)


def _array_of(name: str, item: TypeEngine[Any]) -> TypeEngine[Any]:
    if name.endswith("_payload_sample"):
        return DOCUMENT_ARRAY
    if name == "request_time":
        return postgresql.ARRAY(DateTime(timezone=True))
    return postgresql.ARRAY(item)


def _table() -> Any:
    return APIRequestLog.__table__


# --- reading: requests -------------------------------------------------------------


def recent_requests(
    session: Session,
    since: datetime,
    until: datetime | None = None,
    *,
    endpoint: str | None = None,
    api_key: APIKey | int | None = None,
    status_code: int | None = None,
    errors_only: bool = False,
    limit: int = 50,
    before_id: int | None = None,
) -> list[APIRequestLog]:
    """The newest requests from ``since`` (inclusive) to ``until`` (exclusive; open
    when None), at most ``limit`` (up to 1000), newest first: of one ``endpoint``,
    one ``api_key``, one ``status_code``, or only failures (``errors_only``:
    status 400 or more) when given. The next page: ``before_id`` = the id of the
    last request of this one.

    Served by ``ix_api_request_logs_request_time``, or with a filter by
    ``ix_api_request_logs_endpoint_time``, ``ix_api_request_logs_key_time`` or the
    partial ``ix_api_request_logs_errors``.
    """
    conditions = _window(since, until)
    if endpoint is not None:
        conditions.append(APIRequestLog.endpoint == require_text(endpoint, "endpoint", 255))
    if api_key is not None:
        conditions.append(APIRequestLog.api_key_id == load(session, APIKey, api_key, "api_key").id)
    if status_code is not None:
        conditions.append(APIRequestLog.status_code == _status_code(status_code))
    if errors_only:
        conditions.append(ERRORS)
    return paging.newest_page(
        session, APIRequestLog.request_time, APIRequestLog.id, conditions, limit, before_id
    )


def error_logs(
    session: Session,
    since: datetime,
    until: datetime | None = None,
    *,
    endpoint: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[APIRequestLog]:
    """The newest failed requests (status 400 or more) from ``since`` to ``until``,
    newest first, with their error messages: :func:`recent_requests` with
    ``errors_only``. Served by the partial index ``ix_api_request_logs_errors``."""
    return recent_requests(
        session,
        since,
        until,
        endpoint=endpoint,
        errors_only=True,
        limit=limit,
        before_id=before_id,
    )


# --- reading: figures ----------------------------------------------------------------


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
    conditions = [APIUsage.api_key_id == key.id, *_window(since, until, APIUsage.timestamp)]
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


# --- shared --------------------------------------------------------------------------


def _window(
    since: datetime, until: datetime | None, column: Any = APIRequestLog.request_time
) -> list[ColumnElement[bool]]:
    """``since <= column < until``: ``since`` is required (every query is bounded)."""
    if since is None:
        raise InvalidInput("since is required: every traffic query covers a time range")
    return paging.in_range(column, since, until)


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
