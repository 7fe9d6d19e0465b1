"""When transactions take locks, and how read-only work is kept from writing.

SQLite. A transaction that writes takes the database's one write lock; if it
first read and then tried to take the lock, it could fail at once with
"database is locked" instead of waiting. So pfd-db starts no SQLite transaction
for reads: they run in SQLite's autocommit mode, holding no lock between
statements and no snapshot while a session sits idle. Right before the first
statement that writes (or opens a savepoint, or is a ``SELECT ... FOR UPDATE``)
on a connection with no open transaction, it sends ``BEGIN IMMEDIATE``: writers
queue on the lock through the busy timeout and fail only when it runs out. A
read whose result a later write depends on must state that intent before it
reads, with ``SELECT ... FOR UPDATE`` or :func:`begin_write`.

PostgreSQL keeps its own transactions (READ COMMITTED); nothing here changes them.

Read-only work (:func:`pfd_db.engine.read_only`, ``get_db_session(read_only=True)``)
is refused every write with :class:`~pfd_db.errors.ReadOnlySession` before it is
sent, and the database refuses what slips past: SQLite's ``query_only`` pragma,
PostgreSQL's ``READ ONLY`` transactions.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.pool import StaticPool

from pfd_db.errors import ReadOnlySession

READ_ONLY = "pfd_read_only"
"""Execution option marking read-only work (set by :func:`pfd_db.engine.read_only`)."""

READS = frozenset({"SELECT", "VALUES", "TABLE", "EXPLAIN", "SHOW", "FETCH"})
"""Statements that only read (``WITH`` and ``PRAGMA`` are told apart by their text)."""

SESSION_CONTROL = frozenset(
    {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "RELEASE", "SAVEPOINT"}
    | {"SET", "RESET", "DISCARD", "DEALLOCATE", "CLOSE", "LISTEN", "UNLISTEN"}
)
"""Statements that steer the transaction or the connection and change no data."""

_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/|\()*([A-Za-z]+)", re.DOTALL)
_CHANGES_DATA = re.compile(r"\b(?:INSERT|UPDATE|DELETE|REPLACE|MERGE)\b", re.IGNORECASE)
_PG_READ_ONLY_TRANSACTION = "25006"  # SQLSTATE read_only_sql_transaction
_SQLITE_READONLY = 8  # SQLITE_READONLY, and its extended codes in the low byte
_QUERY_ONLY = "pfd_query_only"  # connection-record info: the query_only pragma's state


@lru_cache(maxsize=512)  # statements repeat (SQLAlchemy caches their text): classify once
def first_word(statement: str) -> str:
    """The statement's first keyword, upper-cased ("" if it has none)."""
    found = _FIRST_WORD.match(statement)
    return found.group(1).upper() if found else ""


@lru_cache(maxsize=512)
def writes(statement: str) -> bool:
    """Whether ``statement`` may change data or the schema (anything but a read or
    a session-control statement; a ``WITH`` counts when it holds a data change, a
    ``PRAGMA`` when it assigns)."""
    word = first_word(statement)
    if word in READS:
        return False
    if word == "WITH":
        return _CHANGES_DATA.search(statement) is not None
    if word == "PRAGMA":
        return "=" in statement
    return word not in SESSION_CONTROL


def states_write_intent(statement: str, context: Any) -> bool:
    """Whether running ``statement`` should first take the write lock: it writes,
    opens a savepoint (whose release would otherwise commit on SQLite), or is a
    ``SELECT ... FOR UPDATE`` (whose clause SQLite drops)."""
    return writes(statement) or first_word(statement) == "SAVEPOINT" or _for_update(context)


def _for_update(context: Any) -> bool:
    compiled = getattr(context, "compiled", None)
    statement = getattr(compiled, "statement", None)
    return getattr(statement, "_for_update_arg", None) is not None


def is_read_only(bind: Connection | Engine) -> bool:
    """Whether ``bind`` (a connection, or an engine view of :func:`pfd_db.engine.read_only`)
    runs read-only work."""
    return bool(bind.get_execution_options().get(READ_ONLY, False))


def begin_write(connection: Connection) -> None:
    """State the intent to write before reading what the write depends on.

    On SQLite: begin the connection's transaction with ``BEGIN IMMEDIATE`` now,
    unless it has one open, so that what follows reads the latest data under the
    write lock (waiting for it up to the busy timeout). Elsewhere, and for
    read-only work (whose writes are refused anyway), it does nothing: on
    PostgreSQL use ``SELECT ... FOR UPDATE`` or a conditional UPDATE.
    """
    if connection.dialect.name != "sqlite" or is_read_only(connection):
        return
    if not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def refuse_writes_when_read_only(engine: Engine) -> None:
    """Refuse, on ``engine``'s read-only connections, every statement that writes,
    and turn the database's own refusal into :class:`ReadOnlySession`."""

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse(
        conn: Connection, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if is_read_only(conn) and (writes(statement) or _for_update(context)):
            raise ReadOnlySession(f"{first_word(statement)} refused")

    @event.listens_for(engine, "handle_error")
    def _translate(ctx: ExceptionContext) -> ReadOnlySession | None:
        conn = ctx.connection
        if conn is None or not is_read_only(conn) or not _refused_as_read_only(ctx):
            return None
        return ReadOnlySession("the database refused a write")


def _refused_as_read_only(ctx: ExceptionContext) -> bool:
    error = ctx.original_exception
    if ctx.dialect.name == "sqlite":
        return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_READONLY
    return getattr(error, "sqlstate", None) == _PG_READ_ONLY_TRANSACTION


def take_sqlite_write_lock_on_first_write(engine: Engine) -> None:
    """On a SQLite ``engine``: no ``BEGIN`` for reads, ``BEGIN IMMEDIATE`` right
    before the first statement that states the intent to write, and read-only
    connections held to ``PRAGMA query_only`` (but for an in-memory database's
    one shared connection). Needs the driver's own transaction handling off
    (``isolation_level = None``)."""
    shared = isinstance(engine.pool, StaticPool)  # one connection for every session

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Nothing is sent for the transaction itself; only the read-only guard is set
        # (not on a connection all sessions share, where it would reach them all).
        if shared:
            return
        record = conn.connection
        read_only = is_read_only(conn)
        if record.info.get(_QUERY_ONLY, False) != read_only:
            driver = record.driver_connection
            driver.execute(f"PRAGMA query_only = {int(read_only)}")  # type: ignore[union-attr]
            record.info[_QUERY_ONLY] = read_only

    @event.listens_for(engine, "before_cursor_execute")
    def _lock_before_writing(
        conn: Connection, cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if (
            not cursor.connection.in_transaction
            and states_write_intent(statement, context)
            and not is_read_only(conn)
            and conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT"
        ):
            cursor.connection.execute("BEGIN IMMEDIATE")
