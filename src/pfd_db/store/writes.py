"""Writes that stay correct when another writer races for the same row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict


def insert_for(session: Session, model: type[Any]) -> postgresql.Insert | sqlite.Insert:
    """``INSERT INTO`` ``model``'s table in the session's dialect, which knows ``ON CONFLICT``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def insert_ignoring_conflicts(
    session: Session, model: type[Any]
) -> postgresql.Insert | sqlite.Insert:
    """``INSERT INTO`` ``model``'s table ``... ON CONFLICT DO NOTHING``."""
    return insert_for(session, model).on_conflict_do_nothing()


def add_unique(session: Session, row: object, key: Mapping[Any, Any], *, conflict: str) -> None:
    """Add and flush ``row``, whose ``key`` (model attribute -> value) must be free.

    :class:`Conflict` with ``conflict`` if a row with that key exists, found
    before writing or, when a concurrent writer got there first, from the
    unique constraint; the insert runs in a savepoint, so the caller's
    transaction stays usable either way.
    """
    if _taken(session, key):
        raise Conflict(conflict)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        if _taken(session, key):
            raise Conflict(conflict) from exc
        raise


def _taken(session: Session, key: Mapping[Any, Any]) -> bool:
    return bool(session.scalar(select(exists().where(*(c == v for c, v in key.items())))))


def id_of(session: Session, row: Any) -> int | None:
    """The id of ``row`` (a model instance, flushed first if it has none yet),
    or ``row`` itself when it is already an id or None."""
    if row is None or isinstance(row, int):
        return row
    if row.id is None:
        session.flush()
    return int(row.id)
