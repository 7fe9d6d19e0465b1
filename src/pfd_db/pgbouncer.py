"""PgBouncer in transaction pooling mode: telling that a connection goes through
it, and what pfd-db does differently then (see ``docs/pgbouncer.md``).

In transaction pooling, PgBouncer lends a client one of its server connections
for one transaction at a time; the client's next transaction may run on another
server connection, which other clients share. Whatever a client leaves on a
server connection beyond its transaction is lost to it, or found by another
client. Three rules follow, applied to every PostgreSQL engine whose connections
go through PgBouncer:

- No server-side prepared statements. After a statement ran
  ``prepare_threshold`` times (5) on one client connection, psycopg prepares it
  as ``_pg3_0``, ``_pg3_1``, ... on the server connection it holds then, and
  later finds it missing (``prepared statement "_pg3_0" does not exist``) or
  finds another client's of that name (``... already exists``). Such engines
  connect with ``prepare_threshold=None``.
- No statement whose effect outlives its transaction (:func:`leaves_session_state`:
  ``SET`` without ``LOCAL``, ``RESET``, ``DISCARD``, ``LISTEN``, ``PREPARE``,
  session advisory locks, temporary tables kept past the commit, cursors
  ``WITH HOLD``, ``set_config(..., false)``): refused with
  :class:`~pfd_db.errors.ThroughPgBouncer` before it is sent. pfd-db sends none;
  the refusal keeps it so.
- No migrations (:func:`refuse_migrations`): they hold locks across statements
  and revisions, and must not be cut by PgBouncer's timeouts. Nor ``pg_dump`` and
  ``pg_restore`` (backup, restore), which set ``search_path`` and more for their
  session (:func:`refuse_through_pgbouncer`). The refusal names the server as
  PgBouncer reaches it: the URL to use instead.

Which engines: those the ``pgbouncer`` setting (``PFD_DB_PGBOUNCER``) says go
through PgBouncer or, when it is unset, those where it is detected. PostgreSQL
tells a new client its backend's process id (in the startup's BackendKeyData,
psycopg's ``info.backend_pid``); PgBouncer, which gives the client no backend
of its own, tells it a random number instead. A connection whose
``pg_backend_pid()`` differs from the id it was told goes through a pooler. The
probe is one query on an engine's first connection, in a transaction rolled
back at once; its answer holds for the engine's later connections.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from pfd_db.errors import ThroughPgBouncer
from pfd_db.target import mask_password, on_server

DETECTED = "pfd_pgbouncer"
"""Connection-record info key: whether the connection is taken to go through
PgBouncer (set on each connection of a PostgreSQL engine)."""

NO_PREPARED_STATEMENTS: dict[str, Any] = {"prepare_threshold": None}
"""psycopg's connect arguments that turn server-side prepared statements off."""

_PROBE = "SELECT pg_backend_pid()"
_WHERE = (
    "SELECT host(inet_server_addr()), inet_server_port(), "
    "current_setting('unix_socket_directories'), current_setting('port'), "
    "current_database(), session_user"
)

_LEADING = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/|\()*", re.DOTALL)
_SESSION_STATEMENTS = {
    "SET (use SET LOCAL)": (
        r"SET\s+(?:SESSION\s+)?(?:ROLE|AUTHORIZATION|CHARACTERISTICS|TIME\s+ZONE|NAMES|SCHEMA"
        r"|XML\s+OPTION)\b|SET\s+(?:SESSION\s+)?[A-Za-z_][\w.]*\s*(?:=|TO\b)"
    ),
    "RESET": r"RESET\s+\w",
    "DISCARD": r"DISCARD\s+\w",
    "LISTEN": r"LISTEN\s+\w",
    "PREPARE": r"PREPARE\s+\w",
    "DEALLOCATE": r"DEALLOCATE\s+\w",
    "LOAD": r"LOAD\s+'",
}
_SESSION_STATEMENT = re.compile(
    "|".join(f"(?P<s{n}>{pattern})" for n, pattern in enumerate(_SESSION_STATEMENTS.values())),
    re.IGNORECASE,
)
_SESSION_LOCK = re.compile(r"\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.IGNORECASE)
_SESSION_CONFIG = re.compile(r"\bset_config\s*\([^;]*?,\s*false\s*\)", re.IGNORECASE)
_TEMPORARY = re.compile(
    r"\bCREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+(?:TABLE|VIEW|SEQUENCE)\b", re.IGNORECASE
)
_DROPPED_AT_COMMIT = re.compile(r"\bON\s+COMMIT\s+DROP\b", re.IGNORECASE)
_HELD_CURSOR = re.compile(r"\bDECLARE\b.*\bWITH\s+HOLD\b", re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=512)  # statements repeat (SQLAlchemy caches their text): classify once
def leaves_session_state(statement: str) -> str | None:
    """What ``statement`` would leave on its server connection after its
    transaction ends (``"SET"``, ``"LISTEN"``, ``"a session advisory lock"``, ...),
    or None when it leaves nothing there."""
    statement_start = _LEADING.match(statement)
    found = _SESSION_STATEMENT.match(statement, statement_start.end() if statement_start else 0)
    if found is not None and found.lastgroup is not None:
        return list(_SESSION_STATEMENTS)[int(found.lastgroup[1:])]
    if _SESSION_LOCK.search(statement):
        return "a session advisory lock (use pg_advisory_xact_lock)"
    if _SESSION_CONFIG.search(statement):
        return "set_config(..., false) (use set_config(..., true))"
    if _TEMPORARY.search(statement) and not _DROPPED_AT_COMMIT.search(statement):
        return "a temporary table (use ON COMMIT DROP)"
    if _HELD_CURSOR.search(statement):
        return "a cursor WITH HOLD"
    return None


def connect_args(setting: bool | None) -> dict[str, Any]:
    """psycopg's connect arguments for the ``pgbouncer`` setting: no prepared
    statements when it is True; nothing when it is False or unset (then
    :func:`follow_pgbouncer` decides per engine)."""
    return dict(NO_PREPARED_STATEMENTS) if setting else {}


def follow_pgbouncer(engine: Engine, setting: bool | None) -> None:
    """On a PostgreSQL ``engine``: take each new connection to go through PgBouncer
    or not (info key :data:`DETECTED`) as ``setting`` says or, when it is None, as
    the probe of the engine's first connection found; through PgBouncer, turn its
    prepared statements off and refuse the statements that would leave session
    state (:func:`leaves_session_state`)."""
    known: list[bool] = [] if setting is None else [setting]
    lock = threading.Lock()

    @event.listens_for(engine, "connect")
    def _follow(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        if not known:
            with lock:
                if not known:
                    known.append(_probe(dbapi_connection))
        record.info[DETECTED] = known[0]
        if known[0]:
            dbapi_connection.prepare_threshold = None

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse_session_state(
        conn: Connection, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        if conn.connection.info.get(DETECTED) and (left := leaves_session_state(statement)):
            raise ThroughPgBouncer(
                f"{left} would outlive its transaction, and PgBouncer (transaction pooling) "
                "would hand it to another client: nothing was sent"
            )


def _probe(dbapi_connection: Any) -> bool:
    """Whether the fresh psycopg connection goes through a pooler: the backend
    process id it was told is not the backend's. Leaves it idle, as it found it."""
    told = dbapi_connection.info.backend_pid
    with dbapi_connection.cursor() as cursor:
        cursor.execute(_PROBE)
        row = cursor.fetchone()
    dbapi_connection.rollback()
    return row is None or row[0] != told


def behind_pgbouncer(bind: Engine | Connection) -> bool:
    """Whether ``bind``'s connections are taken to go through PgBouncer, as the
    setting said or the probe found when they were made (False on SQLite)."""
    if bind.dialect.name != "postgresql":
        return False
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return behind_pgbouncer(connection)
    return bool(bind.connection.info.get(DETECTED, False))


def through_pgbouncer(connection: Connection) -> bool:
    """Whether ``connection`` goes through PgBouncer (or another pooler), asked of
    the server now, whatever the setting says: in the connection's transaction,
    or in one rolled back at once. False on SQLite."""
    if connection.dialect.name != "postgresql":
        return False
    began = not connection.in_transaction()
    try:
        told = connection.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        return bool(connection.exec_driver_sql(_PROBE).scalar_one() != told)
    finally:
        if began:
            connection.rollback()


def refuse_migrations(bind: Engine | Connection) -> None:
    """Raise :class:`ThroughPgBouncer` when ``bind`` goes through PgBouncer (asked
    of the server, see :func:`through_pgbouncer`), naming the URL to migrate with
    instead. Writes nothing either way."""
    refuse_through_pgbouncer(bind, "migrations")


def refuse_through_pgbouncer(bind: Engine | Connection, what: str) -> None:
    """Raise :class:`ThroughPgBouncer`, saying that ``what`` ("migrations",
    "pg_dump", ...) cannot run through it, when ``bind`` goes through PgBouncer;
    the message names the server as PgBouncer reaches it (the password masked)."""
    if bind.dialect.name != "postgresql":
        return
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            refuse_through_pgbouncer(connection, what)
        return
    if not through_pgbouncer(bind):
        return
    given = bind.engine.url
    direct = _direct_url(bind, given)
    shown = mask_password(direct) if direct else ""
    instead = f"e.g. {shown}, as PgBouncer reaches it" if direct else "not PgBouncer"
    raise ThroughPgBouncer(
        f"{what} cannot run through PgBouncer ({mask_password(given)}): point --url "
        f"(or PFD_DB_URL) at the PostgreSQL server itself ({instead})"
    )


def _direct_url(connection: Connection, given: URL) -> URL | None:
    """The URL of the server behind PgBouncer, as the server sees itself: its
    address (or Unix socket directory) and port, the database and the role, with
    the given password when the role is the given user. None when unreadable."""
    began = not connection.in_transaction()
    try:
        address, port, sockets, socket_port, database, role = connection.exec_driver_sql(
            _WHERE
        ).one()
    except DBAPIError:
        return None
    finally:
        if began:
            connection.rollback()
    if address is not None:
        return on_server(
            given,
            database=database,
            username=role,
            host=str(address),
            port=None if port is None else int(port),
        )
    directory = str(sockets).split(",")[0].strip()  # a Unix socket: its directory
    if not directory:
        return None
    return on_server(
        given,
        database=database,
        username=role,
        port=int(socket_port),
        socket_directory=directory,
    )
