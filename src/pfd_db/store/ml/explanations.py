"""Explanations (SHAP, LIME, Grad-CAM, ...) cached per experiment, signal and method.

At most one is stored per (experiment, signal, method): the unique constraint
``uq_explanations_experiment_id_signal_id_method`` holds it, and a cache miss
computes outside any transaction, then stores with ``INSERT ... ON CONFLICT DO
NOTHING`` and reads back whichever explanation was stored first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row, Select, and_, exists, literal, select
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Experiment, Explanation
from pfd_db.store.validation import optional_text, require_object, require_text
from pfd_db.store.writes import insert_ignoring_conflicts, unread_id


@dataclass(frozen=True)
class _Key:
    experiment_id: int
    signal_id: str
    method: str

    def matches(self) -> Any:
        return and_(
            Explanation.experiment_id == self.experiment_id,
            Explanation.signal_id == self.signal_id,
            Explanation.method == self.method,
        )


def find_explanation(
    session: Session, experiment: Experiment | int, signal_id: str, method: str
) -> Explanation | None:
    """The cached explanation of ``signal_id`` by ``method`` for ``experiment``
    (the object or its id), if any; :class:`NotFound` if the experiment does not exist."""
    key = _key(session, experiment, signal_id, method)
    return _cached(session.execute(_explanation_of_experiment(key)).one_or_none(), key)


def get_or_compute(
    session: Session,
    experiment: Experiment | int,
    signal_id: str,
    method: str,
    compute: Callable[[], Mapping[str, Any]],
    file_path: str | None = None,
) -> tuple[Explanation, bool]:
    """The cached explanation, or a new one from ``compute()``; the flag says
    whether this call stored it.

    ``compute`` runs only on a cache miss, with no lock held and, when the
    session has no transaction open at the call (a fresh session, or one just
    committed), none open on its behalf: the cache is looked up on a short
    connection of its own, and the result is stored afterwards, in the caller's
    transaction. Workers missing at the same moment may each compute, but one
    explanation is stored and every one of them gets it (the flag is True for
    the worker whose result it is). :class:`NotFound` if the experiment does
    not exist; if ``compute`` raises, its error propagates and nothing is
    written.
    """
    key = _key(session, experiment, signal_id, method)
    file_path = optional_text(file_path, "file_path", 500)
    if not callable(compute):
        raise InvalidInput(f"compute must be a function (got {type(compute).__name__})")
    cached = _look_up(session, key)
    if cached is not None:
        return cached, False
    data = require_object(compute(), "explanation data")
    stored = _store(session, key, data, file_path)
    if stored is not None:
        return stored, True
    winner = session.scalars(select(Explanation).where(key.matches())).one_or_none()
    if winner is None:
        raise NotFound(f"experiment #{key.experiment_id} no longer exists")
    return winner, False


def _key(session: Session, experiment: Experiment | int, signal_id: object, method: object) -> _Key:
    return _Key(
        experiment_id=unread_id(session, Experiment, experiment, "experiment"),
        signal_id=require_text(signal_id, "signal_id", 100),
        method=require_text(method, "method", 50),
    )


def _look_up(session: Session, key: _Key) -> Explanation | None:
    """The cached explanation, or None; :class:`NotFound` if the experiment does
    not exist. Read through the session if it has a transaction open (which may
    hold the explanation, unflushed or uncommitted); otherwise on a short
    session of the same engine, so that none is left open for ``compute``."""
    query = _explanation_of_experiment(key)
    bind = session.get_bind()
    if session.in_transaction() or not isinstance(bind, Engine):
        return _cached(session.execute(query).one_or_none(), key)
    with Session(bind) as own:
        cached = _cached(own.execute(query).one_or_none(), key)
    if cached is None:
        return None
    return session.merge(cached, load=False)  # into the caller's session, without a query


def _cached(found: Row[int, Explanation] | None, key: _Key) -> Explanation | None:
    if found is None:
        raise NotFound(f"no Experiment with id {key.experiment_id} (experiment)")
    explanation: Explanation | None = found[1]
    return explanation


def _explanation_of_experiment(key: _Key) -> Select[int, Explanation]:
    """The experiment's id with its explanation for ``key`` (None if there is
    none); no row if the experiment does not exist."""
    return (
        select(Experiment.id, Explanation)
        .outerjoin(Explanation, and_(Explanation.experiment_id == Experiment.id, key.matches()))
        .where(Experiment.id == key.experiment_id)
    )


def _store(
    session: Session, key: _Key, data: dict[str, Any], file_path: str | None
) -> Explanation | None:
    """Insert the explanation unless one with ``key`` is stored (or the experiment
    is gone); the new row, or None."""
    table = Explanation.__table__
    values = {
        "experiment_id": key.experiment_id,
        "signal_id": key.signal_id,
        "method": key.method,
        "explanation_data": data,
        "file_path": file_path,
    }
    row = select(*(literal(v, table.c[k].type) for k, v in values.items())).where(
        exists().where(Experiment.id == key.experiment_id)
    )
    insert = insert_ignoring_conflicts(session, Explanation).from_select(list(values), row)
    return session.scalars(insert.returning(Explanation)).one_or_none()
