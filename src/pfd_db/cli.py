"""The ``pfd-db`` operator command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, inspect, select

from pfd_db.config import get_settings
from pfd_db.engine import make_engine, mask_password, verify_connection
from pfd_db.errors import PfdDbError
from pfd_db.models import Base

app = typer.Typer(
    help="Operate a pfd-db database: create, inspect and maintain it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (default: PFD_DB_URL, DATABASE_URL, ./pfd.db)."),
]


@contextmanager
def connected(url: str | None) -> Iterator[Engine]:
    """An engine for ``url`` that is reachable; expected failures exit 2 with one line."""
    engine = None
    try:
        engine = make_engine(url)
        verify_connection(engine)
        yield engine
    except PfdDbError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        if engine is not None:
            engine.dispose()


@app.command()
def init(url: UrlOption = None) -> None:
    """Create the schema in the database (./pfd.db by default)."""
    with connected(url) as engine:
        Base.metadata.create_all(engine)
        console.print(f"schema ready in {mask_password(engine.url)}")


@app.command()
def status(url: UrlOption = None) -> None:
    """Show the database, its server, row counts per table and the pool settings."""
    with connected(url) as engine:
        settings = get_settings()
        with engine.connect() as conn:
            version = conn.dialect.server_version_info or ()
            present = set(inspect(conn).get_table_names())
            counts = {
                name: conn.scalar(select(func.count()).select_from(table))
                for name, table in sorted(Base.metadata.tables.items())
                if name in present
            }
        console.print(f"[bold]database[/bold]  {mask_password(engine.url)}", highlight=False)
        console.print(
            f"[bold]dialect[/bold]   {engine.dialect.name} "
            f"{'.'.join(str(part) for part in version)}",
            highlight=False,
        )
        table = Table("table", "rows", title=f"{len(counts)} of {len(Base.metadata.tables)} tables")
        for name, count in counts.items():
            table.add_row(name, str(count))
        console.print(table)
        console.print(
            f"[bold]pool[/bold]      size {settings.pool_size}, overflow {settings.max_overflow}, "
            f"timeout {settings.pool_timeout:g} s, recycle {settings.pool_recycle} s, "
            f"pre-ping {'on' if settings.pool_pre_ping else 'off'}",
            highlight=False,
        )


def main() -> None:  # pragma: no cover - the console script
    app()
