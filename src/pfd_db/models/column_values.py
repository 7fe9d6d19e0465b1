"""The last check before every ORM flush: each value given to a model's column
must fit that column, by the rules of :mod:`pfd_db.values`.

Store functions check their arguments first, with messages in their own terms;
this check catches whatever reaches a model some other way (an attribute set
by the caller, a path a store function forgot). It runs in the session's
``before_flush`` event, so it raises :class:`~pfd_db.errors.InvalidInput`
naming ``table.column`` before any statement of the flush is sent: nothing is
written and the transaction stays usable (the offending object stays in the
session until it is corrected, expunged or rolled back).

Each column is checked against its PostgreSQL type, the stricter of the two:
strings against their length (and NUL, lone surrogates), integers against
``INTEGER``/``BIGINT`` range, floats for finiteness, JSON columns as whole
documents, string arrays item by item, enums against their values, booleans
and timestamps by type. SQL expressions are not checked. None set on a NOT
NULL column is refused too: on a changed row always, on a new row when the
column has no default and no relationship set on the object fills it in at
the flush.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any

from sqlalchemy import Column, Table, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstanceState, Mapper, Session, UOWTransaction
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.sql import ClauseElement, sqltypes
from sqlalchemy.types import TypeDecorator, TypeEngine

from pfd_db.errors import InvalidInput
from pfd_db.models.base import Base
from pfd_db.types import UTCDateTime, as_utc
from pfd_db.values import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    check_document,
    check_flag,
    check_real,
    check_text,
    check_whole,
    shown,
)

Check = Callable[[object, str], object]
_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]


def check_pending_values(session: Session) -> None:
    """Check every column value that ``session``'s next flush would write:
    all set columns of new objects, the changed columns of dirty ones."""
    for obj in session.new:
        state: InstanceState[Any] = instance_state(obj)
        values = state.dict
        for key, field, check in _checks_of(state.mapper):
            value = values.get(key)
            if value is not None and not isinstance(value, ClauseElement):
                check(value, field)
        _refuse_none_where_required(state, values.keys(), new=True)
    for obj in session.dirty:
        state = instance_state(obj)
        changed = state.committed_state  # the attributes set since the object was loaded
        set_to_none = set()
        for key, field, check in _checks_of(state.mapper):
            if key not in changed:
                continue
            for value in state.attrs[key].history.added:
                _check(value, field, check)
                if value is None:
                    set_to_none.add(key)
        _refuse_none_where_required(state, set_to_none, new=False)


def _refuse_none_where_required(
    state: InstanceState[Any], keys: Collection[str], *, new: bool
) -> None:
    """InvalidInput if one of ``keys`` is a NOT NULL column that holds None and
    will be written so: in a new row, a column without a default that no
    relationship set on the object fills in at the flush; in a changed row, any."""
    values = state.dict
    for key, field, relationships, has_default in _required_of(state.mapper):
        if (
            key in keys
            and values.get(key) is None
            and not (new and has_default)
            and all(values.get(name) is None for name in relationships)
        ):
            raise InvalidInput(f"{field} is required (got None)")


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: UOWTransaction, _objects: Iterable[Any]) -> None:
    check_pending_values(session)


def check_row(table: Table, row: Mapping[str, Any]) -> None:
    """Raise InvalidInput naming ``table.column`` for the first value of ``row``
    (column name -> value, as given or as read back) that does not fit its column."""
    for name, field, check in column_checks(table):
        if name in row:
            _check(row[name], field, check)


def _check(value: object, field: str, check: Check) -> None:
    if value is not None and not isinstance(value, ClauseElement):
        check(value, field)


@cache
def column_checks(table: Table) -> tuple[tuple[str, str, Check], ...]:
    """(column name, ``table.column``, check) for each checked column of ``table``."""
    checks = []
    for column in table.columns:
        check = None if column.computed is not None else _check_for(column.type)
        if check is not None:
            checks.append((column.name, f"{table.name}.{column.name}", check))
    return tuple(checks)


@cache
def _checks_of(mapper: Mapper[Any]) -> tuple[tuple[str, str, Check], ...]:
    """(attribute, ``table.column``, check) for each checked column of ``mapper``."""
    if mapper.registry is not Base.registry or not isinstance(mapper.local_table, Table):
        return ()
    by_column = {name: (field, check) for name, field, check in column_checks(mapper.local_table)}
    checks = []
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if isinstance(column, Column) and column.name in by_column:
            checks.append((prop.key, *by_column[column.name]))
    return tuple(checks)


@cache
def _required_of(mapper: Mapper[Any]) -> tuple[tuple[str, str, tuple[str, ...], bool], ...]:
    """(attribute, ``table.column``, relationships that set it, whether it has a
    default) for each NOT NULL column of ``mapper`` that is no primary key."""
    if mapper.registry is not Base.registry:
        return ()
    required = []
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if (
            isinstance(column, Column)
            and isinstance(column.table, Table)
            and not column.nullable
            and not column.primary_key
            and column.computed is None
        ):
            setters = tuple(rel.key for rel in mapper.relationships if column in rel.local_columns)
            has_default = column.default is not None or column.server_default is not None
            field = f"{column.table.name}.{column.name}"
            required.append((prop.key, field, setters, has_default))
    return tuple(required)


def _check_for(column_type: TypeEngine[Any]) -> Check | None:
    """The check of a column of this type, judged by its PostgreSQL form."""
    if isinstance(column_type, UTCDateTime):
        return _check_moment
    sql_type = column_type.dialect_impl(_POSTGRESQL)
    if isinstance(sql_type, TypeDecorator):  # judged by the type it stores as
        sql_type = sql_type.impl_instance
    if isinstance(sql_type, sqltypes.Enum):
        return _enum_check(sql_type)
    if isinstance(sql_type, sqltypes.String):
        return lambda value, field: check_text(value, field, sql_type.length)
    if isinstance(sql_type, sqltypes.BigInteger):
        return lambda value, field: check_whole(value, field, INT64_MIN, INT64_MAX)
    if isinstance(sql_type, sqltypes.Integer):
        return lambda value, field: check_whole(value, field, INT32_MIN, INT32_MAX)
    if isinstance(sql_type, sqltypes.Float):
        return check_real
    if isinstance(sql_type, sqltypes.Boolean):
        return check_flag
    if isinstance(sql_type, sqltypes.JSON):
        return check_document
    if isinstance(sql_type, sqltypes.ARRAY):
        return _array_check(_check_for(sql_type.item_type))
    return None


def _enum_check(sql_type: sqltypes.Enum) -> Check:
    allowed = frozenset(sql_type.enums)
    members = sql_type.enum_class

    def check(value: object, field: str) -> object:
        if isinstance(value, Enum) and members is not None and isinstance(value, members):
            return value
        if isinstance(value, str) and value in allowed:
            return value
        raise InvalidInput(
            f"{field} must be one of {', '.join(sorted(allowed))} (got {shown(value)})"
        )

    return check


def _array_check(item_check: Check | None) -> Check:
    def check(value: object, field: str) -> object:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise InvalidInput(f"{field} must be a list (got {type(value).__name__})")
        if item_check is not None:
            for index, item in enumerate(value):
                if item is None:
                    raise InvalidInput(f"{field}[{index}] must not be None")
                item_check(item, f"{field}[{index}]")
        return value

    return check


def _check_moment(value: object, field: str) -> object:
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field} must be a timezone-aware datetime (got {shown(value)})")
    try:
        return as_utc(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc}") from None
