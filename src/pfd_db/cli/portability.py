"""Moving data: ``pfd-db copy``, ``backup``, ``restore`` and ``import-legacy``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pfd_db.cli.database import CREATE, READ, database
from pfd_db.cli.options import JsonOption, UrlOption, YesOption
from pfd_db.cli.output import confirm_or_refuse, console, print_json, say
from pfd_db.cli.progress_bar import progress_bar

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pfd_db.portability.backup import BackupReport
    from pfd_db.portability.copy import CopyReport
    from pfd_db.portability.legacy import LegacyReport

app = typer.Typer()

ReplaceOption = Annotated[
    bool,
    typer.Option("--replace", help="Delete every row of the target first (asks, or --yes)."),
]
BatchOption = Annotated[
    int, typer.Option("--batch-size", min=100, max=100_000, help="Rows read and written at once.")
]


@app.command("copy")
def copy_command(
    to: Annotated[str, typer.Option("--to", help="URL of the database to copy into.")],
    url: UrlOption = None,
    replace: ReplaceOption = False,
    yes: YesOption = False,
    batch_size: BatchOption = 20_000,
    as_json: JsonOption = False,
) -> None:
    """Copy every table into an empty database: SQLite to PostgreSQL or back.

    The target (--to) is migrated to head first; ids are kept, PostgreSQL
    sequences set past them, the search index built, and each table is read
    back and compared with the source (rows and checksum). Writers may keep
    working on the source: the copy is one snapshot of it. A copy cut short
    leaves the target marked unfinished: run it again with --replace.
    """
    from pfd_db.portability import filling
    from pfd_db.portability.copy import copy_database, require_head, shown

    with database(url, READ) as source:
        require_head(source)
        filling.require_finished(source, shown(source))  # before the target is created
        with database(to, CREATE) as destination:
            confirm_replace(destination, replace, yes)
            with progress_bar("copy") as progress:
                report = copy_database(
                    source, destination, replace=replace, batch_size=batch_size, progress=progress
                )
            names = (_shown(source), _shown(destination))
    if as_json:
        print_json(copy_json(report, *names))
        return
    show_copy(report, *names)


@app.command("backup")
def backup_command(
    path: Annotated[Path, typer.Argument(help="The new file to write.")],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a consistent backup while writers keep working.

    SQLite: the online backup API (and the instance key file beside it).
    PostgreSQL: pg_dump --format=custom when it is on the PATH, otherwise a
    pfd-db copy into a SQLite file; the summary says which.
    """
    from pfd_db.portability.backup import backup

    with database(url, READ) as source, progress_bar("backup") as progress:
        report = backup(source, path, progress=progress)
    if as_json:
        print_json(backup_json(report))
        return
    say(f"backup: {report.method}")
    show_backup(report)


@app.command("restore")
def restore_command(
    path: Annotated[Path, typer.Argument(help="A backup file (SQLite or pg_dump archive).")],
    url: UrlOption = None,
    replace: ReplaceOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Restore a backup made by `pfd-db backup` into an empty database (at head after)."""
    from pfd_db.cli.database import target_of
    from pfd_db.portability.backup import require_restorable, restore, verify_backup

    # Refused before the target is created: not a whole backup, or one that cannot
    # go into this database (a pg_dump archive into SQLite, or without pg_restore).
    kind, _ = verify_backup(path)
    require_restorable(path, kind, target_of(url).url.get_backend_name())
    with database(url, CREATE) as destination:
        confirm_replace(destination, replace, yes)
        with progress_bar("restore") as progress:
            report = restore(path, destination, replace=replace, progress=progress)
    if as_json:
        print_json(backup_json(report))
        return
    say(f"restored with {report.method}")
    show_backup(report)


@app.command("import-legacy")
def import_legacy_command(
    from_url: Annotated[
        str, typer.Option("--from", help="URL of the LSTM_PFD dashboard database (only read).")
    ],
    url: UrlOption = None,
    source_timezone: Annotated[
        str,
        typer.Option(
            "--source-timezone",
            help="Zone of the legacy server's clock, which stamped api_keys and api_usage "
            "(IANA name, e.g. Europe/Paris).",
        ),
    ] = "UTC",
    default_role: Annotated[
        str, typer.Option("--default-role", help="Role for legacy users whose role is 'user'.")
    ] = "viewer",
    replace: ReplaceOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Bring an LSTM_PFD dashboard database (SQLite or PostgreSQL) into pfd-db.

    Rows are converted (enum values, UTC times, roles, encrypted TOTP secrets,
    hashed session tokens), dangling references skipped, tag counts
    recomputed and the search index built; legacy API keys come in revoked,
    backup codes are dropped. The legacy database is never written. Prints,
    per table, rows read, imported, converted and skipped with the reasons.
    """
    from pfd_db.cli.database import INSPECT, opened, target_of, url_in_settings
    from pfd_db.cli.health import check_key_file, ensure_instance_key
    from pfd_db.config import get_settings
    from pfd_db.crypto import key_file_path
    from pfd_db.errors import DatabaseUnavailable
    from pfd_db.portability.legacy import check_options, check_source, import_legacy

    check_options(source_timezone, default_role)  # before any file is opened or created
    legacy = target_of(from_url)
    if legacy.path is not None and not legacy.path.exists():
        raise DatabaseUnavailable(f"no legacy database at {legacy.path}: check --from")
    with opened(legacy, INSPECT) as source:
        with url_in_settings(url):  # the key the import will use: the target's
            check_key_file()
            to_create = None if get_settings().secret_key is not None else key_file_path()
            # Not LSTM_PFD, or secrets and no key: refused before the target or key exist.
            check_source(source, key_to_come=to_create is not None and not to_create.exists())
        with database(url, CREATE) as destination:
            confirm_replace(destination, replace, yes)
            ensure_instance_key(quiet=as_json)
            with progress_bar("import") as progress:
                report = import_legacy(
                    source,
                    destination,
                    source_timezone=source_timezone,
                    default_role=default_role,
                    replace=replace,
                    progress=progress,
                )
    if as_json:
        print_json(legacy_json(report))
        return
    show_legacy(report, legacy.shown)


# --- shared ------------------------------------------------------------------------


def confirm_replace(destination: Engine, replace: bool, yes: bool) -> None:
    """Ask before --replace deletes rows (nothing to ask when the target is empty)."""
    from pfd_db.portability import filling

    if not replace:
        return
    if filling.tables_with_rows(destination) or filling.unfinished_copy(destination):
        confirm_or_refuse(
            f"Delete every row of {_shown(destination)}?",
            yes,
            "--replace deletes every row of the target",
        )


def _shown(engine: Engine) -> str:
    """A SQLite file by its path (not the URI it is opened with), a server by its
    URL without the password."""
    from pfd_db.target import locate

    return locate(engine.url).described


def _size(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} bytes"  # pragma: no cover - the loop always returns


def show_copy(report: CopyReport, source: str, destination: str) -> None:
    from rich.table import Table

    table = Table("table", "rows", "checksum", "", title=f"{source} -> {destination}")
    for copied in report.tables:
        table.add_row(
            copied.name,
            str(copied.source.rows),
            copied.source.checksum,
            "ok" if copied.ok else "DIFFERS",
        )
    console.print(table)
    say(
        f"copied {report.rows} rows in {len(report.tables)} tables in {report.seconds:.1f} s; "
        "every table read back and matching; ids kept, sequences and search index ready"
    )
    if report.key_file is not None:
        say(f"instance key: copied to {report.key_file} (mode 0600)")
    else:
        say("secrets are copied as stored: use the same instance key (PFD_DB_SECRET_KEY) there")


def copy_json(report: CopyReport, source: str, destination: str) -> dict[str, Any]:
    return {
        "source": source,
        "target": destination,
        "rows": report.rows,
        "seconds": round(report.seconds, 3),
        "key_file": str(report.key_file) if report.key_file else None,
        "tables": [
            {"name": t.name, "rows": t.source.rows, "checksum": t.source.checksum, "ok": t.ok}
            for t in report.tables
        ],
    }


def show_backup(report: BackupReport) -> None:
    from rich.table import Table

    if report.tables:
        table = Table("table", "rows", title=str(report.path))
        for name, rows in report.tables.items():
            table.add_row(name, str(rows))
        console.print(table)
        say(f"{report.rows} rows in {len(report.tables)} tables, {_size(report.size)}")
    else:
        say(f"{len(report.dumped)} tables dumped to {report.path}, {_size(report.size)}")
    if report.key_file is not None:
        say(f"instance key: copied to {report.key_file} (mode 0600); keep it with the backup")


def backup_json(report: BackupReport) -> dict[str, Any]:
    return {
        "method": report.method,
        "path": str(report.path),
        "bytes": report.size,
        "rows": report.rows,
        "tables": report.tables,
        "dumped": report.dumped,
        "key_file": str(report.key_file) if report.key_file else None,
    }


def show_legacy(report: LegacyReport, source: str) -> None:
    from rich.table import Table

    table = Table("table", "read", "imported", "converted", "skipped", title=f"from {source}")
    for t in report.tables:
        if t.in_source:
            table.add_row(
                t.name, str(t.read), str(t.imported), str(t.converted), str(t.skipped_rows)
            )
        else:
            table.add_row(t.name, "-", "-", "-", "-", style="dim")
    console.print(table)
    for t in report.tables:
        for reason, count in sorted(t.skipped.items()):
            say(f"  {t.name}: skipped {count}: {reason}")
    for t in report.tables:
        for change, count in sorted(t.changes.items()):
            say(f"  {t.name}: converted {count}: {change}")
    read = sum(t.read for t in report.tables)
    imported = sum(t.imported for t in report.tables)
    skipped = sum(t.skipped_rows for t in report.tables)
    verdict = "every row accounted for" if report.accounted else "ROWS UNACCOUNTED FOR"
    say(f"{verdict}: {read} read = {imported} imported + {skipped} skipped")
    missing = [t.name for t in report.tables if not t.in_source]
    if missing:
        say(f"not in the legacy database (left empty): {', '.join(missing)}")


def legacy_json(report: LegacyReport) -> dict[str, Any]:
    return {
        "accounted": report.accounted,
        "tables": [
            {
                "name": t.name,
                "in_source": t.in_source,
                "read": t.read,
                "imported": t.imported,
                "converted": t.converted,
                "skipped": dict(t.skipped),
                "changes": dict(t.changes),
            }
            for t in report.tables
        ],
    }
