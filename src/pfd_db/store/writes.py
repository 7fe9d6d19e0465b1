"""Writes that stay correct when another writer races for the same row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict, InvalidInput, NotFound
from pfd_db.models import Base
from pfd_db.store.status import row_id
from pfd_db.transactions import begin_write

M = TypeVar("M", bound=Base)
ID_MAX = 2**31 - 1  # ids are integer columns: PostgreSQL's integer range


def take_write_lock(session: Session) -> None:
    """State the intent to write before the read that the write depends on.

    On SQLite the session's transaction begins now with ``BEGIN IMMEDIATE``
    (unless it is already writing), so that the read sees the latest data and no
    other writer can change it before this one commits; a session that only
    reads takes no lock at all. On PostgreSQL it does nothing: lock the rows
    read (``SELECT ... FOR UPDATE``, which also takes SQLite's write lock) or
    make the write conditional. Nothing in a read-only session.
    """
    begin_write(session.connection())


def insert_for(session: Session | str, model: Any) -> postgresql.Insert | sqlite.Insert:
    """``INSERT INTO`` ``model`` (a model or a table) in the session's dialect, or
    the dialect named (for statements prepared once per dialect), which knows
    ``ON CONFLICT``."""
    dialect = session if isinstance(session, str) else session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def insert_ignoring_conflicts(
    session: Session, model: type[Any]
) -> postgresql.Insert | sqlite.Insert:
    """``INSERT INTO`` ``model``'s table ``... ON CONFLICT DO NOTHING``."""
    return insert_for(session, model).on_conflict_do_nothing()


Key = Mapping[Any, Any] | ColumnElement[bool]
"""What makes a row unique: model attribute -> value (all must match), or a condition."""


def add_unique(
    session: Session,
    row: object,
    key: Key,
    *,
    conflict: str,
    other_keys: Iterable[tuple[Key, str]] = (),
) -> None:
    """Add and flush ``row``, whose ``key`` must be free.

    :class:`Conflict` with ``conflict`` if a row with that key exists, found
    before writing or, when a concurrent writer got there first, from the
    unique constraint; the insert runs in a savepoint, so the caller's
    transaction stays usable either way. A row with several unique keys names
    the others in ``other_keys`` as ``(key, conflict message)`` pairs, checked
    in order after ``key``.
    """
    keys = [(key, conflict), *other_keys]
    _refuse_taken(session, keys)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        _refuse_taken(session, keys, cause=exc)
        raise


def set_unique(
    session: Session,
    row: object,
    values: Mapping[str, Any],
    key: Key,
    *,
    conflict: str,
) -> None:
    """Set ``values`` on ``row`` and flush, where ``key`` (a condition that finds
    any *other* row holding the unique values ``row`` takes) must be free: the
    path of :func:`add_unique` for a change. :class:`Conflict` with ``conflict``
    found before writing or from the unique index's refusal; the change runs in a
    savepoint, so the caller's transaction stays usable either way."""
    keys = [(key, conflict)]
    _refuse_taken(session, keys)
    try:
        with session.begin_nested():
            for attribute, value in values.items():
                setattr(row, attribute, value)
    except IntegrityError as exc:
        _refuse_taken(session, keys, cause=exc)
        raise


def _refuse_taken(
    session: Session, keys: list[tuple[Key, str]], cause: BaseException | None = None
) -> None:
    for key, conflict in keys:
        where = key if isinstance(key, ColumnElement) else and_(*(c == v for c, v in key.items()))
        if session.scalar(select(exists().where(where))):
            raise Conflict(conflict) from cause


def load(session: Session, model: type[M], record: M | int, field: str) -> M:
    """``record`` if it is a ``model``, else the ``model`` whose id it is.

    Every store function that takes a record accepts the object or its id this
    way. :class:`InvalidInput` naming ``field`` for anything else (a bool or a
    string too); :class:`NotFound` for an id that no row has.
    """
    if isinstance(record, model):
        return record
    if isinstance(record, bool) or not isinstance(record, int):
        raise InvalidInput(
            f"{field} must be a {model.__name__} or its integer id (got {type(record).__name__})"
        )
    found = session.get(model, record) if 0 < record <= ID_MAX else None
    if found is None:
        raise NotFound(f"no {model.__name__} with id {record} ({field})")
    return found


def unread_id(session: Session, model: type[M], record: M | int, field: str) -> int:
    """The id of ``record`` (a ``model`` or its id) without reading its row: an
    object's identity (flushed first if it has none), or the id given. Checked
    as :func:`load` checks, but an id in range is not looked up: whether its row
    exists is for the statement that uses it to find out."""
    if isinstance(record, model):
        return row_id(session, record)
    if isinstance(record, int) and not isinstance(record, bool) and 0 < record <= ID_MAX:
        return record
    return row_id(session, load(session, model, record, field))  # raises, as load does


def load_one_of(
    session: Session,
    kinds: tuple[type[M], ...],
    record: M | int,
    kind: type[M] | None,
    field: str,
) -> M:
    """:func:`load` for functions that take records of several models: ``record``
    if it is one of ``kinds``, else the row of model ``kind`` whose id it is (an
    id alone does not say which model: ``kind`` is then required, and must be one
    of ``kinds``). :class:`InvalidInput` naming ``field`` or ``kind`` otherwise;
    :class:`NotFound` for an id that no row of ``kind`` has."""
    names = " or ".join(model.__name__ for model in kinds)
    if kind is not None and kind not in kinds:
        raise InvalidInput(f"kind must be {names} (got {_shown_kind(kind)})")
    if isinstance(record, kinds):
        if kind is not None and not isinstance(record, kind):
            raise InvalidInput(f"{field} is a {type(record).__name__}, not a {kind.__name__}")
        return record
    if kind is None:
        raise InvalidInput(
            f"{field} must be a {names} object, or its id with kind= naming which "
            f"(got {type(record).__name__})"
        )
    return load(session, kind, record, field)


def _shown_kind(kind: object) -> str:
    """``kind`` for a message: a class by its name, anything else by its type."""
    return kind.__name__ if isinstance(kind, type) else type(kind).__name__


def one_of_kinds(record: object, kinds: tuple[type[M], ...], field: str) -> M:
    """``record`` if it is one of ``kinds``: for functions that take records of
    several models, where an id alone could not say which it is (and for the
    few that take no session to load one with)."""
    if not isinstance(record, kinds):
        names = " or ".join(kind.__name__ for kind in kinds)
        which = "; an id alone does not say which" if len(kinds) > 1 else ""
        raise InvalidInput(f"{field} must be a {names} object (got {type(record).__name__}){which}")
    return record


def id_of(session: Session, model: type[M], record: M | int | None, field: str) -> int | None:
    """The id of ``record`` (checked as :func:`load` does; an object without one
    yet is flushed first), or None for None."""
    return None if record is None else require_id(session, model, record, field)


def require_id(session: Session, model: type[M], record: M | int, field: str) -> int:
    """:func:`id_of` for a record that must be given: None is refused as :func:`load`
    refuses anything but a ``model`` or its id. The id is read from the record's
    identity: no query, even for an expired object."""
    return row_id(session, load(session, model, record, field))
