"""Writes that must outlast the caller's rollback: a refused login, a lockout, a failed code.

The caller owns its transaction, and a caller that gets an error usually rolls
back (``get_db_session`` does). A record of the refusal that caused the error
must survive that, without committing anything the caller has pending.
:func:`in_own_transaction` writes it in a short transaction of its own on the
same engine.

A second transaction cannot always write beside the caller's: on SQLite only one
transaction holds the write lock, and on PostgreSQL the caller may hold row
locks the record needs (the user's row, say); waiting for the caller, who is
waiting for us, would hang. Through PgBouncer, so would a second transaction
that needs only a server connection, when the callers' open transactions hold
them all. So when the caller's transaction has already written, or is open
through PgBouncer, the work runs inside it instead, and runs once more in a
transaction of its own if the caller's ends without committing it (a rollback,
of a savepoint around it too, or a close: its server connection is free again
then). Either way the record is written exactly once, unless the process dies
between the caller's rollback and the rerun.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from pfd_db.pgbouncer import behind_pgbouncer
from pfd_db.transactions import is_read_only

T = TypeVar("T")
logger = logging.getLogger("pfd_db.store")

_PENDING = "pfd_db.own_transaction.pending"  # session.info key: work to rerun after a rollback
_LISTENING = "pfd_db.own_transaction.listening"  # session.info key: events registered


def in_own_transaction(session: Session, work: Callable[[Session], T]) -> T:
    """Run ``work`` in a short transaction of its own on ``session``'s engine,
    committed at once; what ``work`` returns.

    What ``work`` writes then outlasts a rollback of ``session``, and nothing
    pending in ``session`` is committed with it. ``work`` gets the session to
    use and must not keep objects of ``session`` (it may run later, after
    ``session`` rolled back): pass it ids and values.

    If ``session``'s transaction has already written (it holds SQLite's write
    lock; on PostgreSQL, it has a transaction id, so it may hold row locks),
    ``work`` runs in ``session`` instead, and again in its own transaction if
    ``session``'s transaction does not commit what it wrote. ``work`` must
    therefore decide from what the database holds when it runs.
    """
    if _has_written(session) or _would_wait_for_pgbouncer(session):
        result = work(session)
        _rerun_unless_committed(session, work)
        return result
    return _run_alone(_engine_of(session), work)


def _run_alone(engine: Engine, work: Callable[[Session], T]) -> T:
    with Session(bind=engine, autoflush=False, expire_on_commit=False) as own:
        result = work(own)
        own.commit()
    return result


def _engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind


def _would_wait_for_pgbouncer(session: Session) -> bool:
    """Whether a transaction of its own would need a second server connection from
    PgBouncer while the caller's open transaction holds one: with every server
    connection so held, each would wait for the others until a timeout."""
    if not session.in_transaction():
        return False
    connection = session.connection()
    return behind_pgbouncer(connection) and not is_read_only(connection)


def _has_written(session: Session) -> bool:
    """Whether ``session``'s open transaction has written (so it may hold locks)."""
    if not session.in_transaction():
        return False
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        # pfd-db begins a SQLite transaction only to write (pfd_db.transactions)
        return bool(connection.connection.driver_connection.in_transaction)  # type: ignore[union-attr]
    if connection.dialect.name == "postgresql":
        return connection.scalar(select(func.txid_current_if_assigned())) is not None
    return True  # another database: assume the worst, never wait on ourselves


# --- rerunning after the caller's rollback ---------------------------------------


@dataclass
class _Pending:
    """Work done inside a caller's transaction, to rerun if that is not committed."""

    work: Callable[[Session], Any]
    engine: Engine
    root: SessionTransaction
    within: tuple[SessionTransaction, ...]  # innermost to root: a rollback of any undoes it
    undone: bool = False
    committed: bool = False


def _rerun_unless_committed(session: Session, work: Callable[[Session], Any]) -> None:
    root = session.get_transaction()
    assert root is not None  # _has_written saw one
    within: list[SessionTransaction] = []
    transaction: SessionTransaction | None = session.get_nested_transaction() or root
    while transaction is not None:
        within.append(transaction)
        transaction = transaction.parent
    _listen(session)
    session.info.setdefault(_PENDING, []).append(
        _Pending(work, _engine_of(session), root, tuple(within))
    )


def _listen(session: Session) -> None:
    if session.info.get(_LISTENING):
        return
    session.info[_LISTENING] = True
    event.listen(session, "after_soft_rollback", _note_rollback)
    event.listen(session, "after_commit", _note_commit)
    event.listen(session, "after_transaction_end", _rerun_if_undone)


def _pending(session: Session) -> list[_Pending]:
    pending: list[_Pending] = session.info.get(_PENDING, [])
    return pending


def _note_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    for entry in _pending(session):
        if previous_transaction in entry.within:
            entry.undone = True


def _note_commit(session: Session) -> None:
    # Fired for savepoints too; only the root's commit makes the work durable.
    if session.get_nested_transaction() is not None:
        return
    for entry in _pending(session):
        if entry.root is session.get_transaction():
            entry.committed = True


def _rerun_if_undone(session: Session, transaction: SessionTransaction) -> None:
    pending = _pending(session)
    ended = [entry for entry in pending if entry.root is transaction]
    if not ended:
        return
    session.info[_PENDING] = [entry for entry in pending if entry.root is not transaction]
    for entry in ended:
        if entry.undone or not entry.committed:
            _rerun(entry)


def _rerun(entry: _Pending) -> None:
    try:
        _run_alone(entry.engine, entry.work)
    except Exception as exc:  # a rollback must not fail for this; say what was lost
        logger.error(
            "a record that had to outlast a rollback could not be written: %s",
            type(exc).__name__,
        )
