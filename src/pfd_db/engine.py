"""Engine factory: dialect-aware pool, SQLite pragmas, slow-query log, pool metrics.

``make_engine()`` is the only place that creates engines. Importing this module
creates none and touches no database.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool, StaticPool

from pfd_db.config import Settings, get_settings, normalise_url
from pfd_db.errors import DatabaseUnavailable

logger = logging.getLogger("pfd_db.engine")
READ_ONLY = "pfd_read_only"
SLOW_STATEMENT_CHARS = 200


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


def parse_url(url: str) -> URL:
    """``url`` parsed, or :class:`DatabaseUnavailable` naming what is wrong with it."""
    try:
        return make_url(normalise_url(url))
    except ArgumentError as exc:
        raise DatabaseUnavailable(
            "not a database URL (expected e.g. sqlite:///path/to/pfd.db or "
            "postgresql://user:password@host/dbname)"
        ) from exc


def mask_password(url: str | URL) -> str:
    """The URL as text with its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def make_engine(url: str | None = None, **overrides: Any) -> Engine:
    """A configured engine for ``url`` (default: the settings' URL).

    ``overrides`` replace settings of the same name (``pool_size``,
    ``slow_query_seconds``, ``echo``, ...) for this engine only.
    """
    settings = get_settings().model_copy(update=overrides)
    parsed = parse_url(url or settings.url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed, settings)
    else:
        engine = create_engine(parsed, pool_pre_ping=settings.pool_pre_ping, **_pool_args(settings))
    _log_slow_statements(engine, settings.slow_query_seconds)
    _count_pool_events(engine)
    return engine


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
    in_memory = url.database in (None, "", ":memory:")
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
        # Hand transaction control to SQLAlchemy so "begin" below decides how to start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Writers take the write lock up front: a second writer then waits out
        # busy_timeout instead of failing with "database is locked" when it upgrades
        # a read lock. Read-only work (see read_only()) starts deferred and, with WAL,
        # neither waits for writers nor holds them up.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _log_slow_statements(engine: Engine, threshold: float) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info.setdefault("pfd_query_start", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _finish(conn: Any, _cursor: Any, stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        started = conn.info["pfd_query_start"].pop()
        elapsed = time.perf_counter() - started
        if elapsed >= threshold:
            logger.warning(
                "slow query (%.3f s): %s", elapsed, " ".join(stmt.split())[:SLOW_STATEMENT_CHARS]
            )


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
    """A view of ``engine`` for read-only transactions: on SQLite they begin deferred
    (no write lock, so they run beside a writer), on PostgreSQL they are
    ``READ ONLY`` (a write fails). Connections and pool are shared with ``engine``."""
    return engine.execution_options(**{READ_ONLY: True, "postgresql_readonly": True})


def verify_connection(engine: Engine) -> None:
    """Open and close one connection, or raise :class:`DatabaseUnavailable`."""
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise DatabaseUnavailable(f"cannot reach {mask_password(engine.url)}: {reason}") from exc
