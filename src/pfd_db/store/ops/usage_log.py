"""API-key usage, written in bulk: the ``api_usage`` rows a web server hands over.

:func:`record_usage` is to ``api_usage`` what
:func:`pfd_db.store.ops.request_log.record_requests` is to the request logs:
every row checked first, then written through the shared bulk writer
(:mod:`pfd_db.store.bulk`). One request's row alone goes through
:func:`pfd_db.store.identity.api_keys.record_usage`; a key's usage is read back
through :func:`pfd_db.store.ops.request_figures.key_usage`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from pfd_db.models import APIUsage
from pfd_db.store import paging
from pfd_db.store.bulk import Bulk, Row, Writer, writer_for
from pfd_db.store.ops.request_log import (
    ENDPOINT_MAX,
    METHOD_MAX,
    refuse_unknown_keys,
    status_code,
)
from pfd_db.store.validation import each_row, require_count, require_row, require_text
from pfd_db.types import utcnow
from pfd_db.values import INT32_MAX, INT64_MAX

COLUMNS = ("api_key_id", "endpoint", "method", "status_code", "response_time_ms", "timestamp")
ROW_KEYS = frozenset(COLUMNS)
REQUIRED = frozenset({"api_key_id", "endpoint", "method", "status_code"})
BATCH = 5_000
USAGE = Bulk(
    table=APIUsage.metadata.tables[APIUsage.__tablename__],
    columns=COLUMNS,
    shared=("created_at", "updated_at"),
    batch=BATCH,
)
"""Usage rows, written in bulk."""


def record_usage(session: Session, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write many ``api_usage`` rows at once; returns how many.

    Each row has ``api_key_id`` (an API key's id), ``endpoint`` (at most 255
    characters), ``method`` (an HTTP method, stored upper-case) and
    ``status_code`` (100 to 599), and may have ``response_time_ms`` (a whole
    number of milliseconds, at least 0, or None) and ``timestamp``
    (timezone-aware; default: now).

    Every row is checked first: the first bad one raises :class:`InvalidInput`
    naming its index and field (:class:`NotFound` for an ``api_key_id`` no key
    has), and nothing is written. Then each batch of ``BATCH`` rows is one
    statement (executemany on SQLite, one ``unnest`` INSERT on PostgreSQL).
    Flushes first; the caller commits.
    """
    session.flush()
    connection = session.connection()
    writer = writer_for(USAGE, connection.dialect)
    now = utcnow()
    stamp = writer.stamp(now)
    checked = each_row(rows, lambda row: _checked_row(row, writer, stamp))
    if not checked:
        return 0
    refuse_unknown_keys(session, checked, at=0)
    writer.write(connection, checked, {"created_at": now, "updated_at": now})
    return len(checked)


def _checked_row(row: object, writer: Writer, now: Any) -> Row:
    """``row``'s values in COLUMNS order."""
    get = require_row(row, ROW_KEYS, REQUIRED).get
    moment, ms = get("timestamp"), get("response_time_ms")
    return (
        require_count(get("api_key_id"), "api_key_id", 1, INT64_MAX),
        require_text(get("endpoint"), "endpoint", ENDPOINT_MAX),
        require_text(get("method"), "method", METHOD_MAX).upper(),
        status_code(get("status_code")),
        None if ms is None else require_count(ms, "response_time_ms", 0, INT32_MAX),
        now if moment is None else writer.stamp(paging.moment(moment, "timestamp")),
    )
