"""Column types that behave the same on SQLite and PostgreSQL.

- :class:`UTCDateTime`: timezone-aware UTC in and out. A naive datetime is
  rejected with :class:`~pfd_db.errors.InvalidInput` rather than guessed at:
  a naive value is usually local time mistaken for UTC, a bug best caught at
  the write. Aware values in any zone are converted to UTC.
- :data:`JSONDoc`: JSONB on PostgreSQL, JSON (text) on SQLite.
- :data:`StringList`: ``ARRAY(VARCHAR)`` on PostgreSQL, a JSON array on SQLite.
- :data:`SearchDocument`: the full-text document of a row: a ``TSVECTOR`` on
  PostgreSQL, its plain text on SQLite (indexed there by an FTS5 table).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from pfd_db.errors import InvalidInput

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""The moments a ``now=`` clock may show (:func:`utc_or_now`)."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` converted to UTC; a naive value, or not a datetime, is :class:`InvalidInput`."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"expected a timezone-aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            f"naive datetime {value.isoformat()} given: pfd-db stores timezone-aware UTC, "
            "attach a tzinfo (for example datetime.timezone.utc)"
        )
    return value.astimezone(UTC)


def utc_or_now(value: datetime | None) -> datetime:
    """``value`` in UTC if given (a naive one raises :class:`InvalidInput`), else
    the current time: the clock of every function that takes ``now=``. A clock
    outside :data:`EARLIEST` .. :data:`LATEST` is :class:`InvalidInput`: windows
    and lifetimes counted from it would leave the calendar."""
    if value is None:
        return utcnow()
    if isinstance(value, datetime) and value.tzinfo is not None and not EARLIEST <= value < LATEST:
        raise InvalidInput(
            f"now={value.isoformat()} is outside the years a clock may show "
            f"({EARLIEST.year} to {LATEST.year - 1})"
        )
    return as_utc(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored as UTC on every dialect."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise InvalidInput(f"expected a datetime, got {type(value).__name__}")
        utc = as_utc(value)
        # SQLite has no time zone type: store the UTC wall time.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONDoc: TypeEngine[Any] = JSON().with_variant(postgresql.JSONB(), "postgresql")
StringList: TypeEngine[Any] = JSON().with_variant(postgresql.ARRAY(String()), "postgresql")
SearchDocument: TypeEngine[Any] = Text().with_variant(postgresql.TSVECTOR(), "postgresql")
BigID: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
