"""Monthly partitions of the big log tables on PostgreSQL: created ahead, listed, dropped.

Revision 0011 range-partitions ``api_request_logs``, ``api_usage``, ``system_logs``
and ``login_history`` by calendar month (UTC) of their time column
(:data:`pfd_db.migrations.compare.PARTITIONED`), each with a default partition for
rows outside the months that have one (docs/partitions.md).
:func:`ensure_partitions` creates the partitions of the current month, ``ahead``
months after it and every month (at most :data:`MONTHS_BACK_MAX` back) whose rows
wait in the default partition, moving them in (idempotent; ``pfd-db maintain`` and
``clean`` run it); :func:`list_partitions` lists them; :func:`drop_before` drops the
ones that end by a moment (``clean`` drops one per transaction through
:func:`partitions_before` and :func:`drop_partition`).

Every function works in the caller's transaction and never commits; on SQLite, or
for tables not partitioned (``create_all`` and adopted), there is nothing to do. A
new partition is made as a plain table, then attached (writers go on). Moving rows
out of the default partition, and detaching, hold the parent's ACCESS EXCLUSIVE
lock until the commit (no reader sees rows between two partitions); each waits at
most :data:`LOCK_TIMEOUT` for its locks, then fails, changing nothing. Concurrent
runs take turns (a transaction-level advisory lock).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict, InvalidInput
from pfd_db.migrations.compare import PARTITIONED
from pfd_db.store.ops.partition_records import Created as Created  # re-exported
from pfd_db.store.ops.partition_records import Partition as Partition
from pfd_db.store.ops.partition_records import PartitionedTable as PartitionedTable
from pfd_db.store.validation import require_count, require_flag, require_items
from pfd_db.types import as_utc, utc_or_now
from pfd_db.values import shown

MONTHS_AHEAD = 3
AHEAD_MAX = 36
MONTHS_BACK_MAX = 120
"""Rows older than this many months stay in the default partition (as in 0011)."""
LOCK_TIMEOUT = "10s"
LOCK_NOT_AVAILABLE = "55P03"
BOUNDS = "pfd_partition_bounds"
"""The CHECK a partition being filled carries until it is attached."""
ADVISORY_LOCK = 0x70FD_DB11
"""The key of the transaction-level advisory lock partition changes take."""
PARENT = (  # whether a table of that name exists, and the table it is a partition of
    "SELECT to_regclass(:name) IS NOT NULL, (SELECT inhparent::regclass::text "
    "FROM pg_inherits WHERE inhrelid = to_regclass(:name))"
)


def partitioned_tables(session: Session) -> dict[str, str]:
    """The log tables that are partitioned in the session's database, each with
    its partition key column (empty on SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return {}
    rows = session.execute(
        text(
            "SELECT c.relname, a.attname FROM pg_partitioned_table p "
            "JOIN pg_class c ON c.oid = p.partrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0] "
            "WHERE n.nspname = current_schema() AND c.relname = ANY(:tables)"
        ),
        {"tables": list(PARTITIONED)},
    )
    return {str(table): str(column) for table, column in rows}


def list_partitions(session: Session, *, exact: object = False) -> list[PartitionedTable]:
    """Each partitioned log table with its partitions and their rows: the
    statistics' estimate (``pg_stat``: live rows as of the last few seconds),
    or with ``exact`` a ``count(*)`` of each partition."""
    counted = require_flag(exact, "exact")
    keys = partitioned_tables(session)
    if not keys:
        return []
    found: dict[str, list[Partition]] = {table: [] for table in keys}
    rows = session.execute(
        text(
            "SELECT parent.relname, c.relname, "
            "(regexp_match(pg_get_expr(c.relpartbound, c.oid), "
            "  'FROM \\(''([^'']+)''\\) TO'))[1]::timestamptz, "
            "(regexp_match(pg_get_expr(c.relpartbound, c.oid), "
            "  'TO \\(''([^'']+)''\\)'))[1]::timestamptz, "
            "pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', "
            "coalesce(s.n_live_tup, greatest(c.reltuples, 0)::bigint) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class parent ON parent.oid = i.inhparent "
            "JOIN pg_namespace n ON n.oid = parent.relnamespace "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = current_schema() AND parent.relname = ANY(:tables)"
        ),
        {"tables": list(keys)},
    )
    for table, name, start, end, is_default, estimate in rows:
        if not is_default and (start is None or end is None):
            continue  # MINVALUE/MAXVALUE bounds: not a partition pfd-db makes
        count = _count(session, name) if counted else int(estimate)
        start, end = (bound and bound.astimezone(UTC) for bound in (start, end))
        found[table].append(Partition(table, name, start, end, count))
    return [
        PartitionedTable(table, keys[table], tuple(sorted(found[table], key=_oldest_first)))
        for table in PARTITIONED
        if table in keys
    ]


def ensure_partitions(
    session: Session,
    *,
    ahead: object = MONTHS_AHEAD,
    dry_run: object = False,
    now: datetime | None = None,
) -> list[Created]:
    """Create the partitions each partitioned log table lacks: its current month's
    and ``ahead`` months after (default :data:`MONTHS_AHEAD`), and those of the
    months (at most :data:`MONTHS_BACK_MAX` back) that rows in the default
    partition belong to; those rows are moved into the new partition in the same
    transaction. What was created (``dry_run``: what would be; nothing is
    written). A month some partition already covers, wholly or in part, is left
    alone. Running it again creates nothing.

    :class:`InvalidInput` for ``ahead`` outside 0..:data:`AHEAD_MAX`;
    :class:`Conflict` when a table the new partition would be named after exists
    but is not that partition (rename or drop it).
    """
    months_ahead = require_count(ahead, "ahead", 0, AHEAD_MAX)
    planning = require_flag(dry_run, "dry_run")
    moment = utc_or_now(now)
    tables = list_partitions(session)
    if not tables:
        return []
    if not planning:
        _take_turns(session)
        tables = list_partitions(session)  # as it is now that no one else changes it
    current = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    first, last = _add_months(current, -MONTHS_BACK_MAX), _add_months(current, months_ahead + 1)
    created = []
    for partitioned in tables:
        wanted = {_add_months(current, n) for n in range(months_ahead + 1)}
        default = partitioned.default
        if default is not None:
            wanted |= set(_months_in(session, partitioned, default.name, first, last))
        for month in sorted(wanted):
            end = _add_months(month, 1)
            if any(_overlaps(p, month, end) for p in partitioned.monthly):
                continue
            name = f"{partitioned.table}_p{month:%Y_%m}"
            if planning:
                moved = _rows_between(session, partitioned, default, month, end)
            else:
                moved = _create(session, partitioned, name, month, end)
            created.append(Created(partitioned.table, name, month, end, moved))
    return created


def partitions_before(
    session: Session, table: str, cutoff: datetime, *, exact: object = True
) -> list[Partition]:
    """The monthly partitions of ``table`` that end at or before ``cutoff`` (all
    their rows are older), oldest first, their rows counted (``exact``, the
    default) or estimated; empty when ``table`` is not partitioned (yet)."""
    name, moment, counted = (
        _partitionable(table, "table"),
        as_utc(cutoff),
        require_flag(exact, "exact"),
    )
    return [
        replace(p, rows=_count(session, p.name)) if counted else p
        for t in list_partitions(session)
        if t.table == name
        for p in t.monthly
        if p.end is not None and p.end <= moment
    ]


def straddling(session: Session, table: str, cutoff: datetime) -> list[str]:
    """The partitions of ``table`` that hold rows on both sides of ``cutoff``
    (the month it falls in) and the default partition: where rows older than
    ``cutoff`` are deleted row by row."""
    name, moment = _partitionable(table, "table"), as_utc(cutoff)
    return [
        p.name
        for t in list_partitions(session)
        if t.table == name
        for p in t.partitions
        if p.is_default or _overlaps(p, moment, moment)
    ]


def drop_partition(session: Session, partition: Partition) -> int:
    """Detach ``partition`` (as :func:`list_partitions` gives it) from its table and
    drop it; its rows, counted just before (not under the parent's lock, which holds
    up every writer). One already gone (dropped by another run; none on SQLite): 0."""
    if not isinstance(partition, Partition):
        raise InvalidInput("partition: give a monthly partition that list_partitions lists")
    _partitionable(partition.table, "partition")
    if session.get_bind().dialect.name != "postgresql":
        return 0
    _take_turns(session)  # first: a run that held the turn may have dropped it meanwhile
    exists, parent = session.execute(text(PARENT), {"name": partition.name}).one()
    if not exists:
        return 0
    if parent != partition.table or partition.name == f"{partition.table}_default":
        raise InvalidInput(f"partition: {shown(partition.name)} is no monthly one of {parent}")
    table, name = _quoted(session, partition.table), _quoted(session, partition.name)
    rows = _count(session, partition.name)
    with _lock_timeout(session, partition.table):
        session.execute(text(f"ALTER TABLE {table} DETACH PARTITION {name}"))
    session.execute(text(f"DROP TABLE {name}"))
    return rows


def drop_before(
    session: Session,
    cutoff: datetime,
    *,
    tables: Iterable[str] | None = None,
    dry_run: object = False,
) -> list[Partition]:
    """Detach and drop the monthly partitions of ``tables`` (default: every
    partitioned log table) that end at or before ``cutoff``; the partitions
    dropped (``dry_run``: that would be), with their rows counted before.
    In the caller's transaction: nothing is dropped until it commits."""
    planning = require_flag(dry_run, "dry_run")
    names = list(PARTITIONED) if tables is None else require_items(tables, "tables")
    names = [_partitionable(name, "tables") for name in names]
    found = [
        p for table in names for p in partitions_before(session, table, cutoff, exact=planning)
    ]
    if planning:
        return found
    return [replace(p, rows=drop_partition(session, p)) for p in found]


# --- helpers ---------------------------------------------------------------------


def _create(
    session: Session, partitioned: PartitionedTable, name: str, start: datetime, end: datetime
) -> int:
    """Make ``name`` a plain table shaped as the parent, move the default
    partition's rows of [start, end) into it, attach it; the rows moved. Moving
    rows locks the parent table until the transaction ends (see the module doc)."""
    exists = session.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name})
    if exists:
        raise Conflict(
            f"a table named {name} exists but is not the partition of {partitioned.table} "
            f"for {start:%Y-%m}: rename or drop it, then run pfd-db maintain again"
        )
    parent, table = _quoted(session, partitioned.table), _quoted(session, name)
    bounds = {"start": start, "end": end}
    default = partitioned.default
    moving = default is not None and _rows_between(session, partitioned, default, start, end) > 0
    moved = 0
    lower, upper = session.execute(
        text("SELECT format('%L', CAST(:start AS timestamptz)), "
             "format('%L', CAST(:end AS timestamptz))"),
        bounds,
    ).one()  # fmt: skip
    with _lock_timeout(session, partitioned.table):
        if moving:
            # Rows change partition: readers wait for the commit rather than see
            # the moment between (ATTACH alone lets them read on).
            session.execute(text(f"LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE"))
        session.execute(
            text(f"CREATE TABLE {table} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        )
        if moving and default is not None:
            moved = _move(session, partitioned, default, table, lower, upper, bounds)
        attach = f"ATTACH PARTITION {table} FOR VALUES FROM ({lower}) TO ({upper})"
        session.execute(text(f"ALTER TABLE {parent} {attach}"))
        if moving:
            session.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {BOUNDS}"))
    return moved


def _move(
    session: Session,
    partitioned: PartitionedTable,
    default: Partition,
    table: str,
    lower: str,
    upper: str,
    bounds: dict[str, datetime],
) -> int:
    """Move the default partition's rows between the bounds into ``table`` (not yet
    attached), which first gets a CHECK of those bounds: then ATTACH need not read
    the rows again to prove they belong (the caller drops the CHECK after)."""
    key = _quoted(session, partitioned.column)
    session.execute(
        text(
            f"ALTER TABLE {table} ADD CONSTRAINT {BOUNDS} "
            f"CHECK ({key} IS NOT NULL AND {key} >= {lower} AND {key} < {upper})"
        )
    )
    columns = ", ".join(_quoted(session, c) for c in _columns(session, partitioned.table))
    result = session.execute(
        text(
            f"WITH moved AS (DELETE FROM {_quoted(session, default.name)} "  # noqa: S608
            f"WHERE {key} >= :start AND {key} < :end RETURNING {columns}) "
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM moved"
        ),
        bounds,
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _months_in(
    session: Session, partitioned: PartitionedTable, default: str, first: datetime, last: datetime
) -> list[datetime]:
    """The months between ``first`` and ``last`` that rows of the default partition
    belong to."""
    key = _quoted(session, partitioned.column)
    months = session.scalars(
        text(
            f"SELECT DISTINCT date_trunc('month', {key}, 'UTC') "  # noqa: S608
            f"FROM {_quoted(session, default)} WHERE {key} >= :first AND {key} < :last"
        ),
        {"first": first, "last": last},
    )
    return [month.astimezone(UTC) for month in months]


def _rows_between(
    session: Session,
    partitioned: PartitionedTable,
    default: Partition | None,
    start: datetime,
    end: datetime,
) -> int:
    """The rows of the default partition in [start, end)."""
    if default is None:
        return 0
    key, name = _quoted(session, partitioned.column), _quoted(session, default.name)
    query = f"SELECT count(*) FROM {name} WHERE {key} >= :start AND {key} < :end"  # noqa: S608
    return int(session.scalar(text(query), {"start": start, "end": end}) or 0)


def _columns(session: Session, table: str) -> list[str]:
    query = (
        "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:table AS regclass) "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    )
    return list(session.scalars(text(query), {"table": table}))


def _count(session: Session, name: str) -> int:
    quoted = _quoted(session, name)
    return int(session.scalar(text(f"SELECT count(*) FROM {quoted}")) or 0)  # noqa: S608


def _take_turns(session: Session) -> None:
    """Wait for any other partition change to commit (a transaction-level lock)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})


@contextmanager
def _lock_timeout(session: Session, table: str) -> Iterator[None]:
    """Within the block, a statement waits at most :data:`LOCK_TIMEOUT` for a lock
    (transaction-local, as every setting pfd-db changes); past it, :class:`Conflict`
    naming ``table``."""
    before = session.scalar(text("SELECT current_setting('lock_timeout')"))
    setting = text("SELECT set_config('lock_timeout', :value, true)")
    session.execute(setting, {"value": LOCK_TIMEOUT})
    try:
        yield
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise Conflict(
            f"{table} is busy: no lock on it within {LOCK_TIMEOUT} (a long query or "
            "transaction holds it); nothing was changed, run the command again later"
        ) from None
    session.execute(setting, {"value": before})


def _partitionable(table: object, field: str) -> str:
    if not isinstance(table, str) or table not in PARTITIONED:
        raise InvalidInput(
            f"{field}: only {', '.join(PARTITIONED)} are partitioned (got {shown(table)})"
        )
    return table


def _quoted(session: Session, name: str) -> str:
    return session.get_bind().dialect.identifier_preparer.quote(name)


def _overlaps(partition: Partition, start: datetime, end: datetime) -> bool:
    lower, upper = partition.start, partition.end
    return lower is not None and upper is not None and lower < end and start < upper


def _oldest_first(partition: Partition) -> tuple[bool, datetime]:
    return (partition.is_default, partition.start or datetime.max.replace(tzinfo=UTC))


def _add_months(month: datetime, months: int) -> datetime:
    index = month.year * 12 + month.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
