"""``pfd-db clean``: remove old rows of the big log tables.

See :mod:`pfd_db.store.ops.retention`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pfd_db.cli.database import READ, WRITE, database
from pfd_db.cli.options import JsonOption, UrlOption, YesOption
from pfd_db.cli.output import confirm_or_refuse, console, print_json, say

if TYPE_CHECKING:
    from pfd_db.store.ops.partitions import Created
    from pfd_db.store.ops.retention import Removed

app = typer.Typer()

AGE = re.compile(r"(\d{1,6})([mhdw]?)")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "days"}


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m`` (or a bare number of days) as a timedelta."""
    from pfd_db.errors import InvalidInput

    found = AGE.fullmatch(text.strip().lower())
    if found is None or int(found[1]) == 0:
        raise InvalidInput(
            f"--older-than takes a positive age like 90d, 12h, 2w or 30m (got {text!r})"
        )
    return timedelta(**{UNITS[found[2]]: int(found[1])})


@app.command("clean")
def clean(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Remove rows older than this (90d, 12h, 2w, 30m) from every table named; "
            "default: each table's PFD_DB_RETENTION_*_DAYS.",
        ),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            help="A table to clean (repeat for several); default: every log table.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            max=100_000,
            help="Rows deleted per transaction (default: PFD_DB_RETENTION_BATCH_SIZE).",
        ),
    ] = None,
    yes: YesOption = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove old rows from the log tables, in batches, each committed on its own.

    Request logs, API-key usage, finished e-mail and webhook deliveries, login
    history, ended sessions and the audit log; never experiments, curves, users
    or keys. Writers keep working meanwhile; a clean cut short leaves every
    batch it committed removed, and running it again finishes. On PostgreSQL the
    partitioned log tables lose whole monthly partitions that lie before the
    cutoff, and the coming months' partitions are created first (as pfd-db
    maintain does). --dry-run only counts, and names the partitions it would
    drop (on a read-only connection).
    """
    from pfd_db.cli.maintain import ensure
    from pfd_db.cli.progress_bar import progress_bar
    from pfd_db.store.ops.partitions import MONTHS_AHEAD
    from pfd_db.store.ops.retention import TABLES, check_arguments, clean

    age = None if older_than is None else parse_age(older_than)
    named = TABLES if not table else tuple(table)
    check_arguments(tables=named, older_than=age, batch_size=batch_size)
    with database(url, READ if dry_run else WRITE) as engine:
        if not dry_run:
            confirm_or_refuse(
                f"Remove old rows from {', '.join(named)}?",
                yes,
                "clean removes rows for good",
            )
        created = ensure(engine, MONTHS_AHEAD, dry_run)
        with progress_bar("clean") as progress:
            report = clean(
                engine,
                older_than=age,
                tables=named,
                dry_run=dry_run,
                batch_size=batch_size,
                progress=progress,
            )
    if as_json:
        print_json(clean_json(report, dry_run, created))
        return
    show_clean(report, dry_run, created)


def show_clean(report: list[Removed], dry_run: bool, created: list[Created] | None = None) -> None:
    from rich.table import Table

    from pfd_db.cli.maintain import show_created

    show_created(created or [], dry_run)
    verb = "would remove" if dry_run else "removed"
    partitioned = any(removed.partitions for removed in report)
    shown = Table("table", "older than", verb)
    if partitioned:
        shown.add_column("partitions " + ("to drop" if dry_run else "dropped"))
    for removed in report:
        cutoff = removed.cutoff.isoformat(timespec="seconds")
        note = " (kept longer: pfd-db still reads them)" if removed.kept_longer else ""
        dropped = [", ".join(p.name for p in removed.partitions)] if partitioned else []
        shown.add_row(removed.table, cutoff + note, str(removed.rows), *dropped)
    console.print(shown)
    total = sum(removed.rows for removed in report)
    partitions = sum(len(removed.partitions) for removed in report)
    if dry_run:
        whole = f" ({partitions} partitions to drop whole)" if partitions else ""
        say(f"dry run: {total} rows would be removed{whole}; nothing was")
    else:
        whole = f" ({partitions} partitions dropped whole)" if partitions else ""
        say(f"removed {total} rows from {len(report)} tables{whole}")


def clean_json(
    report: list[Removed], dry_run: bool, created: list[Created] | None = None
) -> dict[str, Any]:
    from pfd_db.cli.maintain import created_json, partition_json

    return {
        "dry_run": dry_run,
        "rows": sum(removed.rows for removed in report),
        "tables": [
            {
                "table": removed.table,
                "cutoff": removed.cutoff,
                "rows": removed.rows,
                "kept_longer": removed.kept_longer,
                "partitions_dropped": [partition_json(p) for p in removed.partitions],
            }
            for removed in report
        ],
        "partitions_created": created_json(created or []),
    }
