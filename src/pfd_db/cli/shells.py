"""``pfd-db shell`` (Python, with a session ready) and ``pfd-db dbshell`` (the
database's own client: sqlite3 or psql), as Django's ``shell`` and ``dbshell``."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Any

import typer

from pfd_db.cli.database import INSPECT, WRITE, database, target_of, url_in_settings
from pfd_db.cli.options import UrlOption

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pfd_db.target import Target

app = typer.Typer()

CLIENTS = {"sqlite": ("sqlite3", "sqlite3"), "postgresql": ("psql", "postgresql-client")}
"""The client program of each backend, and the Debian package that has it."""

# --- shell -----------------------------------------------------------------------


@app.command()
def shell(url: UrlOption = None) -> None:
    """Open a Python prompt with a session, the models and the store modules ready.

    IPython when it is installed. Nothing is committed unless you call
    session.commit().
    """
    from pfd_db import session as sessions

    with database(url, WRITE) as engine:
        sessions.configure(engine=engine)
        namespace = shell_namespace(engine)
        try:
            interact(namespace, banner(namespace, target_of(url)))
        finally:
            namespace["session"].close()
            sessions.reset()


def shell_namespace(engine: Engine) -> dict[str, Any]:
    """What the prompt starts with: ``session``, ``engine``, every model, every store
    module, ``select``/``func`` and ``get_db_session``."""
    import importlib
    import pkgutil

    import sqlalchemy
    from sqlalchemy.orm import Session

    import pfd_db.models
    import pfd_db.store
    from pfd_db.session import get_db_session

    models = pfd_db.models
    namespace: dict[str, Any] = {name: getattr(models, name) for name in models.__all__}
    for module in pkgutil.walk_packages(pfd_db.store.__path__, "pfd_db.store."):
        short = module.name.rpartition(".")[2]
        if not module.ispkg and not short.startswith("_"):
            namespace[short] = importlib.import_module(module.name)
    namespace.update(
        session=Session(engine, autoflush=False, expire_on_commit=False),
        engine=engine,
        select=sqlalchemy.select,
        func=sqlalchemy.func,
        get_db_session=get_db_session,
    )
    return namespace


def banner(namespace: dict[str, Any], target: Target) -> str:
    import types

    from pfd_db import __version__

    stores = sorted(n for n, v in namespace.items() if isinstance(v, types.ModuleType))
    return (
        f"pfd-db {__version__} shell on {target.shown}\n"
        "session: a Session on it (nothing is saved until session.commit()); engine\n"
        "models: User, Experiment, Dataset, ... (all of pfd_db.models)\n"
        f"store: {', '.join(stores)}\n"
        "also: select, func, get_db_session"
    )


def interact(namespace: dict[str, Any], text: str) -> None:
    """IPython when it is installed, else the standard library's prompt (without
    prompts when the input is piped in)."""
    if not sys.stdin.isatty():
        sys.ps1 = sys.ps2 = ""
    try:
        import IPython  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        import code

        code.interact(banner=text, local=namespace, exitmsg="")
        return
    IPython.start_ipython(argv=["--no-confirm-exit"], user_ns=namespace, display_banner=False)


# --- dbshell -------------------------------------------------------------------------


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbshell(ctx: typer.Context, url: UrlOption = None) -> None:
    """Start the database's own client on it: sqlite3 or psql.

    Arguments after -- go to the client, e.g. pfd-db dbshell -- -c 'select 1'.
    """
    from pfd_db.errors import ConfigurationError

    with database(url, INSPECT), url_in_settings(url):  # it exists and answers
        target = target_of(url)
    name, package = CLIENTS[target.url.get_backend_name()]
    program = shutil.which(name)
    if program is None:
        raise ConfigurationError(
            f"{name} is not installed (not found on PATH): install it (e.g. apt-get install "
            f"{package}), or use pfd-db shell"
        )
    command = target.client_command(name, ctx.args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(program, command.argv, command.environment)  # noqa: S606 - the client replaces us
