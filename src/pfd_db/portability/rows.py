"""Rows in a form both dialects take: how they are read, written and fingerprinted.

A *portable row* holds, for each stored column of a table (generated columns
are left out, the database makes them), a value that means the same on SQLite
and PostgreSQL:

- JSON documents as their JSON text, so that SQL NULL and a JSON ``null`` stay
  apart, and nothing is parsed on the way through;
- lists of strings (``StringList``: an array on PostgreSQL) as Python lists;
- timestamps as aware UTC datetimes; booleans as bools;
- enumerations as their stored strings; everything else as the driver gives it.

Writes go through PostgreSQL's ``COPY`` (the fastest way in) or, on SQLite, one
Core ``executemany`` per batch. A fingerprint (row count and SHA-256 over the
rows in id order, with JSON compared by meaning) is the same for the same rows
on either dialect, which is how a copy is checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Enum,
    Select,
    String,
    Table,
    Text,
    bindparam,
    cast,
    insert,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql

from pfd_db.types import UTCDateTime

Row = tuple[Any, ...]
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


class Kind(StrEnum):
    """How a column's values travel between dialects."""

    JSON = "json"
    LIST = "list"
    TIME = "time"
    BOOL = "bool"
    ENUM = "enum"
    PLAIN = "plain"


def kind_of(column: Column[Any]) -> Kind:
    """The :class:`Kind` of a model column."""
    if isinstance(column.type.dialect_impl(_PG), postgresql.ARRAY):
        return Kind.LIST
    if isinstance(column.type, JSON) or isinstance(getattr(column.type, "impl", None), JSON):
        return Kind.JSON  # a TypeDecorator over JSON (EpochMetrics) travels as JSON too
    if isinstance(column.type, UTCDateTime):
        return Kind.TIME
    if isinstance(column.type, Boolean):
        return Kind.BOOL
    if isinstance(column.type, Enum):
        return Kind.ENUM
    return Kind.PLAIN


@dataclass(frozen=True)
class Layout:
    """The stored columns of a table, in order, with their kinds."""

    table: Table
    columns: tuple[Column[Any], ...]
    kinds: tuple[Kind, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def index(self, name: str) -> int:
        return self.names.index(name)


def layout_of(table: Table) -> Layout:
    """The columns of ``table`` that are stored (not generated), with their kinds."""
    columns = tuple(c for c in table.columns if c.computed is None)
    return Layout(table, columns, tuple(kind_of(c) for c in columns))


# --- reading -----------------------------------------------------------------------


def _read_expression(column: Column[Any], kind: Kind, dialect: str) -> ColumnElement[Any]:
    if kind is Kind.JSON:
        return cast(column, Text).label(column.name)
    if kind is Kind.ENUM or (kind is Kind.TIME and dialect == "sqlite"):
        return type_coerce(column, String).label(column.name)
    return column


def select_rows(layout: Layout, dialect: str = "postgresql") -> Select[Any]:
    """SELECT of the table's portable rows, in id order (on SQLite, times come as
    their stored text: see :func:`stream_rows`)."""
    pairs = zip(layout.columns, layout.kinds, strict=True)
    expressions = (_read_expression(c, k, dialect) for c, k in pairs)
    return select(*expressions).order_by(layout.table.c.id)


def stream_rows(conn: Connection, layout: Layout, batch_size: int) -> Iterator[Sequence[Row]]:
    """The table's portable rows in id order, ``batch_size`` at a time (a server-side
    cursor on PostgreSQL, so that a big table is never held in memory)."""
    dialect = conn.dialect.name
    statement = select_rows(layout, dialect)
    times = [at for at, kind in enumerate(layout.kinds) if kind is Kind.TIME]
    result = conn.execution_options(yield_per=batch_size).execute(statement)
    for partition in result.partitions():
        if dialect == "sqlite" and times:
            yield [_with_sqlite_times(row, times) for row in partition]
        else:
            yield [tuple(row) for row in partition]


def _with_sqlite_times(row: Sequence[Any], times: Sequence[int]) -> Row:
    # What UTCDateTime reads, without its per-value regex: SQLite keeps naive UTC text.
    values = list(row)
    for at in times:
        if values[at] is not None:
            values[at] = datetime.fromisoformat(values[at]).replace(tzinfo=UTC)
    return tuple(values)


# --- writing -----------------------------------------------------------------------


def write_rows(conn: Connection, layout: Layout, rows: Sequence[Row]) -> None:
    """Insert portable ``rows`` (ids included) into the table, in ``conn``'s transaction."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy_into_postgresql(conn, layout, rows)
    else:
        named = [dict(zip(layout.names, row, strict=True)) for row in rows]
        conn.execute(_insert_statement(layout), named)


def _copy_into_postgresql(conn: Connection, layout: Layout, rows: Sequence[Row]) -> None:
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in layout.names)
    statement = f"COPY {quote(layout.table.name)} ({columns}) FROM STDIN"
    driver: Any = conn.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _insert_statement(layout: Layout) -> Any:
    def parameter(column: Column[Any], kind: Kind) -> Any:
        portable_type = {Kind.JSON: Text(), Kind.ENUM: String()}.get(kind, column.type)
        return bindparam(column.name, type_=portable_type)

    values = {c.name: parameter(c, k) for c, k in zip(layout.columns, layout.kinds, strict=True)}
    return insert(layout.table).values(values)


# --- fingerprints ------------------------------------------------------------------


@dataclass
class Fingerprint:
    """Row count and running SHA-256 of a table's rows (fed in id order)."""

    rows: int = 0
    _hash: Any = None

    def __post_init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, kinds: Sequence[Kind], rows: Sequence[Row]) -> None:
        documents = [at for at, kind in enumerate(kinds) if kind is Kind.JSON]
        if documents:
            rows = [_with_canonical_json(row, documents) for row in rows]
        self.rows += len(rows)
        self._hash.update("".join(f"{row!r}\n" for row in rows).encode())

    @property
    def checksum(self) -> str:
        return str(self._hash.hexdigest()[:16])


def canonical(kinds: Sequence[Kind], row: Row) -> Row:
    """``row`` in a form that is equal on both dialects for equal data: JSON text
    spelled one way. (Times, lists and the rest come back alike already: aware
    UTC datetimes, Python lists.)"""
    return _with_canonical_json(row, [at for at, kind in enumerate(kinds) if kind is Kind.JSON])


def _with_canonical_json(row: Row, documents: Sequence[int]) -> Row:
    values = list(row)
    for at in documents:
        if values[at] is not None:
            # PostgreSQL re-spells JSON (key order, spaces, 1e+20 as an integer): compare meaning.
            document = json.loads(values[at], parse_int=float)
            values[at] = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return tuple(values)


def fingerprint_table(conn: Connection, layout: Layout, batch_size: int = 5000) -> Fingerprint:
    """The fingerprint of the table as stored now."""
    print_ = Fingerprint()
    for batch in stream_rows(conn, layout, batch_size):
        print_.add(layout.kinds, batch)
    return print_
