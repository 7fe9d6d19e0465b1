"""One status machine for experiments, HPO and NAS campaigns, and data jobs.

A move is one conditional statement, ``UPDATE ... SET status = :new WHERE id =
:id AND status = :expected``, where ``:expected`` is the status the caller's
object shows. Of several sessions moving the same row from the same status only
the first one moves it: the others update no row, re-read it and get
:class:`InvalidTransition` naming the status it has now. No lock is taken
beforehand; the statement is the check. The caller's object shows the stored
row afterwards (``RETURNING`` it, or re-reading it on a refusal).

The same guarded statement serves every other conditional change: of one loaded
row (:func:`update_if`) or of the rows a condition finds (:func:`update_where`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Enum, inspect, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from pfd_db.errors import InvalidTransition, NotFound
from pfd_db.models import Base
from pfd_db.store.validation import check_transition

E = TypeVar("E", bound=StrEnum)
R = TypeVar("R", bound=Base)

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]*")

Machine = Mapping[E, frozenset[E]]
"""Each status and the statuses it may move to; a status missing here is final."""


def move_status(session: Session, row: R, new: E, allowed: Machine[E], **values: Any) -> R:
    """Move ``row`` to status ``new`` and set ``values`` with it, in one conditional
    UPDATE; ``row`` is returned showing what was stored.

    The move starts from the status ``row`` shows; if it has none loaded
    (expired after a commit), from whatever status is stored, provided
    ``allowed`` lets it go to ``new``. :class:`InvalidTransition` if ``allowed``
    forbids the move, or if another session moved the row first (naming the
    status it has now); :class:`NotFound` if the row is gone. Either way
    nothing is written.
    """
    column = type(row).__table__.c.status
    held = _held_status(row, type(new))
    if held is not None:
        check_transition(describe(row), held, new, allowed)
        condition = column == _stored_value(column, held)
    else:
        sources = [status for status, targets in allowed.items() if new in targets]
        condition = column.in_([_stored_value(column, s) for s in sources])
    if update_if(session, row, condition, status=_stored_value(column, new), **values):
        return row
    current = type(new)(inspect(reread(session, row)).dict["status"])
    if held is not None and current != held:
        raise InvalidTransition(
            f"{describe(row)} is {current} now, not {held} (another session changed it); "
            f"cannot go to {new}"
        )
    check_transition(describe(row), current, new, allowed)
    raise InvalidTransition(f"{describe(row)} is {current} now; cannot go to {new}")


def update_if(session: Session, row: Base, *conditions: ColumnElement[bool], **values: Any) -> bool:
    """Set ``values`` on ``row``'s stored row if it still meets the conditions;
    whether it did. One ``UPDATE ... WHERE id = :id AND <conditions> RETURNING``:
    a row it updates is loaded back into ``row`` (``updated_at`` included); a
    row it does not is left as it was, in the database and in ``row``."""
    model = type(row)
    session.flush()  # the row as the session holds it, before the database answers for it
    statement = (
        update(model)
        .where(model.id == row_id(session, row), *conditions)
        .values(values)
        .returning(model)
    )
    updated = session.execute(
        statement, execution_options={"synchronize_session": False, "populate_existing": True}
    )
    return updated.scalars().one_or_none() is not None


def update_where(
    session: Session, model: type[Base], where: Sequence[ColumnElement[bool]], **values: Any
) -> int:
    """Set ``values`` on every stored ``model`` row that meets every condition in
    ``where``; how many it did. One ``UPDATE ... WHERE <conditions> RETURNING id``, the change of
    many rows (or of one not loaded) as :func:`update_if` is of one loaded row: a
    row another session changed first so that it no longer meets the conditions
    is neither changed nor counted. This session's objects of the changed rows
    are expired, so that they show the stored row when next read."""
    conditions = list(where)
    if not conditions:
        raise ValueError("update_where needs at least one condition")
    session.flush()  # the rows as the session holds them, before the database answers for them
    changed = session.scalars(
        update(model).where(*conditions).values(values).returning(model.id),
        execution_options={"synchronize_session": False},
    ).all()
    for key in changed:
        held = session.identity_map.get(identity_key(model, key))
        if held is not None:
            session.expire(held)
    return len(changed)


def reread(session: Session, row: R, *, lock: bool = False) -> R:
    """``row`` loaded again as stored now; :class:`NotFound` if it is gone. With
    ``lock``, its row is locked until the transaction ends (``SELECT ... FOR
    UPDATE``, which on SQLite takes the database's write lock): for reads that a
    later write depends on."""
    found = session.get(
        type(row), row_id(session, row), populate_existing=True, with_for_update=lock
    )
    if found is None:
        raise NotFound(f"{describe(row)} no longer exists")
    return found


def row_id(session: Session, row: Base) -> int:
    """``row``'s id without loading it again (an object that has none yet is flushed)."""
    identity = inspect(row).identity
    if identity is None:
        session.flush()
        identity = inspect(row).identity
    assert identity is not None
    return int(identity[0])


def describe(row: Base) -> str:
    """``experiment 'resnet-1'``, ``HPO campaign 'sweep'``: the kind of ``row`` and
    its name as this session last saw it (no query), for messages."""
    words = _WORD.findall(type(row).__name__)
    kind = " ".join(w if w.isupper() else w.lower() for w in words)
    state = inspect(row)
    name = state.dict.get("name")
    if name is None and state.identity is not None:
        return f"{kind} #{state.identity[0]}"
    return f"{kind} {name!r}"


def _held_status(row: Base, kind: type[E]) -> E | None:
    """The status ``row`` shows, or None if it has none loaded (expired)."""
    state = inspect(row)
    if "status" in state.unloaded:
        return None
    return kind(state.dict["status"])


def _stored_value(column: ColumnElement[Any], status: StrEnum) -> StrEnum | str:
    """``status`` as ``column`` takes it: the member for an Enum column, its text
    for a plain string column."""
    return status if isinstance(column.type, Enum) else status.value
