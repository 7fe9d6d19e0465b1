"""Paging through time-ordered rows, newest first: bounded pages and keyset cursors.

A page is the ``limit`` newest rows in a time range, ordered by their time then
their id (both descending); the next page starts after the last row of this one,
named by its id (``before_id``). The cursor is resolved to that row's time and id,
so each page is an index range read from where the last one stopped, whatever
was written meanwhile (no ``OFFSET`` that rereads and shifts).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from pfd_db.errors import InvalidInput
from pfd_db.store.validation import require_count
from pfd_db.types import as_utc
from pfd_db.values import INT64_MAX

LIMIT_MAX = 1000


def page_size(limit: object) -> int:
    """``limit`` if it is a whole number from 1 to :data:`LIMIT_MAX`."""
    return require_count(limit, "limit", 1, LIMIT_MAX)


def in_range(
    column: InstrumentedAttribute[datetime],
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    """``since <= column < until`` (either end left open when None); InvalidInput
    for a naive time or an empty range."""
    conditions: list[ColumnElement[bool]] = []
    start = None if since is None else moment(since, "since")
    end = None if until is None else moment(until, "until")
    if start is not None and end is not None and end <= start:
        raise InvalidInput(f"until ({end.isoformat()}) must be after since ({start.isoformat()})")
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def window(
    column: InstrumentedAttribute[datetime], since: datetime, until: datetime | None
) -> list[ColumnElement[bool]]:
    """:func:`in_range` for a read that must be bounded: ``since`` is required
    (InvalidInput when None), so a read never grows with the table."""
    if since is None:
        raise InvalidInput("since is required: every such read covers a time range")
    return in_range(column, since, until)


def before(
    session: Session,
    time: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[int],
    before_id: object,
) -> ColumnElement[bool]:
    """Rows older than the row ``before_id`` in (time, id) order; none at all if that
    row no longer exists (retention removes the oldest rows first)."""
    cursor = require_count(before_id, "before_id", 1, INT64_MAX)
    found = session.execute(select(time, ident).where(ident == cursor)).first()
    if found is None:
        return false()
    last_time, last_id = found
    return and_(time <= last_time, or_(time < last_time, ident < last_id))


def newest_page(
    session: Session,
    time: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[int],
    conditions: Sequence[ColumnElement[bool]],
    limit: object,
    before_id: object = None,
) -> list[Any]:
    """One page: at most ``limit`` rows of ``time``'s model matching ``conditions``,
    newest first by (time, id), older than the row ``before_id`` when given."""
    size = page_size(limit)
    where = list(conditions)
    if before_id is not None:
        where.append(before(session, time, ident, before_id))
    query = select(time.class_).where(*where).order_by(time.desc(), ident.desc()).limit(size)
    return list(session.scalars(query))


def moment(value: object, field: str) -> datetime:
    """``value`` in UTC if it is a timezone-aware datetime; InvalidInput naming ``field``."""
    if not isinstance(value, datetime):
        raise InvalidInput(
            f"{field} must be a timezone-aware datetime (got {type(value).__name__})"
        )
    try:
        return as_utc(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc}") from None
