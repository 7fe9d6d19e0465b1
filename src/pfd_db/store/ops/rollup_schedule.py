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

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput
from pfd_db.models import APIMetricsSummary, APIRequestLog, RollupStalePeriod, RollupWatermark
from pfd_db.models.enums import Aggregation
from pfd_db.store import paging, writes
from pfd_db.store.ops import rollups
from pfd_db.store.validation import require_count, require_items, require_member
from pfd_db.transactions import begin_write
from pfd_db.types import utc_or_now, utcnow

LOCK_KEY = 0x7066_6472_6F6C_6C75  # b"pfdrollu": the transaction-scoped advisory lock
"""PostgreSQL: held by a run (exclusive) and by ``note_late_rows`` (shared)."""


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
    _lock(session, shared=False)
    through = watermark(session, kind)
    stale = session.execute(
        select(RollupStalePeriod.id, RollupStalePeriod.period_start)
        .where(RollupStalePeriod.aggregation_type == kind.value)
        .order_by(RollupStalePeriod.period_start)
        .limit(most + 1)
    ).all()
    more_stale, stale = len(stale) > most, stale[:most]
    new = _new_periods(session, kind, through, open_start, most + 1)
    budget = most - len(stale)
    stopped, new = len(new) > budget, new[:budget]
    starts = sorted({start for _, start in stale} | set(new))
    written = rollups.roll_up_periods(session, kind, starts) if starts else 0
    if stale:
        session.execute(
            delete(RollupStalePeriod).where(RollupStalePeriod.id.in_(i for i, _ in stale))
        )
    if stopped:
        moved = new[-1] + length if new else through
    else:
        moved = open_start if through is None else max(through, open_start)
    if moved is not None and moved != through:
        _set_watermark(session, kind, moved)
    return Refreshed(kind.value, starts, len(stale), written, moved, not (more_stale or stopped))


def _new_periods(
    session: Session, kind: Aggregation, through: datetime | None, open_start: datetime, most: int
) -> list[datetime]:
    """The starts of the periods from the first request at or after ``through``
    (any, when None) to the open one, the first ``most``; none when no request is there."""
    length, time = rollups.LENGTHS[kind], APIRequestLog.request_time
    window = [time < open_start + length]
    if through is not None:
        window.append(time >= through)
    first = session.scalar(select(func.min(time)).where(*window))  # an index probe
    if first is None:
        return []
    low = rollups.period_start(kind, first)
    if through is None and low < open_start and _has_summary(session, kind, low):
        low += length  # a first run: that period's first requests may have gone to retention
    count = min((open_start - low) // length + 1, most)
    return [low + number * length for number in range(count)]


def _has_summary(session: Session, kind: Aggregation, start: datetime) -> bool:
    found = select(APIMetricsSummary.id).where(
        APIMetricsSummary.aggregation_type == kind.value, APIMetricsSummary.period_start == start
    )
    return session.scalar(found) is not None


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
    _lock(session, shared=True)
    marks = sorted(
        (kind, start)
        for kind, through in session.execute(
            select(RollupWatermark.aggregation_type, RollupWatermark.computed_through)
        )
        if through is not None and earliest < through
        for start in _periods_before(Aggregation(kind), listed, through)
    )  # one order for every writer: concurrent marks of the same periods never deadlock
    if marks:
        now = utcnow()
        rows = [
            {"aggregation_type": k, "period_start": s, "created_at": now, "updated_at": now}
            for k, s in marks
        ]
        session.execute(writes.insert_ignoring_conflicts(session, RollupStalePeriod), rows)
    return len(marks)


def _periods_before(
    kind: Aggregation, moments: Sequence[datetime], through: datetime
) -> set[datetime]:
    starts = (rollups.period_start(kind, moment, "moments") for moment in moments)
    return {start for start in starts if start < through}


def watermark(session: Session, period: Aggregation | str) -> datetime | None:
    """The ``period`` watermark: every period before it is computed (None: no run yet)."""
    kind = require_member(period, Aggregation, "period")
    found = select(RollupWatermark.computed_through).where(
        RollupWatermark.aggregation_type == kind.value
    )
    return session.scalar(found)


def reset(session: Session) -> None:
    """Forget every watermark and stale mark: the next :func:`refresh` of each type
    computes everything from the earliest request (after request logs were written
    around ``record_requests``). Flushes; the caller commits."""
    session.flush()
    _lock(session, shared=False)
    session.execute(delete(RollupStalePeriod))
    session.execute(delete(RollupWatermark))


def _set_watermark(session: Session, kind: Aggregation, through: datetime) -> None:
    now = utcnow()
    insert = writes.insert_for(session, RollupWatermark).values(
        aggregation_type=kind.value, computed_through=through, created_at=now, updated_at=now
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["aggregation_type"],
            set_={"computed_through": through, "updated_at": now},
        )
    )


def _lock(session: Session, *, shared: bool) -> None:
    """The lock runs and late-row marks exclude each other by (see the module)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        begin_write(connection)  # SQLite: the write lock, held until the caller commits
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    connection.execute(text(f"SELECT {function}(:key)"), {"key": LOCK_KEY})
