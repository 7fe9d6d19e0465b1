"""API traffic, written: the request logs a web server hands over, many at a time.

:func:`record_requests` checks every row, then writes them through the shared
bulk writer (:mod:`pfd_db.store.bulk`). The dashboard reads them back through
:mod:`pfd_db.store.ops.request_lists` (the requests themselves) and
:mod:`pfd_db.store.ops.request_figures` (counts, times, percentiles).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pfd_db.errors import NotFound
from pfd_db.models import APIKey, APIRequestLog
from pfd_db.store import paging, remote_text
from pfd_db.store.bulk import Bulk, Row, Writer, writer_for
from pfd_db.store.ops import rollup_schedule
from pfd_db.store.validation import (
    each_row,
    optional_str,
    require_count,
    require_json,
    require_non_negative,
    require_row,
    require_text,
)
from pfd_db.types import utcnow
from pfd_db.values import INT32_MAX, INT64_MAX

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
API_KEY_ID = COLUMNS.index("api_key_id")
ENDPOINT_MAX = 255
METHOD_MAX = 10
IP_MAX = 45
USER_AGENT_MAX = 2000
ERROR_MAX = 10_000
BATCH = 5_000  # rows per statement: bounds the memory a huge call takes
KEY_CHECK_BATCH = 1_000
REQUESTS = Bulk(
    table=APIRequestLog.metadata.tables[APIRequestLog.__tablename__],
    columns=COLUMNS,
    shared=("created_at", "updated_at"),
    documents=frozenset({"request_payload_sample", "response_payload_sample"}),
    batch=BATCH,
)
"""Request-log rows, written in bulk."""


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
    PostgreSQL one INSERT that unnests an array per column. Rows older than a
    rollup watermark mark their periods for the next incremental rollup
    (:func:`pfd_db.store.ops.rollup_schedule.note_late_rows`, which on PostgreSQL
    waits for a rollup run in progress). Flushes first (so a key just added
    counts); the caller commits.
    """
    session.flush()
    connection = session.connection()
    writer = writer_for(REQUESTS, connection.dialect)
    now = utcnow()
    times: list[datetime] = []  # each row's request_time, for the rollups' late-row marks
    checked = each_row(rows, lambda row: _checked_row(row, writer, now, times))
    if not checked:
        return 0
    refuse_unknown_keys(session, checked)
    writer.write(connection, checked, {"created_at": now, "updated_at": now})
    rollup_schedule.note_late_rows(session, times)
    return len(checked)


def _checked_row(row: object, writer: Writer, now: datetime, times: list[datetime]) -> Row:
    """``row``'s values in COLUMNS order; its request time goes to ``times``."""
    get = require_row(row, ROW_KEYS).get
    request_time, document = get("request_time"), writer.document
    moment = now if request_time is None else paging.moment(request_time, "request_time")
    times.append(moment)
    return (
        require_text(get("endpoint"), "endpoint", ENDPOINT_MAX),
        require_text(get("method"), "method", METHOD_MAX).upper(),
        status_code(get("status_code")),
        writer.stamp(moment),
        require_non_negative(get("response_time_ms"), "response_time_ms"),
        _size(get("request_size_bytes", 0), "request_size_bytes"),
        _size(get("response_size_bytes", 0), "response_size_bytes"),
        remote_text.checked(get("ip_address"), "ip_address", IP_MAX),
        remote_text.checked(get("user_agent"), "user_agent", USER_AGENT_MAX),
        _key_id(get("api_key_id")),
        optional_str(get("error_message"), "error_message", ERROR_MAX),
        document(require_json(get("request_payload_sample"), "request_payload_sample")),
        document(require_json(get("response_payload_sample"), "response_payload_sample")),
    )


def status_code(value: object) -> int:
    """``value`` if it is an HTTP status (100 to 599); InvalidInput otherwise."""
    return require_count(value, "status_code", 100, 599)


def _size(value: object, field: str) -> int | None:
    return None if value is None else require_count(value, field, 0, INT32_MAX)


def _key_id(value: object) -> int | None:
    return None if value is None else require_count(value, "api_key_id", 1, INT64_MAX)


def refuse_unknown_keys(session: Session, rows: list[Row], at: int = API_KEY_ID) -> None:
    """NotFound naming the first row whose api_key_id (at position ``at``) no key has."""
    wanted = sorted({row[at] for row in rows} - {None})
    found: set[int] = set()
    for start in range(0, len(wanted), KEY_CHECK_BATCH):
        chunk = wanted[start : start + KEY_CHECK_BATCH]
        found.update(session.scalars(select(APIKey.id).where(APIKey.id.in_(chunk))))
    if len(found) == len(wanted):
        return
    index = next(i for i, row in enumerate(rows) if row[at] not in (None, *found))
    raise NotFound(f"row {index}: no APIKey with id {rows[index][at]} (api_key_id)")
