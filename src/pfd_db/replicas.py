"""Read replicas: which server a read-only session reads from.

With ``PFD_DB_REPLICA_URLS`` set (streaming replicas of the PostgreSQL primary),
read-only work (``get_db_session(read_only=True)``, the server's read sessions)
reads from a replica; everything else, every read inside a write transaction
included, stays on the primary. A :class:`Router` knows the replicas of one
primary:

- **Checks.** Each replica is checked at most every :data:`CHECK_SECONDS` (by
  the session that finds the check due; sessions meanwhile go by the last
  check): it must answer, be a standby (in recovery), and lag no more than
  ``PFD_DB_REPLICA_MAX_LAG_SECONDS``.
- **Lag** is how long the replica has been missing WAL that the primary had
  flushed. At each check the router notes the primary's flushed WAL position
  (``pg_current_wal_flush_lsn()``) with the time it first saw it; a replica
  whose replay position (``pg_last_wal_replay_lsn()``) is short of a position
  noted at time *t* lags now - *t*, and one that has replayed the latest
  position lags 0, however long the primary has been idle (where ``now() -
  pg_last_xact_replay_timestamp()`` would keep growing). A replica behind every
  position the router has noted so far (it has just started) is measured once
  more after :data:`SETTLE_SECONDS`; if it still has not caught up, its lag is
  the time since its last replayed commit.
- **Skipping.** A replica that is down (unreachable, or refusing the connection
  a session asks for) or lags too much is skipped with one warning per outage
  (``pfd_db.replicas`` logger) and checked again after :data:`RETRY_SECONDS`;
  an INFO line says when it is used again. With no usable replica, reads go to
  the primary. Usable replicas take sessions in turn.

A read-only session on a replica is bound to a connection taken when the
session starts (:func:`connection_for_reading`), so a replica that died since
its last check costs a failed connection attempt, never an error to the caller.
A replica that dies in the middle of a session fails that session's statements.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from pfd_db.config import get_settings
from pfd_db.engine import make_engine, read_only
from pfd_db.errors import ConfigurationError
from pfd_db.target import identity, mask_password

logger = logging.getLogger("pfd_db.replicas")

CHECK_SECONDS = 1.0
"""How long a replica's last check (reachable, lag) is trusted."""
RETRY_SECONDS = 5.0
"""How long a skipped replica is left alone before it is checked again."""
SETTLE_SECONDS = 0.05
"""Wait before measuring again a replica behind every primary position noted so far."""

_PRIMARY_POSITION = text("SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn")
_REPLICA_POSITION = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() - '0/0'::pg_lsn,"
    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
)


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as its last check saw it."""

    url: str
    """Its URL, password masked."""
    reachable: bool
    lag_seconds: float | None
    """How long it has been behind the primary; None when it could not be measured."""
    in_use: bool
    """Whether read-only sessions go to it now."""
    problem: str | None
    """Why it is not in use (None when it is)."""

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict: ``url``, ``reachable``, ``lag_seconds``, ``in_use``,
        ``problem``."""
        return asdict(self)


class PrimaryPositions:
    """The primary's flushed WAL positions, each with the (monotonic) time it was
    first seen; positions older than ``keep_seconds`` are dropped but for the
    newest of them, which bounds the lag of a replica short of it from below."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._times: list[float] = []
        self._positions: list[int] = []

    def note(self, position: int, now: float) -> None:
        """The primary has flushed up to ``position`` at ``now``."""
        if not self._positions or position > self._positions[-1]:
            self._times.append(now)
            self._positions.append(position)
        old = bisect_right(self._times, now - self.keep_seconds)
        if old > 1:
            del self._times[: old - 1], self._positions[: old - 1]

    @property
    def latest(self) -> int | None:
        """The newest position noted, None before the first."""
        return self._positions[-1] if self._positions else None

    def lag(self, replayed: int, now: float) -> tuple[float | None, bool]:
        """How long a replica that has replayed up to ``replayed`` has been behind
        (None before any position is noted), and whether that is all it lags:
        False when it is short of every position noted and they go back less than
        ``keep_seconds`` (it may have been behind for longer)."""
        if not self._positions:
            return None, True
        if replayed >= self._positions[-1]:
            return 0.0, True
        first = bisect_right(self._positions, replayed)
        lag = max(now - self._times[first], 0.0)
        return lag, first > 0 or lag >= self.keep_seconds


@dataclass
class _Verdict:
    reachable: bool
    lag: float | None = None
    problem: str | None = None


class _Replica:
    """One replica's engine and the state of its last check."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = mask_password(url)
        self.engine: Engine | None = None  # used only through a read_only() view:
        # after a read-only connection, SQLAlchemy leaves psycopg's read_only False, and
        # a transaction begun READ WRITE is refused by a standby
        self.verdict = _Verdict(reachable=False, problem="not checked yet")
        self.usable = False
        self.due = 0.0  # monotonic time of the next check
        self.checking = False
        self.warned = False  # a warning was logged for the outage going on
        self._making = threading.Lock()

    def reader(self) -> Engine:
        """The read-only view of the replica's engine (made on first use)."""
        with self._making:
            if self.engine is None:
                self.engine = make_engine(self.url)
            return read_only(self.engine)


class Router:
    """Chooses the replica a read-only session reads from (see the module's docs).

    ``urls`` are the replicas' URLs; ``check_seconds`` and ``retry_seconds``
    default to :data:`CHECK_SECONDS` and :data:`RETRY_SECONDS`; ``warn=False``
    logs nothing (a one-off status check).
    """

    def __init__(
        self,
        urls: Sequence[str],
        max_lag_seconds: float,
        *,
        check_seconds: float | None = None,
        retry_seconds: float | None = None,
        warn: bool = True,
    ) -> None:
        self.max_lag_seconds = max_lag_seconds
        self.warn = warn
        self.check_seconds = CHECK_SECONDS if check_seconds is None else check_seconds
        self.retry_seconds = RETRY_SECONDS if retry_seconds is None else retry_seconds
        self._replicas = [_Replica(url) for url in urls]
        self._positions = PrimaryPositions(max_lag_seconds + 2 * self.check_seconds)
        self._lock = threading.Lock()
        self._turns = itertools.count()

    def connect(self, primary: Engine) -> Connection | None:
        """A read-only connection to a usable replica of ``primary``, or None when
        there is none (read from the primary then). Runs the checks that are due."""
        self._check(primary, force=False)
        with self._lock:
            usable = [replica for replica in self._replicas if replica.usable]
            start = next(self._turns) % len(usable) if usable else 0
        for replica in usable[start:] + usable[:start]:
            try:
                return replica.reader().connect()
            except DBAPIError as exc:  # down since its last check
                self._apply(replica, _Verdict(False, problem=f"no connection: {_reason(exc)}"))
        return None

    def status(self, primary: Engine) -> list[ReplicaStatus]:
        """Every replica, checked now (but one another thread is checking)."""
        self._check(primary, force=True)
        with self._lock:
            return [
                ReplicaStatus(
                    replica.shown,
                    replica.verdict.reachable,
                    replica.verdict.lag,
                    replica.usable,
                    replica.verdict.problem,
                )
                for replica in self._replicas
            ]

    def dispose(self) -> None:
        """Close the replicas' pooled connections (the router stays usable)."""
        for replica in self._replicas:
            if replica.engine is not None:
                replica.engine.dispose()

    # --- checks ---------------------------------------------------------------

    def _check(self, primary: Engine, *, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            due = [r for r in self._replicas if not r.checking and (force or r.due <= now)]
            for replica in due:
                replica.checking = True
        if not due:
            return
        try:
            self._note_primary(primary)
            for replica in due:
                self._apply(replica, self._measure(replica))
        finally:
            with self._lock:
                for replica in due:
                    replica.checking = False

    def _note_primary(self, primary: Engine) -> None:
        """Note where the primary's WAL is (if it cannot be asked, replicas are
        measured against the last position noted)."""
        try:
            with primary.connect() as connection:
                position = connection.scalar(_PRIMARY_POSITION)
        except DBAPIError as exc:
            logger.debug("primary's WAL position unknown: %s", _reason(exc))
            return
        if position is not None:
            with self._lock:
                self._positions.note(int(position), time.monotonic())

    def _measure(self, replica: _Replica) -> _Verdict:
        try:
            with replica.reader().connect() as connection:
                recovering, replayed, replay_age = connection.execute(_REPLICA_POSITION).one()
                if not recovering or replayed is None:
                    return _Verdict(True, problem="not a standby (pg_is_in_recovery() is false)")
                lag, known = self._lag(int(replayed))
                if not known:
                    time.sleep(SETTLE_SECONDS)
                    lag, _ = self._lag(int(connection.execute(_REPLICA_POSITION).one()[1]))
                    if lag and replay_age is not None:
                        lag = max(lag, float(replay_age))
        except DBAPIError as exc:
            return _Verdict(False, problem=f"unreachable: {_reason(exc)}")
        if lag is not None and lag > self.max_lag_seconds:
            return _Verdict(True, lag, f"lags {lag:.1f} s (more than {self.max_lag_seconds:g} s)")
        return _Verdict(True, lag)

    def _lag(self, replayed: int) -> tuple[float | None, bool]:
        with self._lock:
            return self._positions.lag(replayed, time.monotonic())

    def _apply(self, replica: _Replica, verdict: _Verdict) -> None:
        """Record a check's verdict: the next check's time, and the one warning
        (or INFO line) when the replica stops (or starts again) being used."""
        usable = verdict.problem is None
        with self._lock:
            was_usable, replica.usable, replica.verdict = replica.usable, usable, verdict
            replica.due = time.monotonic() + (self.check_seconds if usable else self.retry_seconds)
            warn, welcome = not usable and not replica.warned, usable and replica.warned
            replica.warned = not usable
        if warn and self.warn:
            logger.warning(
                "read replica %s skipped: %s; reads go to %s until it is usable again "
                "(checked again every %g s)",
                replica.shown,
                verdict.problem,
                "the primary or another replica" if len(self._replicas) > 1 else "the primary",
                self.retry_seconds,
            )
        elif welcome and self.warn:
            logger.info(
                "read replica %s is used again (lag %s)", replica.shown, _seconds(verdict.lag)
            )
        if was_usable and not verdict.reachable and replica.engine is not None:
            replica.engine.dispose()  # its pooled connections are dead


def _seconds(lag: float | None) -> str:
    return "unknown" if lag is None else f"{lag:.1f} s"


def _reason(exc: DBAPIError) -> str:
    """The driver's one-line account of a failure (never holds a password)."""
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__


# --- the routers of this process -------------------------------------------------

_routers: dict[tuple[str, str, float], Router] = {}
_routers_lock = threading.Lock()


def configured_urls() -> list[str]:
    """The replicas of ``PFD_DB_REPLICA_URLS`` (validated by the settings)."""
    return [url for url in get_settings().replica_urls.split(",") if url]


def router_for(primary: Engine) -> Router | None:
    """The process's router for the replicas of ``primary`` (one per primary and
    settings), or None when no replica is configured.

    :class:`ConfigurationError` when replicas are configured for a database that
    is not PostgreSQL."""
    settings = get_settings()
    urls = configured_urls()
    if not urls:
        return None
    _require_postgresql(primary)
    key = (
        identity(primary.url),
        settings.replica_urls,
        settings.replica_max_lag_seconds,
    )
    with _routers_lock:
        router = _routers.get(key)
        if router is None:
            router = _routers[key] = Router(urls, settings.replica_max_lag_seconds)
        return router


@contextmanager
def connection_for_reading(primary: Engine) -> Iterator[Connection | None]:
    """A read-only connection to a usable replica of ``primary`` for one
    read-only session, closed when the block ends; None when no replica is
    configured or none is usable (the session reads from the primary)."""
    router = router_for(primary)
    connection = router.connect(primary) if router is not None else None
    try:
        yield connection
    finally:
        if connection is not None:
            connection.close()


def replica_status(primary: Engine) -> list[dict[str, Any]]:
    """Each replica of ``PFD_DB_REPLICA_URLS`` checked now against ``primary``, for
    ``pfd-db status``: a dict per replica, in the configured order, with ``url``
    (password masked), ``reachable``, ``lag_seconds`` (float, or None if it could
    not be measured), ``in_use`` and ``problem`` (why not in use, or None).
    An empty list when no replica is configured."""
    urls = configured_urls()
    if not urls:
        return []
    _require_postgresql(primary)
    router = Router(urls, get_settings().replica_max_lag_seconds, warn=False)
    try:
        return [status.as_dict() for status in router.status(primary)]
    finally:
        router.dispose()


def _require_postgresql(primary: Engine) -> None:
    if primary.dialect.name != "postgresql":
        raise ConfigurationError(
            "PFD_DB_REPLICA_URLS: read replicas need a PostgreSQL primary, and the "
            f"database is {primary.dialect.name}: unset PFD_DB_REPLICA_URLS for it"
        )


def forget() -> None:
    """Close the replica connections of every router of this process and forget
    the routers (the next read-only session makes a new one)."""
    with _routers_lock:
        routers = list(_routers.values())
        _routers.clear()
    for router in routers:
        router.dispose()
