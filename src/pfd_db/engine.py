"""Engine factory: dialect-aware pool, SQLite pragmas, slow-query log, pool metrics,
the transaction rules of :mod:`pfd_db.transactions`, and no prepared statements
through PgBouncer (:mod:`pfd_db.pgbouncer`).

``make_engine()`` is the only place that creates engines. Importing this module
creates none and touches no database.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.exc import DataError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool, StaticPool

from pfd_db.config import Settings, get_settings
from pfd_db.errors import ConfigurationError, InvalidInput
from pfd_db.pgbouncer import connect_args, follow_pgbouncer
from pfd_db.target import IN_MEMORY, parse_url
from pfd_db.transactions import (
    READ_ONLY,
    refuse_writes_when_read_only,
    take_sqlite_write_lock_on_first_write,
)

logger = logging.getLogger("pfd_db.engine")
SLOW_STATEMENT_CHARS = 200
ENGINE_SETTINGS = (
    "pool_size",
    "max_overflow",
    "pool_timeout",
    "pool_recycle",
    "pool_pre_ping",
    "slow_query_seconds",
    "echo",
    "sqlite_busy_timeout_ms",
)
"""The settings ``make_engine`` takes as overrides."""
_STARTED = "_pfd_started"  # set on each statement's execution context: its start time


class MeteredQueuePool(QueuePool):
    """A ``QueuePool`` that counts the checkouts that had to wait for a connection."""

    waits = 0

    def _do_get(self) -> ConnectionPoolEntry:
        if self.checkedin() == 0 and self.overflow() >= self._max_overflow:
            self.waits += 1
        return super()._do_get()


@dataclass
class PoolCounters:
    checkouts: int = 0
    connects: int = 0


_counters: WeakKeyDictionary[Engine, PoolCounters] = WeakKeyDictionary()


def make_engine(url: str | URL | None = None, **overrides: Any) -> Engine:
    """A configured engine for ``url`` (default: the settings' URL).

    ``overrides`` replace settings of the same name (one of ``ENGINE_SETTINGS``:
    ``pool_size``, ``slow_query_seconds``, ``echo``, ...) for this engine only,
    checked as the settings are: :class:`ConfigurationError` names an unknown
    setting or a bad value.
    """
    settings = get_settings().model_copy(update=_valid_overrides(overrides))
    parsed = parse_url(url or settings.url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        engine = _sqlite_engine(parsed, settings)
    else:
        engine = create_engine(
            parsed,
            pool_pre_ping=settings.pool_pre_ping,
            connect_args=connect_args(settings.pgbouncer),
            **_pool_args(settings),
        )
        follow_pgbouncer(engine, settings.pgbouncer)  # no prepared statements through it
    _log_slow_statements(engine, settings.slow_query_seconds)  # first: lock waits count too
    if sqlite:
        take_sqlite_write_lock_on_first_write(engine)
    refuse_writes_when_read_only(engine)
    _count_pool_events(engine)
    _refuse_unstorable_values(engine)
    return engine


def _valid_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` validated by the settings' own rules, or ConfigurationError."""
    unknown = sorted(set(overrides) - set(ENGINE_SETTINGS))
    if unknown:
        raise ConfigurationError(
            f"make_engine: unknown setting {', '.join(map(repr, unknown))} "
            f"(it takes {', '.join(ENGINE_SETTINGS)})"
        )
    try:
        checked = Settings.model_validate(overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{error['loc'][0]}: {error['msg']}" for error in exc.errors())
        raise ConfigurationError(f"make_engine: {problems}") from None
    return {name: getattr(checked, name) for name in overrides}


def _pool_args(settings: Settings) -> dict[str, Any]:
    return {
        "poolclass": MeteredQueuePool,
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.pool_timeout,
        "pool_recycle": settings.pool_recycle,
        "echo": settings.echo,
    }


def _sqlite_engine(url: URL, settings: Settings) -> Engine:
    in_memory = url.database in IN_MEMORY
    connect_args = {"check_same_thread": False}
    if in_memory:  # one connection, shared, or every checkout would see a new empty database
        engine = create_engine(
            url, poolclass=StaticPool, connect_args=connect_args, echo=settings.echo
        )
    else:
        engine = create_engine(url, connect_args=connect_args, **_pool_args(settings))
    busy_ms = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver begins no transaction by itself: pfd_db.transactions decides when.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        if not in_memory:
            _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL, unless it is opened read-only: a file that cannot be
    written keeps its journal mode and can still be read."""
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc):
            raise


def _log_slow_statements(engine: Engine, threshold: float) -> None:
    # The start time lives on the statement's execution context, which is dropped
    # with the statement, whether it succeeds or fails.
    @event.listens_for(engine, "before_cursor_execute")
    def _start(_conn: Any, _cursor: Any, _stmt: str, _params: Any, ctx: Any, _many: bool) -> None:
        if ctx is not None:
            setattr(ctx, _STARTED, time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _finish(_conn: Any, _cursor: Any, stmt: str, _params: Any, ctx: Any, _many: bool) -> None:
        started = getattr(ctx, _STARTED, None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        if elapsed >= threshold:
            logger.warning(
                "slow query (%.3f s): %s", elapsed, " ".join(stmt.split())[:SLOW_STATEMENT_CHARS]
            )


def _refuse_unstorable_values(engine: Engine) -> None:
    """Report a value the driver or the database refuses as :class:`InvalidInput`.

    The last resort behind the store's checks (:mod:`pfd_db.values`): a NUL in
    text, a lone surrogate, a number out of its column's range or a wrong type
    that reached a statement. On PostgreSQL the transaction is then aborted, as
    after any failed statement: roll it back.
    """

    @event.listens_for(engine, "handle_error")
    def _translate(ctx: ExceptionContext) -> InvalidInput | None:
        error = ctx.original_exception
        refused = isinstance(error, OverflowError | UnicodeEncodeError) or (
            isinstance(ctx.sqlalchemy_exception, DataError)
            or any(words in str(error) for words in _UNBINDABLE)
        )
        if ctx.is_disconnect or not refused:
            return None
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return InvalidInput(f"the database cannot take a value given: {reason}")


_UNBINDABLE = ("Error binding parameter", "cannot adapt type")
"""How sqlite3 and psycopg say that a parameter's Python type cannot be sent."""


def _count_pool_events(engine: Engine) -> None:
    counters = _counters.setdefault(engine, PoolCounters())

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi: Any, _record: ConnectionPoolEntry) -> None:
        counters.connects += 1

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi: Any, _rec: ConnectionPoolEntry, _px: PoolProxiedConnection) -> None:
        counters.checkouts += 1


def pool_status(engine: Engine) -> dict[str, int]:
    """The pool's gauges and counters: size, checked out, overflow, total checkouts,
    connects and checkout waits (counted since the engine was made)."""
    pool = engine.pool
    counters = _counters.get(engine, PoolCounters())
    gauges = (
        {"size": pool.size(), "checked_out": pool.checkedout(), "overflow": max(pool.overflow(), 0)}
        if isinstance(pool, QueuePool)
        else {"size": 1, "checked_out": 0, "overflow": 0}
    )
    return {
        **gauges,
        "checkouts": counters.checkouts,
        "connects": counters.connects,
        "checkout_waits": getattr(pool, "waits", 0),
    }


def read_only(engine: Engine) -> Engine:
    """A view of ``engine`` for work that only reads: every write through it raises
    :class:`~pfd_db.errors.ReadOnlySession` and writes nothing (see
    :mod:`pfd_db.transactions`). Connections and pool are shared with ``engine``."""
    return engine.execution_options(**{READ_ONLY: True, "postgresql_readonly": True})
