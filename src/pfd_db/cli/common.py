"""What every pfd-db command shares: consoles, the --url option, one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from pfd_db.engine import make_engine
from pfd_db.errors import PfdDbError, SchemaDrift

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (default: PFD_DB_URL, DATABASE_URL, ./pfd.db)."),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as one error line; the Exit to raise with ``code``."""
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@contextmanager
def database(url: str | None) -> Iterator[Engine]:
    """An engine for ``url``; pfd-db's expected errors become one line and exit 2."""
    engine = None
    try:
        engine = make_engine(url)
        yield engine
    except SchemaDrift as exc:
        for difference in exc.differences:
            err_console.print(f"  - {difference}")
        raise fail(str(exc)) from None
    except PfdDbError as exc:
        raise fail(str(exc)) from None
    finally:
        if engine is not None:
            engine.dispose()


@contextmanager
def transaction(url: str | None) -> Iterator[Session]:
    """A session on ``url`` that commits when the block succeeds; errors as in :func:`database`."""
    with database(url) as engine, Session(engine) as session, session.begin():
        yield session
