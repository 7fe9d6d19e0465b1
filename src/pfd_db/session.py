"""Sessions: the factory, a thread-scoped registry and two context helpers.

``SessionLocal`` makes sessions with ``autoflush=False`` (nothing is written
before you flush or commit) and ``expire_on_commit=False``: objects stay
readable after ``commit()`` without another round-trip, so a web callback can
commit and then render what it wrote. The flip side: after a commit, attribute
values are what this session last saw; call ``session.refresh(obj)`` when
another writer may have changed the row since.

The engine is made from the settings on first use; ``configure()`` points
everything at another database, and the instance key look-up with it (the
``<database>.key`` file beside a SQLite database, see :mod:`pfd_db.crypto`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, UOWTransaction, scoped_session, sessionmaker

from pfd_db import crypto, replicas
from pfd_db.engine import make_engine
from pfd_db.engine import read_only as read_only_engine
from pfd_db.errors import ReadOnlySession
from pfd_db.transactions import is_read_only

_lock = threading.RLock()
_engine: Engine | None = None
_owned = False  # whether _engine was made here (and so is ours to dispose)


class _LazySessionMaker(sessionmaker[Session]):
    """A ``sessionmaker`` that binds itself to the settings' engine on first call."""

    def __call__(self, **local_kw: Any) -> Session:
        if self.kw.get("bind") is None and "bind" not in local_kw:
            get_engine()
        return super().__call__(**local_kw)


SessionLocal = _LazySessionMaker(autoflush=False, expire_on_commit=False)
SessionScoped = scoped_session(SessionLocal)


def configure(url: str | None = None, engine: Engine | None = None) -> Engine:
    """Point ``SessionLocal`` and ``SessionScoped`` at ``engine``, or at a new
    engine for ``url`` (default: the settings' URL). Returns the engine.

    The instance key is then looked for beside that database (when no
    ``PFD_DB_SECRET_KEY`` or ``PFD_DB_SECRET_KEY_FILE`` is set)."""
    global _engine, _owned
    with _lock:
        reset()
        _engine, _owned = (engine, False) if engine is not None else (make_engine(url), True)
        SessionLocal.configure(bind=_engine)
        if url is not None or engine is not None:
            crypto.follow_database(_engine.url)
        return _engine


def reset() -> None:
    """Forget the configured engine (disposing it if pfd-db made it); the next
    session is bound from the settings again."""
    global _engine, _owned
    with _lock:
        SessionScoped.remove()
        if _engine is not None and _owned:
            _engine.dispose()
        _engine, _owned = None, False
        SessionLocal.configure(bind=None)
        crypto.follow_database(None)
        replicas.forget()


def get_engine() -> Engine:
    """The engine sessions use, made from the settings on first call."""
    with _lock:
        return _engine if _engine is not None else configure()


@contextmanager
def get_db_session(*, read_only: bool = False) -> Iterator[Session]:
    """A session that commits when the block succeeds, rolls back when it raises,
    and is closed either way::

        with get_db_session() as session:
            session.add(thing)

    A session that only reads takes no lock on either dialect, however long it
    stays open; on SQLite its first write takes the write lock (see
    :mod:`pfd_db.transactions`). ``read_only=True`` is for work that must not
    write (dashboard views): any write raises :class:`ReadOnlySession` and
    nothing is written or committed. With ``PFD_DB_REPLICA_URLS`` set, such a
    session reads from a usable replica, else from the primary
    (:mod:`pfd_db.replicas`).
    """
    with ExitStack() as stack:
        if read_only:
            primary = get_engine()
            replica = stack.enter_context(replicas.connection_for_reading(primary))
            session = SessionLocal(
                bind=replica if replica is not None else read_only_engine(primary)
            )
        else:
            session = SessionLocal()
        try:
            yield session
            if not read_only:
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


@event.listens_for(Session, "before_flush")
def _refuse_flush_when_read_only(session: Session, _context: UOWTransaction, _objs: Any) -> None:
    """A read-only session's flush is refused before it sends anything."""
    bind = session.bind
    if bind is None or not is_read_only(bind):
        return
    changed = [obj for obj in session.dirty if session.is_modified(obj)]
    if session.new or changed or session.deleted:
        raise ReadOnlySession(
            f"flush of {len(session.new)} new, {len(changed)} changed and "
            f"{len(session.deleted)} deleted objects refused"
        )


def get_db() -> Iterator[Session]:
    """A session for dependency injection (FastAPI ``Depends(get_db)`` and the like):
    committed after the request succeeds, rolled back if it fails."""
    with get_db_session() as session:
        yield session
