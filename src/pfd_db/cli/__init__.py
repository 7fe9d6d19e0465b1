"""The ``pfd-db`` operator command.

Exit codes: 0 success; 1 ``check`` found the database behind head; 2 an
expected error (unreachable database, bad URL, unknown revision or user,
refused adoption, bad input), printed as one line; 3 ``check`` found schema
drift.
"""

from __future__ import annotations

import typer

from pfd_db.cli import demo, identity, schema

app = typer.Typer(
    help="Operate a pfd-db database: migrate, check, seed, inspect, manage users and API keys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in [*schema.app.registered_commands, *demo.app.registered_commands]:
    app.registered_commands.append(command)
app.add_typer(identity.users, name="user")
app.add_typer(identity.api_keys, name="apikey")

__all__ = ["app"]
