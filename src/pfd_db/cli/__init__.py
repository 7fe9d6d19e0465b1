"""The ``pfd-db`` operator command.

Exit codes (see README, "Operating"): 0 success; 1 ``check``: the database is
not at head; 2 an expected failure, printed as one line on stderr (bad URL,
unreachable or missing database, wrong revision, bad input, refused
confirmation); 3 ``check``: schema drift; 4 ``check``: no usable instance key,
or two-factor data stored that it does not open.

Start-up stays fast: the modules below import only Typer; each command loads
the database, the settings and Rich when it runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pfd_db.cli import demo, experiments, health, identity, keys, migrate, seed, serve, shells
from pfd_db.cli.errors import Commands

app = typer.Typer(
    cls=Commands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
for command in [
    *migrate.app.registered_commands,
    *health.app.registered_commands,
    *seed.app.registered_commands,
    *demo.app.registered_commands,
    *shells.app.registered_commands,
    *serve.app.registered_commands,
]:
    app.registered_commands.append(command)
app.add_typer(identity.users, name="user")


def _print_version(value: bool) -> None:
    if value:
        from pfd_db import __version__

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
app.add_typer(keys.app, name="key")
app.add_typer(experiments.app, name="experiment")

from pfd_db.cli import clean, maintain, portability  # noqa: E402 - registered after the others

for command in [
    *portability.app.registered_commands,
    *clean.app.registered_commands,
    *maintain.app.registered_commands,
]:
    app.registered_commands.append(command)

__all__ = ["app"]
