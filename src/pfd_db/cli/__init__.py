"""The ``pfd-db`` operator command.

Exit codes: 0 success; 1 ``check`` found the database behind head; 2 an
expected error (unreachable database, bad URL, unknown revision or user,
refused adoption, bad input), printed as one line; 3 ``check`` found schema
drift.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pfd_db import __version__
from pfd_db.cli import demo, identity, schema

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in [*schema.app.registered_commands, *demo.app.registered_commands]:
    app.registered_commands.append(command)
app.add_typer(identity.users, name="user")


def _print_version(value: bool) -> None:
    if value:
        print(f"pfd-db {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Operate a pfd-db database: migrate, check, seed, inspect, manage users and API keys."""


app.add_typer(identity.api_keys, name="apikey")

from pfd_db.cli import portability  # noqa: E402 - registered after the other commands

for command in portability.app.registered_commands:
    app.registered_commands.append(command)

__all__ = ["app"]
