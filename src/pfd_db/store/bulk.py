"""Writing many rows of one table at once, the fastest way each dialect has.

A :class:`Bulk` names a table's columns: those each row brings (``columns``, in
the order of the rows' tuples) and those every row of a call shares
(``shared``: the owner, the timestamps), given once per call. :func:`writer_for`
prepares, once per dialect, a :class:`Writer` whose :meth:`Writer.write` sends
the rows in batches of ``Bulk.batch``, each batch one statement:

- SQLite: the driver's own ``executemany`` of one prepared INSERT, the rows as
  tuples (the shared values converted once per call);
- PostgreSQL: one ``INSERT ... SELECT ... FROM unnest(:a, :b, ...)`` with an
  array per column, a fixed statement whatever the number of rows (one row: an
  ``INSERT ... VALUES``).

With a ``conflict`` key, rows whose key is taken replace the stored row's
values (``ON CONFLICT ... DO UPDATE``, keeping its ``created_at``): the right
tool for idempotent writes such as an epoch logged again.

Values reach :meth:`Writer.write` as the driver takes them: JSON documents
through :attr:`Writer.document` and times through :attr:`Writer.stamp`, which the
caller applies while it checks the rows (nothing is converted twice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Connection, Dialect, Executable, Table, bindparam, func
from sqlalchemy import select as select_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeDecorator, TypeEngine

from pfd_db.types import UTCDateTime

Row = tuple[Any, ...]
"""One row's values in :attr:`Bulk.columns` order, converted as the driver takes them."""

DOCUMENT_TEXT = JSON(none_as_null=True)  # SQLite: a document as JSON text, None as NULL
DOCUMENT_JSONB = postgresql.JSONB(none_as_null=True)
# dimensions=1: a document that is a JSON list is one value, not a sub-array of the batch
DOCUMENT_ARRAY = postgresql.ARRAY(DOCUMENT_JSONB, dimensions=1)


@dataclass(frozen=True)
class Bulk:
    """What a bulk write of one table writes."""

    table: Table
    columns: tuple[str, ...]
    """The columns each row brings, in the order of its tuple."""
    shared: tuple[str, ...] = ()
    """The columns whose value is the same for every row of a call."""
    documents: frozenset[str] = frozenset()
    """Columns of JSON documents (None stored as NULL)."""
    batch: int = 2_500
    """Rows per statement: bounds the memory a huge call takes."""
    conflict: tuple[str, ...] = ()
    """A unique key: a row whose key is taken replaces the stored values
    (all but the key and ``created_at``). Empty: a plain INSERT."""


@dataclass(frozen=True)
class Writer:
    """How rows of one :class:`Bulk` reach its table through one dialect, prepared once."""

    bulk: Bulk
    stamp: Callable[[datetime], Any]
    """A time as :meth:`write` takes it."""
    document: Callable[[Any], Any]
    """A JSON document as :meth:`write` takes it."""
    send: Callable[[Connection, Sequence[Row], Mapping[str, Any]], None]

    def write(self, connection: Connection, rows: Sequence[Row], shared: Mapping[str, Any]) -> None:
        """Insert ``rows`` with the ``shared`` values (plain Python values: converted
        here, once), one statement per batch."""
        size = self.bulk.batch
        for start in range(0, len(rows), size):
            self.send(connection, rows[start : start + size], shared)


@lru_cache(maxsize=64)
def writer_for(bulk: Bulk, dialect: Dialect) -> Writer:
    """The writer of ``bulk`` for ``dialect`` (an engine's, with its own JSON serializer)."""
    if dialect.name == "postgresql":
        return Writer(bulk, _as_is, _as_is, _postgresql_sender(bulk))
    stamp = _bind_processor(UTCDateTime(), dialect)
    document = DOCUMENT_TEXT.dialect_impl(dialect).bind_processor(dialect)
    assert stamp is not None and document is not None  # SQLite stores both as text
    return Writer(bulk, stamp, document, _sqlite_sender(bulk, dialect))


def _as_is(value: Any) -> Any:
    return value


def _bind_processor(kind: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    return kind.dialect_impl(dialect).bind_processor(dialect)


# --- SQLite ----------------------------------------------------------------------------


def _sqlite_sender(
    bulk: Bulk, dialect: Dialect
) -> Callable[[Connection, Sequence[Row], Mapping[str, Any]], None]:
    statement, head, tail = _sqlite_statement(bulk, dialect)
    converters = {
        name: _bind_processor(bulk.table.c[name].type, dialect) or _as_is for name in bulk.shared
    }

    def converted(shared: Mapping[str, Any], names: tuple[str, ...]) -> tuple[Any, ...]:
        return tuple(converters[name](shared[name]) for name in names)

    def send(connection: Connection, rows: Sequence[Row], shared: Mapping[str, Any]) -> None:
        before, after = converted(shared, head), converted(shared, tail)
        if len(rows) == 1:
            connection.exec_driver_sql(statement, before + rows[0] + after)
        elif before:
            connection.exec_driver_sql(statement, [before + row + after for row in rows])
        else:  # the common case: one tuple built per row, not two
            connection.exec_driver_sql(statement, [row + after for row in rows])

    return send


def _sqlite_statement(bulk: Bulk, dialect: Dialect) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The INSERT of one row compiled for ``dialect``, and the shared columns whose
    parameters (``?``, in the table's column order) come before and after the
    row's own, which must be together and in ``columns`` order."""
    names = [*bulk.columns, *bulk.shared]
    statement = sqlite.insert(bulk.table).values({name: bindparam(name) for name in names})
    compiled = _on_conflict(bulk, statement).compile(dialect=dialect)
    order = list(compiled.positiontup or ())
    first = order.index(bulk.columns[0]) if bulk.columns[0] in order else -1
    head, tail = order[:first], order[first + len(bulk.columns) :]
    if first < 0 or order[first : first + len(bulk.columns)] != list(bulk.columns):
        raise AssertionError(f"unexpected parameter order {order}")
    return compiled.string, tuple(head), tuple(tail)


# --- PostgreSQL ------------------------------------------------------------------------


def _postgresql_sender(
    bulk: Bulk,
) -> Callable[[Connection, Sequence[Row], Mapping[str, Any]], None]:
    one, many = _values_insert(bulk), _unnest_insert(bulk)

    def send(connection: Connection, rows: Sequence[Row], shared: Mapping[str, Any]) -> None:
        if len(rows) == 1:
            connection.execute(one, {**dict(zip(bulk.columns, rows[0], strict=True)), **shared})
            return
        columns = zip(*rows, strict=True)
        arrays = {name: list(column) for name, column in zip(bulk.columns, columns, strict=True)}
        connection.execute(many, {**arrays, **shared})

    return send


def _values_insert(bulk: Bulk) -> Executable:
    """``INSERT ... VALUES (...)`` of one row (inline: no RETURNING)."""
    names = (*bulk.columns, *bulk.shared)
    values = {name: bindparam(name, type_=_scalar_type(bulk, name)) for name in names}
    return _on_conflict(bulk, postgresql.insert(bulk.table).values(values).inline())


def _unnest_insert(bulk: Bulk) -> Executable:
    """``INSERT ... SELECT *, :shared... FROM unnest(:a, :b, ...)``: one array per
    column, the shared values bound once."""
    table = bulk.table
    arrays = [bindparam(name, type_=_array_type(bulk, name)) for name in bulk.columns]
    batch = func.unnest(*arrays).table_valued(*bulk.columns).render_derived()
    shared = [bindparam(name, type_=table.c[name].type) for name in bulk.shared]
    rows = select_(*(batch.c[name] for name in bulk.columns), *shared)
    insert = postgresql.insert(table).from_select([*bulk.columns, *bulk.shared], rows)
    return _on_conflict(bulk, insert)


def _scalar_type(bulk: Bulk, name: str) -> TypeEngine[Any]:
    return DOCUMENT_JSONB if name in bulk.documents else bulk.table.c[name].type


def _array_type(bulk: Bulk, name: str) -> TypeEngine[Any]:
    if name in bulk.documents:
        return DOCUMENT_ARRAY
    item = bulk.table.c[name].type
    return postgresql.ARRAY(item.impl_instance if isinstance(item, TypeDecorator) else item)


def _on_conflict(
    bulk: Bulk, statement: postgresql.Insert | sqlite.Insert
) -> postgresql.Insert | sqlite.Insert:
    """``statement`` with ON CONFLICT (key) DO UPDATE of every other value but
    ``created_at``, when ``bulk`` has a conflict key."""
    if not bulk.conflict:
        return statement
    kept = {*bulk.conflict, "created_at"}
    replaced = [name for name in (*bulk.columns, *bulk.shared) if name not in kept]
    return statement.on_conflict_do_update(
        index_elements=list(bulk.conflict),
        set_={name: statement.excluded[name] for name in replaced},
    )
