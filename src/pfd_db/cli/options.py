"""The options many commands share."""

from __future__ import annotations

from typing import Annotated

import typer

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (default: PFD_DB_URL, DATABASE_URL, ./pfd.db)."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (stable keys) for scripts.")
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only the secret, nothing else.")
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do it without asking (needed when not on a terminal).")
]
