"""Incremental rollups: each run computes only the periods that have new rows.

:func:`refresh` keeps a watermark per aggregation type (``rollup_watermarks``,
revision 0010): ``computed_through``, the start of the period that was open at
its last run. Every period before it is closed and was computed; a run computes
the periods from the watermark (or from the first request after it) to the open
one, which it computes again each time, plus the closed periods that late rows
reopened, then moves the watermark to the open period's start and forgets
those marks. So a closed period is computed once, and a run costs what the new
rows cost, whatever the history holds.

Late rows. :func:`note_late_rows`, which ``record_requests`` calls in its own
transaction, marks the closed periods that rows older than the watermark fall
in (``rollup_stale_periods``, an insert that ignores a mark already there); the
next :func:`refresh` computes them again. Writers that go around
``record_requests`` (raw SQL, ``COPY``) must call it too, or :func:`reset`.

Concurrency. A run and the writers of request logs exclude each other around
the watermark: on PostgreSQL a run holds ``pg_advisory_xact_lock`` of
:data:`LOCK_KEY` until it commits, and ``note_late_rows`` takes the same lock
shared before it reads the watermarks (transaction-scoped, so PgBouncer's
transaction pooling keeps working); on SQLite both hold the database's write
lock. A row committed before a run started is computed by it; one committed
after reads the new watermark and marks its period. Two runs take turns.

First run (no watermark, after the upgrade or :func:`reset`): from the earliest
request stored; the period holding that request is left as it is when it is
closed and already has a summary row, since retention may have removed its
first requests. A run computes at most ``limit`` periods (stale ones first):
one that stops short moves the watermark only past what it computed and says
``complete=False``, so a long history is computed in several transactions.

``copy``, ``backup``/``restore`` and the partitioning migration carry the
watermarks with the summaries and the request logs they describe (one
snapshot); ``import-legacy`` brings none, so the first run computes everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import Connection, Integer, Table, bindparam, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from pfd_db.errors import InvalidInput
from pfd_db.models import RollupWatermark
from pfd_db.models.enums import Aggregation
from pfd_db.store import paging
from pfd_db.store.ops import rollups
from pfd_db.store.validation import require_count, require_items, require_member
from pfd_db.store.writes import insert_for
from pfd_db.transactions import begin_write
from pfd_db.types import UTCDateTime, utc_or_now, utcnow

LOCK_KEY = 0x7066_6472_6F6C_6C75  # b"pfdrollu": the transaction-scoped advisory lock
"""PostgreSQL: held by a run (exclusive) and by ``note_late_rows`` (shared)."""

# The statements of a run, built once (Core: a run's own cost stays a few statements).
TABLES = RollupWatermark.metadata.tables
MARKS, WATERMARKS = TABLES["rollup_stale_periods"], TABLES["rollup_watermarks"]
SUMMARIES, LOGS = TABLES["api_metrics_summary"], TABLES["api_request_logs"]
THROUGH = select(WATERMARKS.c.computed_through).where(
    WATERMARKS.c.aggregation_type == bindparam("kind")
)
ALL_THROUGH = select(WATERMARKS.c.aggregation_type, WATERMARKS.c.computed_through)
STALE = (
    select(MARKS.c.id, MARKS.c.period_start)
    .where(MARKS.c.aggregation_type == bindparam("kind"))
    .order_by(MARKS.c.period_start)
    .limit(bindparam("most", type_=Integer()))
)
FORGET = delete(MARKS).where(MARKS.c.id.in_(bindparam("ids", expanding=True)))
FIRST = select(func.min(LOGS.c.request_time)).where(LOGS.c.request_time < bindparam("high"))
FIRST_AFTER = FIRST.where(LOGS.c.request_time >= bindparam("low"))  # an index probe, too
HAS_SUMMARY = select(SUMMARIES.c.id).where(
    SUMMARIES.c.aggregation_type == bindparam("kind"),
    SUMMARIES.c.period_start == bindparam("start"),
)


@dataclass(frozen=True)
class Refreshed:
    """What one :func:`refresh` did."""

    period: str
    computed: list[datetime]
    """The starts of the periods computed, oldest first (stale ones included)."""
    stale: int
    """How many of them late rows had reopened."""
    written: int
    """How many had requests, so got their summary row written."""
    computed_through: datetime | None
    """The watermark after the run: every period before it is computed."""
    complete: bool
    """False when ``limit`` stopped the run short: run it again."""


def refresh(
    session: Session,
    period: Aggregation | str,
    *,
    now: datetime | None = None,
    limit: int = rollups.PERIODS_MAX,
) -> Refreshed:
    """Bring the ``period`` ("hourly", "daily" or "weekly") rows of
    ``api_metrics_summary`` up to date with the request log: the stale periods
    and those from the watermark to the one open at ``now`` (default: the
    clock), at most ``limit`` (1 to 100 000); then the watermark moves to the
    start of the open period. Safe against concurrent runs and writers (see the
    module). Flushes; the caller commits, which releases the lock.
    """
    kind = require_member(period, Aggregation, "period")
    moment = utc_or_now(now)
    most = require_count(limit, "limit", 1, rollups.PERIODS_MAX)
    length, open_start = rollups.LENGTHS[kind], rollups.period_start(kind, moment)
    session.flush()
    connection = _locked(session, shared=False)
    through = connection.execute(THROUGH, {"kind": kind.value}).scalar()
    stale = connection.execute(STALE, {"kind": kind.value, "most": most + 1}).all()
    more_stale, stale = len(stale) > most, stale[:most]
    new = _new_periods(connection, kind, through, open_start, most + 1)
    budget = most - len(stale)
    stopped, new = len(new) > budget, new[:budget]
    starts = sorted({start for _, start in stale} | set(new))
    written = rollups.roll_up_periods(session, kind, starts) if starts else 0
    if stale:
        connection.execute(FORGET, {"ids": [ident for ident, _ in stale]})
    if stopped:
        moved = new[-1] + length if new else through
    else:
        moved = open_start if through is None else max(through, open_start)
    if moved is not None and moved != through:
        settled = {"kind": kind.value, "through": moved, "now": utcnow()}
        connection.execute(_upsert(connection.dialect.name), settled)
    return Refreshed(kind.value, starts, len(stale), written, moved, not (more_stale or stopped))


def _new_periods(
    connection: Connection,
    kind: Aggregation,
    through: datetime | None,
    open_start: datetime,
    most: int,
) -> list[datetime]:
    """The starts of the periods from the first request at or after ``through``
    (any, when None) to the open one, the first ``most``; none when no request is there."""
    length = rollups.LENGTHS[kind]
    bounds = {"high": open_start + length, "low": through}
    first = connection.execute(FIRST if through is None else FIRST_AFTER, bounds).scalar()
    if first is None:
        return []
    low = rollups.period_start(kind, first)
    if through is None and low < open_start:
        summary = connection.execute(HAS_SUMMARY, {"kind": kind.value, "start": low}).first()
        if summary is not None:  # a first run: its first requests may have gone to retention
            low += length
    count = min((open_start - low) // length + 1, most)
    return [low + number * length for number in range(count)]


def note_late_rows(session: Session, moments: Sequence[datetime]) -> int:
    """Mark, for each aggregation type, the computed periods that rows written at
    ``moments`` (their ``request_time``) fall in, so the next :func:`refresh`
    computes them again; how many marks were made (ones already there included).
    Call it in the transaction that writes the rows, after writing them (it
    waits, on PostgreSQL, for a run that holds the lock to commit). One read of
    the watermarks when no row is late."""
    listed = require_items(moments, "moments")
    if not listed:
        return 0
    try:
        earliest = paging.moment(min(listed), "moments")
    except TypeError:  # naive and aware, or not datetimes
        raise InvalidInput("moments must be timezone-aware datetimes") from None
    connection = _locked(session, shared=True)
    marks = sorted(
        (kind, start)
        for kind, through in connection.execute(ALL_THROUGH)
        if through is not None and earliest < through
        for start in _periods_before(Aggregation(kind), listed, through)
    )  # one order for every writer: concurrent marks of the same periods never deadlock
    if marks:
        now = utcnow()
        rows = [{"kind": kind, "start": start, "now": now} for kind, start in marks]
        connection.execute(_mark(connection.dialect.name), rows)
    return len(marks)


def _periods_before(
    kind: Aggregation, moments: Sequence[datetime], through: datetime
) -> set[datetime]:
    starts = (rollups.period_start(kind, moment, "moments") for moment in moments)
    return {start for start in starts if start < through}


def watermark(session: Session, period: Aggregation | str) -> datetime | None:
    """The ``period`` watermark: every period before it is computed (None: no run yet)."""
    kind = require_member(period, Aggregation, "period")
    found: datetime | None = session.execute(THROUGH, {"kind": kind.value}).scalar()
    return found


def reset(session: Session) -> None:
    """Forget every watermark and stale mark: the next :func:`refresh` of each type
    computes everything from the earliest request (after request logs were written
    around ``record_requests``). Flushes; the caller commits."""
    session.flush()
    connection = _locked(session, shared=False)
    connection.execute(delete(MARKS))
    connection.execute(delete(WATERMARKS))


@cache
def _upsert(dialect: str) -> Executable:
    """Set a type's watermark, its row made the first time."""
    insert = _stamped_insert(dialect, WATERMARKS, "computed_through", "through")
    excluded = insert.excluded
    upsert: Executable = insert.on_conflict_do_update(
        index_elements=["aggregation_type"],
        set_={"computed_through": excluded.computed_through, "updated_at": excluded.updated_at},
    )
    return upsert


@cache
def _mark(dialect: str) -> Executable:
    """Mark a stale period; a mark already there stays (``ON CONFLICT DO NOTHING``)."""
    ignoring: Executable = _stamped_insert(
        dialect, MARKS, "period_start", "start"
    ).on_conflict_do_nothing()
    return ignoring


def _stamped_insert(
    dialect: str, table: Table, column: str, parameter: str
) -> postgresql.Insert | sqlite.Insert:
    """INSERT of a row of ``table`` for the type ``:kind``, ``column`` set from the
    time ``:parameter``, both time stamps from ``:now``."""
    stamp = bindparam("now", type_=UTCDateTime())
    return insert_for(dialect, table).values(
        {
            "aggregation_type": bindparam("kind"),
            column: bindparam(parameter, type_=UTCDateTime()),
            "created_at": stamp,
            "updated_at": stamp,
        }
    )


def _locked(session: Session, *, shared: bool) -> Connection:
    """The session's connection, holding the lock runs and late-row marks exclude
    each other by (see the module)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        begin_write(connection)  # SQLite: the write lock, held until the caller commits
        return connection
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    connection.execute(text(f"SELECT {function}(:key)"), {"key": LOCK_KEY})
    return connection
