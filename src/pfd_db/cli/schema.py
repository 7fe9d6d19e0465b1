"""Schema commands: migrate, downgrade, current, history, check, seed, init, status."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session

from pfd_db import migrations
from pfd_db.cli.common import UrlOption, console, database, err_console, fail
from pfd_db.config import get_settings
from pfd_db.crypto import create_key_file, default_key_path
from pfd_db.engine import make_engine, mask_password
from pfd_db.errors import MigrationError, PfdDbError
from pfd_db.models import Base
from pfd_db.seed import SeedReport, seed

app = typer.Typer()


def require_head(engine: Engine) -> None:
    state = migrations.state(engine)
    if not state.at_head:
        raise MigrationError(
            f"the database is at {state.current or 'no revision'}, not at head {state.head}: "
            "run `pfd-db migrate` first"
        )


@app.command()
def migrate(
    url: UrlOption = None,
    to: Annotated[str, typer.Option("--to", help="Target revision.")] = "head",
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it (offline).")
    ] = False,
    adopt: Annotated[
        bool,
        typer.Option("--adopt", help="Stamp a database made without migrations, if it matches."),
    ] = False,
) -> None:
    """Upgrade the schema to head (or --to REV). Running it again is a no-op."""
    if sql:
        try:
            print(migrations.offline_sql(url or get_settings().url, to), end="")
        except PfdDbError as exc:
            raise fail(str(exc)) from None
        return
    with database(url) as engine:
        if adopt:
            after = migrations.adopt(engine)
            console.print(f"adopted: schema matches the models, stamped at {after.current}")
            return
        before = migrations.state(engine)
        after = migrations.upgrade(engine, to)
        if before.current == after.current:
            console.print(f"already at {after.current}: nothing to do")
        else:
            console.print(f"upgraded from {before.current or 'empty'} to {after.current}")


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' drops everything.")],
    url: UrlOption = None,
) -> None:
    """Downgrade the schema to REVISION."""
    with database(url) as engine:
        before = migrations.state(engine)
        after = migrations.downgrade(engine, revision)
        console.print(f"downgraded from {before.current} to {after.current or 'base'}")


@app.command()
def current(url: UrlOption = None) -> None:
    """Print the database's revision."""
    with database(url) as engine:
        state = migrations.state(engine)
        mark = "(head)" if state.at_head else f"(head is {state.head})"
        console.print(f"{state.current or 'none'} {mark}")


@app.command()
def history(url: UrlOption = None) -> None:
    """List the migration revisions, oldest first; the database's own is marked."""
    applied = applied_revision(url)
    table = Table("revision", "down revision", "message", "")
    for rev in migrations.history():
        mark = "current" if rev.revision == applied else ""
        table.add_row(rev.revision, rev.down_revision or "-", rev.message, mark)
    console.print(table)


def applied_revision(url: str | None) -> str | None:
    """The database's revision, or None when it cannot be read (history needs none)."""
    engine = None
    try:
        engine = make_engine(url)
        return migrations.state(engine).current
    except PfdDbError:
        return None
    finally:
        if engine is not None:
            engine.dispose()


@app.command()
def check(url: UrlOption = None) -> None:
    """Exit 0 when the database is reachable, at head and without schema drift."""
    with database(url) as engine:
        state = migrations.state(engine)
        if not state.at_head:
            raise fail(f"not at head: database at {state.current or 'none'}, head {state.head}", 1)
        differences = migrations.schema_drift(engine)
    if differences:
        for difference in differences:
            err_console.print(f"  - {difference}")
        raise fail(f"schema drift: {len(differences)} differences from the models", 3)
    console.print(f"ok: reachable, at head {state.head}, no drift")


@app.command("seed")
def seed_command(url: UrlOption = None) -> None:
    """Create the initial data (admin user, preferences, Default dataset) if missing."""
    with database(url) as engine:
        require_head(engine)
        report_seed(run_seed(engine))


def run_seed(engine: Engine) -> SeedReport:
    with Session(engine) as session, session.begin():
        return seed(session)


def report_seed(report: SeedReport) -> None:
    if not report.changed:
        console.print("seed: everything already present, nothing changed")
        return
    for item in report.created:
        console.print(f"seed: created {item}")
    if report.admin_password is not None:
        console.print(
            f"[bold yellow]admin password (shown once, store it now):[/bold yellow] "
            f"{report.admin_password}"
        )


@app.command()
def init(url: UrlOption = None) -> None:
    """Migrate to head, then seed: a working database (./pfd.db by default)."""
    with database(url) as engine:
        before = migrations.state(engine)
        after = migrations.upgrade(engine)
        if before.current == after.current:
            console.print(f"schema: already at {after.current}")
        else:
            console.print(f"schema: upgraded from {before.current or 'empty'} to {after.current}")
        report_seed(run_seed(engine))
        ensure_instance_key(url)
        console.print(f"ready: {mask_password(engine.url)}")


def ensure_instance_key(url: str | None) -> None:
    """Create the key file beside a SQLite database when no instance key is configured."""
    settings = get_settings()
    if settings.secret_key is not None or settings.secret_key_file is not None:
        return
    path = default_key_path(url or settings.url)
    if path is None:
        err_console.print(
            "[yellow]warning:[/yellow] no instance key configured; set PFD_DB_SECRET_KEY "
            "(2FA secrets and backup codes need it)"
        )
    elif create_key_file(path):
        console.print(f"instance key: created {path} (mode 0600); back it up with the database")


@app.command()
def status(url: UrlOption = None) -> None:
    """Show the database, its server and revision, row counts per table and pool settings."""
    with database(url) as engine:
        state = migrations.state(engine)
        with engine.connect() as conn:
            version = ".".join(str(part) for part in conn.dialect.server_version_info or ())
            present = set(inspect(conn).get_table_names())
            counts = {
                name: conn.scalar(select(func.count()).select_from(table))
                for name, table in sorted(Base.metadata.tables.items())
                if name in present
            }
    settings = get_settings()
    console.print(f"[bold]database[/bold]  {mask_password(engine.url)}")
    console.print(f"[bold]dialect[/bold]   {engine.dialect.name} {version}")
    console.print(f"[bold]revision[/bold]  {state.current or 'none'} (head {state.head})")
    table = Table("table", "rows", title=f"{len(counts)} of {len(Base.metadata.tables)} tables")
    for name, count in counts.items():
        table.add_row(name, str(count))
    console.print(table)
    console.print(
        f"[bold]pool[/bold]      size {settings.pool_size}, overflow {settings.max_overflow}, "
        f"timeout {settings.pool_timeout:g} s, recycle {settings.pool_recycle} s, "
        f"pre-ping {'on' if settings.pool_pre_ping else 'off'}"
    )
