"""``pfd-db maintain``: the upkeep a scheduler runs: the log tables' monthly
partitions created ahead (PostgreSQL), then the traffic rollups brought up to date.

See :mod:`pfd_db.store.ops.partitions` (``pfd-db clean`` runs the same step first)
and :mod:`pfd_db.store.ops.rollup_schedule`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pfd_db.cli.database import READ, WRITE, database
from pfd_db.cli.options import JsonOption, UrlOption
from pfd_db.cli.output import console, print_json, say

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pfd_db.store.ops.partitions import Created, Partition, PartitionedTable
    from pfd_db.store.ops.rollup_schedule import Refreshed

app = typer.Typer()

CHUNK = 10_000
"""Periods a rollup refresh computes per transaction."""

AheadOption = Annotated[
    int,
    typer.Option(
        "--ahead",
        min=0,
        max=36,
        help="Months after the current one to create partitions for.",
    ),
]


@app.command("maintain")
def maintain(
    ahead: AheadOption = 3,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the partitions it would create; create nothing."),
    ] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create the coming months' partitions of the log tables and bring the
    traffic rollups up to date; run it from a scheduler.

    PostgreSQL: api_request_logs, api_usage, system_logs and login_history are
    partitioned by month. This creates the partitions of the current month and
    --ahead months after it, and of any month whose rows wait in a table's
    default partition (moving them in). On SQLite, or when the tables are not
    partitioned, there are none to create. Then, on both, the hourly, daily and
    weekly rollups are refreshed: the periods with new or late requests are
    computed again. Idempotent, safe beside writers: run it every few minutes
    to daily (cron, a systemd timer). --dry-run only reads, and refreshes nothing.
    """
    with database(url, READ if dry_run else WRITE) as engine:
        created = ensure(engine, ahead, dry_run)
        tables = listed(engine)
        dialect = engine.dialect.name
        refreshed = [] if dry_run else refresh_rollups(engine)
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "dialect": dialect,
                "created": created_json(created),
                "moved": sum(c.moved for c in created),
                "tables": tables_json(tables),
                "rollups": [rollup_json(r) for r in refreshed],
            }
        )
        return
    show_created(created, dry_run)
    for done in refreshed:
        say(describe_rollup(done))
    if not tables:
        say(
            "no partitions to create: no log table is partitioned"
            + (" (SQLite)" if dialect == "sqlite" else " (run pfd-db migrate to partition them)")
        )
        return
    verb = "would create" if dry_run else "created"
    moved = sum(c.moved for c in created)
    say(
        f"{verb} {len(created)} partitions"
        + (f", moving {moved} rows out of the default partitions" if moved else "")
        if created
        else "every partition needed exists: nothing to create"
    )


def ensure(engine: Engine, ahead: int, dry_run: bool) -> list[Created]:
    """Run :func:`~pfd_db.store.ops.partitions.ensure_partitions` in a transaction
    of its own (committed unless ``dry_run``)."""
    from sqlalchemy.orm import Session

    from pfd_db.store.ops.partitions import ensure_partitions

    with Session(engine) as session:
        created = ensure_partitions(session, ahead=ahead, dry_run=dry_run)
        if not dry_run:
            session.commit()
    return created


def refresh_rollups(engine: Engine) -> list[Refreshed]:
    """Refresh each period type's rollups, a transaction per run of at most
    ``CHUNK`` periods, until each is complete; the last run of each type."""
    from sqlalchemy.orm import Session

    from pfd_db.models.enums import Aggregation
    from pfd_db.store.ops.rollup_schedule import refresh

    done = []
    for period in Aggregation:
        with Session(engine) as session:
            while True:
                last = refresh(session, period, limit=CHUNK)
                session.commit()
                if last.complete:
                    break
        done.append(last)
    return done


def describe_rollup(done: Refreshed) -> str:
    """One period type's refresh, as a line of text."""
    stale = f" ({done.stale} reopened by late requests)" if done.stale else ""
    through = done.computed_through.isoformat() if done.computed_through else "no requests yet"
    return f"rollups {done.period}: {len(done.computed)} periods computed{stale}, through {through}"


def rollup_json(done: Refreshed) -> dict[str, Any]:
    """One period type's refresh, for --json."""
    return {
        "period": done.period,
        "computed": len(done.computed),
        "stale": done.stale,
        "written": done.written,
        "computed_through": done.computed_through,
    }


def listed(engine: Engine) -> list[PartitionedTable]:
    """The partitioned log tables and their partitions (rows estimated)."""
    from sqlalchemy.orm import Session

    from pfd_db.store.ops.partitions import list_partitions

    with Session(engine) as session:
        return list_partitions(session)


def show_created(created: list[Created], dry_run: bool) -> None:
    """The partitions created (or that would be), as a table; nothing when none."""
    if not created:
        return
    from rich.table import Table

    shown = Table("table", "partition", "from", "to", "rows moved in")
    for partition in created:
        shown.add_row(
            partition.table,
            partition.name + (" (would create)" if dry_run else ""),
            partition.start.date().isoformat(),
            partition.end.date().isoformat(),
            str(partition.moved),
        )
    console.print(shown)


def created_json(created: list[Created]) -> list[dict[str, Any]]:
    return [
        {
            "table": c.table,
            "partition": c.name,
            "from": c.start,
            "to": c.end,
            "moved": c.moved,
        }
        for c in created
    ]


def partition_json(partition: Partition) -> dict[str, Any]:
    """One partition for --json: its name, bounds and rows."""
    return {
        "partition": partition.name,
        "from": partition.start,
        "to": partition.end,
        "rows": partition.rows,
    }


def tables_json(tables: list[PartitionedTable]) -> list[dict[str, Any]]:
    """Each partitioned table: its key, its partitions with bounds and rows (estimated)."""
    return [
        {
            "table": t.table,
            "column": t.column,
            "rows": t.rows,
            "partitions": [partition_json(p) for p in t.partitions],
        }
        for t in tables
    ]
