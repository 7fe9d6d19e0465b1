"""Retention: old rows of the big log tables removed in batches (``pfd-db clean``).

Which tables, and which of their rows count as old (their age from the
settings, ``PFD_DB_RETENTION_*_DAYS``, unless one age is given for all):

======================  ==============================================================
table                   a row is removed when
======================  ==============================================================
``api_request_logs``    its ``request_time`` is older than the age
``api_usage``           its ``timestamp`` is (never less than the rate-limit hour)
``email_logs``          it was created before and is no longer pending delivery
``webhook_logs``        the same
``login_history``       its ``timestamp`` is (never less than the login limits read:
                        ``known_address_seconds`` and the lockout windows)
``session_logs``        it ended (logged out, or its user deactivated) or expired
                        before then
``system_logs``         it was created before (the audit log)
======================  ==============================================================

"Older" is strict: a row exactly at the cutoff (``now`` minus the age) is kept,
one a microsecond older is removed.

On PostgreSQL the four tables revision 0011 partitions by month
(:mod:`pfd_db.store.ops.partitions`) are cleaned by partition: each partition
that ends at or before the cutoff is detached and dropped whole, one per
transaction (no row-by-row delete, no bloat), and rows are deleted in batches
only in the partition the cutoff falls in and in the default partition. The
report names the partitions dropped; their rows count among those removed.

Nothing else is ever touched: experiments, curves, users, keys, summaries and
configuration have no retention. Nothing references these rows, so removing
any of them leaves every other row valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, column, delete, func, or_, select, table
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import Executable

from pfd_db.config import Settings, get_settings
from pfd_db.errors import InvalidInput
from pfd_db.models import (
    APIRequestLog,
    APIUsage,
    EmailLog,
    LoginHistory,
    SessionLog,
    SystemLog,
    WebhookLog,
)
from pfd_db.models.enums import EmailStatus, WebhookStatus
from pfd_db.progress import Progress, no_progress
from pfd_db.store.ops import partitions
from pfd_db.store.ops.partitions import Partition
from pfd_db.store.validation import require_count, require_flag, require_items
from pfd_db.types import UTCDateTime, utc_or_now
from pfd_db.values import shown

AGE_MAX = timedelta(days=36_600)  # a century: a cutoff stays on the calendar


@dataclass(frozen=True)
class Rule:
    """How one table's old rows are found."""

    table: str
    model: Any
    setting: str
    """The Settings field with the table's default age, in days."""
    old: Callable[[datetime], ColumnElement[bool]]
    """The rows older than a cutoff."""
    least: Callable[[Settings], timedelta] = lambda _settings: timedelta(0)
    """The youngest rows the rest of pfd-db still reads: never removed."""
    time_column: str | None = None
    """For a rule that is "older than" on one column (:func:`_before`): that
    column, by which the table may be partitioned."""


def _before(column: Any) -> Callable[[datetime], ColumnElement[bool]]:
    return lambda cutoff: column < cutoff


def _delivered_before(model: Any, pending: str) -> Callable[[datetime], ColumnElement[bool]]:
    return lambda cutoff: and_(model.created_at < cutoff, model.status != pending)


def _session_ended_before(cutoff: datetime) -> ColumnElement[bool]:
    ended = func.coalesce(SessionLog.logged_out_at, SessionLog.updated_at)
    return or_(
        and_(SessionLog.is_active.is_(False), ended < cutoff),
        SessionLog.expires_at < cutoff,
    )


def _login_limits(settings: Settings) -> timedelta:
    seconds = max(
        settings.known_address_seconds,
        settings.account_lockout_window_seconds,
        settings.lockout_window_seconds,
    )
    return timedelta(seconds=seconds)


RULES: dict[str, Rule] = {
    rule.table: rule
    for rule in (
        Rule(
            "api_request_logs",
            APIRequestLog,
            "retention_request_logs_days",
            _before(APIRequestLog.request_time),
            time_column="request_time",
        ),
        Rule(
            "api_usage",
            APIUsage,
            "retention_api_usage_days",
            _before(APIUsage.timestamp),
            lambda _settings: timedelta(hours=1),  # api_keys.check_rate_limit's window
            time_column="timestamp",
        ),
        Rule(
            "email_logs",
            EmailLog,
            "retention_email_logs_days",
            _delivered_before(EmailLog, EmailStatus.PENDING.value),
        ),
        Rule(
            "webhook_logs",
            WebhookLog,
            "retention_webhook_logs_days",
            _delivered_before(WebhookLog, WebhookStatus.PENDING.value),
        ),
        Rule(
            "login_history",
            LoginHistory,
            "retention_login_history_days",
            _before(LoginHistory.timestamp),
            _login_limits,
            time_column="timestamp",
        ),
        Rule("session_logs", SessionLog, "retention_sessions_days", _session_ended_before),
        Rule(
            "system_logs",
            SystemLog,
            "retention_system_logs_days",
            _before(SystemLog.created_at),
            time_column="created_at",
        ),
    )
}
TABLES = tuple(RULES)
BATCH_MAX = 100_000


@dataclass(frozen=True)
class Removed:
    """What :func:`clean` did to one table."""

    table: str
    cutoff: datetime
    """Rows older than this were removed (or counted, in a dry run)."""
    rows: int
    kept_longer: bool = False
    """True when the age asked for was shorter than what pfd-db still reads, so
    the cutoff was moved back to keep that (see the module doc)."""
    partitions: tuple[Partition, ...] = ()
    """The partitions dropped whole (in a dry run: that would be), oldest first;
    their rows are counted in :attr:`rows`."""


def clean(
    bind: Engine | sessionmaker[Session],
    *,
    older_than: timedelta | None = None,
    tables: Iterable[str] | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    now: datetime | None = None,
    progress: Progress = no_progress,
) -> list[Removed]:
    """Remove the old rows of ``tables`` (default: all of :data:`TABLES`), table by
    table in that order; what was removed from each.

    A row is old when it is older than ``older_than`` (default: the table's own
    retention setting) before ``now``; see the module doc for what each table
    counts. ``dry_run`` counts them and removes nothing. ``progress`` is told
    ``(table, rows removed, rows to remove)`` as batches go.

    The one store function that commits, and therefore the one that takes an
    engine or a sessionmaker rather than a caller's session: it deletes at most
    ``batch_size`` rows (default: the ``retention_batch_size`` setting) per
    transaction and commits each, so that no lock is held for long on either
    dialect and writers keep using the tables meanwhile. Stopped at any point (a
    crash, a kill), every committed batch stays removed, the rest stays as it
    was, and running it again finishes the work.

    :class:`InvalidInput`, before anything is removed, for an unknown table (or
    one pfd-db never cleans), an age that is not a positive timedelta, or a bad
    batch size.
    """
    settings = get_settings()
    chosen, age, size = _arguments(tables, older_than, batch_size)
    require_flag(dry_run, "dry_run")
    moment = utc_or_now(now)
    sessions = bind if isinstance(bind, sessionmaker) else sessionmaker(bind)
    with sessions() as session:
        keys = partitions.partitioned_tables(session)
    report = []
    for rule in chosen:
        wanted = age if age is not None else timedelta(days=getattr(settings, rule.setting))
        kept = max(wanted, rule.least(settings))
        cutoff = moment - kept
        if rule.time_column is not None and keys.get(rule.table) == rule.time_column:
            rows, dropped = _remove_by_partition(sessions, rule, cutoff, size, dry_run, progress)
        else:
            rows, dropped = _remove(sessions, rule, cutoff, size, dry_run, progress), ()
        report.append(
            Removed(rule.table, cutoff, rows, kept_longer=kept > wanted, partitions=dropped)
        )
    return report


def _remove(
    sessions: sessionmaker[Session],
    rule: Rule,
    cutoff: datetime,
    size: int,
    dry_run: bool,
    progress: Progress,
) -> int:
    """Remove ``rule``'s rows older than ``cutoff``, ``size`` per committed
    transaction; how many (in a dry run: how many would be)."""
    old = rule.old(cutoff)
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(rule.model).where(old)) or 0
    progress(rule.table, 0, total)
    if dry_run or total == 0:
        return total
    model = rule.model
    batch = (
        delete(model)
        .where(model.id.in_(select(model.id).where(old).limit(size)))
        .execution_options(synchronize_session=False)
    )
    return _delete_in_batches(
        sessions, batch, size, 0, lambda n: progress(rule.table, n, max(total, n))
    )


def _delete_in_batches(
    sessions: sessionmaker[Session],
    batch: Executable,
    size: int,
    removed: int,
    done: Callable[[int], None],
) -> int:
    """Run ``batch`` (a DELETE of at most ``size`` rows), a committed transaction
    each time, until it removes fewer; ``removed`` plus the rows it removed, told to
    ``done`` as it goes."""
    while True:
        with sessions() as session, session.begin():
            count = int(session.execute(batch).rowcount)  # type: ignore[attr-defined]
        removed += count
        done(removed)
        if count < size:
            return removed


def _remove_by_partition(
    sessions: sessionmaker[Session],
    rule: Rule,
    cutoff: datetime,
    size: int,
    dry_run: bool,
    progress: Progress,
) -> tuple[int, tuple[Partition, ...]]:
    """Remove a partitioned table's rows older than ``cutoff``: drop each partition
    that ends by then (one per committed transaction), then delete ``size`` rows
    per transaction from the partitions that straddle the cutoff and the default
    one. The rows removed and the partitions dropped (in a dry run: would be)."""
    key = rule.time_column
    assert key is not None
    with sessions() as session:
        whole = partitions.partitions_before(session, rule.table, cutoff, exact=dry_run)
        parts = [
            table(name, column("id"), column(key, UTCDateTime()))
            for name in partitions.straddling(session, rule.table, cutoff)
        ]
        remaining = sum(
            session.scalar(select(func.count()).select_from(p).where(p.c[key] < cutoff)) or 0
            for p in parts
        )
    total = sum(p.rows for p in whole) + remaining
    progress(rule.table, 0, total)
    if dry_run:
        return total, tuple(whole)
    removed = 0
    dropped = []

    def told(done: int) -> None:
        progress(rule.table, done, max(total, done))

    for partition in whole:
        with sessions() as session, session.begin():
            rows = partitions.drop_partition(session, partition)
        dropped.append(replace(partition, rows=rows))
        removed += rows
        told(removed)
    for part in parts:
        old = part.c[key] < cutoff
        batch = delete(part).where(old, part.c.id.in_(select(part.c.id).where(old).limit(size)))
        removed = _delete_in_batches(sessions, batch, size, removed, told)
    return removed, tuple(dropped)


def check_arguments(
    *,
    tables: Iterable[str] | None = None,
    older_than: timedelta | None = None,
    batch_size: int | None = None,
) -> None:
    """Raise the :class:`InvalidInput` :func:`clean` would raise for these
    arguments, without touching a database (to refuse before asking anything)."""
    _arguments(tables, older_than, batch_size)


def _arguments(
    tables: Iterable[str] | None, older_than: object, batch_size: object
) -> tuple[list[Rule], timedelta | None, int]:
    """The rules of ``tables``, the age for all (or None) and the batch size, checked."""
    default = get_settings().retention_batch_size
    size = require_count(default if batch_size is None else batch_size, "batch_size", 1, BATCH_MAX)
    return _chosen(tables), _valid_age(older_than), size


def _chosen(tables: Iterable[str] | None) -> list[Rule]:
    if tables is None:
        return list(RULES.values())
    names = require_items(tables, "tables")
    unknown = [name for name in names if not isinstance(name, str) or name not in RULES]
    if unknown or not names:
        raise InvalidInput(
            f"tables: pfd-db cleans only {', '.join(TABLES)} (got {shown(unknown)})"
            if unknown
            else "tables: name at least one table"
        )
    return [RULES[name] for name in TABLES if name in names]


def _valid_age(older_than: object) -> timedelta | None:
    if older_than is None:
        return None
    if not isinstance(older_than, timedelta) or not timedelta(0) < older_than <= AGE_MAX:
        raise InvalidInput(
            f"older_than must be a positive timedelta of at most {AGE_MAX.days} days "
            f"(got {shown(older_than)})"
        )
    return older_than
