"""Writes that stay correct when another writer races for the same row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def add_unless_taken(
    session: Session, row: object, *, taken: Callable[[], bool], conflict: str
) -> None:
    """Add and flush ``row`` in a savepoint. If a unique constraint refuses it and
    ``taken()`` confirms a clash (a concurrent writer got there first), raise
    :class:`Conflict` with ``conflict``; the caller's transaction stays usable."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        if taken():
            raise Conflict(conflict) from exc
        raise
