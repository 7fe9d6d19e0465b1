"""What every pfd-db command shares: its options, opening the database, output, errors.

Every expected failure of every command ends in :class:`Commands.main`: one line
on stderr naming the problem and the fix, exit code 2, no traceback. Commands
raise :class:`~pfd_db.errors.PfdDbError` (or let a connection error escape) and
never print errors themselves.

Importing this module is cheap (Typer and the standard library only): the
database, the settings and Rich are loaded by the commands that use them, so
``pfd-db --help`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast
from urllib.parse import quote

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL
    from sqlalchemy.orm import Session

    from pfd_db.migrations import DatabaseState

# --- exit codes ----------------------------------------------------------------

OK = 0
BEHIND_HEAD = 1
"""``check``: the database is reachable but not at head (or has no schema)."""
FAILED = 2
"""Any command: an expected failure (bad URL, unreachable database, bad input, ...)."""
SCHEMA_DRIFT = 3
"""``check``: the schema differs from the models."""
KEY_MISSING = 4
"""``check``: no usable instance key, or two-factor data stored that it does not open."""

# --- options -------------------------------------------------------------------

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

# --- output --------------------------------------------------------------------

UNLIMITED_WIDTH = 100_000  # piped output is never cut or wrapped


def make_console(stderr: bool = False) -> Console:
    """A Rich console on the current stdout (or stderr): the terminal's width on a
    terminal; unlimited width, no colour, when piped, so tables are never cut."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else UNLIMITED_WIDTH
    return Console(file=stream, highlight=False, soft_wrap=True, width=width)


class _CurrentConsole:
    """Stands for a console made for the current stream each time it is used, so a
    command's output follows redirection (and tests' captured streams)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr

    def __getattr__(self, name: str) -> Any:
        return getattr(make_console(self._stderr), name)


console = cast("Console", _CurrentConsole(stderr=False))
err_console = cast("Console", _CurrentConsole(stderr=True))


def say(text: str, *, quiet: bool = False) -> None:
    """Print one line for people (unless ``quiet``), taken literally (no markup)."""
    if not quiet:
        console.print(text, markup=False)


def print_json(document: Any) -> None:
    """``document`` as one JSON document on stdout (datetimes in ISO 8601)."""
    print(json.dumps(document, indent=2, default=_json_value))


def _json_value(value: Any) -> Any:
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    return str(value)


def show_secret(label: str, secret: str, *, quiet: bool) -> None:
    """Print ``secret`` on a line of its own after a line saying what it is; with
    ``quiet``, print only the secret."""
    if not quiet:
        print(f"{label} (shown once, store it now):")
    print(secret, flush=True)


def warn(message: str) -> None:
    """One warning line on stderr (the command carries on)."""
    from rich.text import Text

    err_console.print(Text.assemble(("warning:", "yellow"), " ", message))


def fail(message: str, code: int = FAILED) -> typer.Exit:
    """Print ``message`` as one error line; the Exit to raise with ``code``."""
    report(message)
    return typer.Exit(code)


def report(message: str) -> None:
    """``error: message`` on stderr, on one line, taken literally."""
    from rich.text import Text

    line = " ".join(message.split())
    err_console.print(Text.assemble(("error:", "red"), " ", line))


# --- one place for every expected failure ---------------------------------------


class Commands(TyperGroup):
    """The pfd-db command group: turns every expected failure into one line on
    stderr and exit 2 (usage errors included), and leaves real bugs their traceback."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        **extra: Any,
    ) -> int:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # usage errors: bad option, value out of range
            usage = exc.format_message()
            if not usage:  # no arguments: the help was shown
                return FAILED
            report(f"{usage}{_help_hint(exc)}")
            return int(getattr(exc, "exit_code", FAILED))
        except typer.Abort:
            report("aborted: nothing was changed")
            return FAILED
        except Exception as exc:
            failure = describe_failure(exc)
            if failure is None:
                raise
            _print_details(exc)
            report(failure)
            return FAILED
        return result if isinstance(result, int) else OK


def _help_hint(exc: Exception) -> str:
    context = getattr(exc, "ctx", None)
    path = getattr(context, "command_path", None)
    return f" (see `{path} --help`)" if path else ""


def _print_details(exc: Exception) -> None:
    """The list that explains an error, when it has one (schema differences)."""
    for difference in getattr(exc, "differences", ()):
        err_console.print(f"  - {difference}", markup=False)


def describe_failure(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or None for a bug.

    Expected: pfd-db's own errors, and what a database or its driver says about
    an unusable URL, an unreachable server or a refused operation (never the
    statement or its parameters, which may hold secrets).
    """
    from pfd_db.errors import PfdDbError

    if isinstance(exc, PfdDbError):
        return str(exc)
    if "sqlalchemy" in sys.modules:
        from sqlalchemy import exc as sa

        if isinstance(exc, sa.DBAPIError):
            return database_refusal(exc)
        if isinstance(exc, sa.NoSuchModuleError | sa.ArgumentError):
            return f"unusable database URL: {first_line(exc)}: use {url_forms()}"
    if "sqlite3" in sys.modules:  # the driver's own errors, outside SQLAlchemy (backups)
        import sqlite3

        if isinstance(exc, sqlite3.Error):
            return database_refusal(exc)
    if "psycopg" in sys.modules:
        import psycopg

        if isinstance(exc, psycopg.Error):
            return f"the database refused: {first_line(exc)}"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or first_line(exc)}{where}"
    return None


def database_refusal(exc: Exception) -> str:
    """What the database said, on one line, with what to do about it."""
    reason = first_line(getattr(exc, "orig", None) or exc)
    if "readonly" in reason or "read-only" in reason:
        return f"the database is read-only ({reason}): make it writable, or only read from it"
    if "database is locked" in reason:
        return f"the database is busy ({reason}): another process holds its write lock; retry"
    return f"the database refused the operation: {reason}"


def first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0].strip() if text else type(value).__name__


def url_forms() -> str:
    from pfd_db.engine import URL_FORMS

    return URL_FORMS


# --- which database ----------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """What a command needs of its database."""

    writes: bool
    creates: bool
    revision: Literal["any", "known", "versioned", "head"]
    """Which revisions it accepts: any; none or one this pfd-db knows; one it
    knows; head only."""


INSPECT = Access(writes=False, creates=False, revision="any")
"""Look at any pfd-db database, read-only: status, current, check."""
READ = Access(writes=False, creates=False, revision="head")
"""Read a database at head, read-only: user list, apikey list."""
WRITE = Access(writes=True, creates=False, revision="head")
"""Change the data of a database at head: seed, demo, user, apikey, key, shell."""
MIGRATE = Access(writes=True, creates=False, revision="versioned")
"""Move the schema of a database that has a revision: downgrade."""
CREATE = Access(writes=True, creates=True, revision="known")
"""Create or migrate a database: init, migrate."""


@dataclass(frozen=True)
class Target:
    """The database a command works on, as the operator named it."""

    url: URL
    """Parsed and normalised (postgresql:// means psycopg 3); may hold a password."""
    path: Path | None
    """The SQLite file, absolute; None for a server or an in-memory database."""

    @property
    def shown(self) -> str:
        """The URL to print: never with its password."""
        from pfd_db.engine import mask_password

        return mask_password(self.url)

    @property
    def sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"


def locate(url: str | None) -> Target:
    """The database ``url`` (default: the settings') names; an unusable URL is refused."""
    from pfd_db.config import get_settings
    from pfd_db.engine import parse_url

    parsed = parse_url(url or get_settings().url)
    name = parsed.database
    file = parsed.get_backend_name() == "sqlite" and name not in (None, "", ":memory:")
    path = Path(os.path.abspath(os.path.expanduser(cast(str, name)))) if file else None
    return Target(parsed, path)


@contextmanager
def url_in_settings(url: str | None) -> Iterator[None]:
    """Within the block, ``--url`` is the settings' URL as PFD_DB_URL would be, so
    what follows the settings (the instance key beside a SQLite file, sessions)
    follows ``--url`` too."""
    from pfd_db.config import get_settings
    from pfd_db.crypto import following_settings

    if url is None:
        with following_settings():
            yield
        return
    saved = os.environ.get("PFD_DB_URL")
    os.environ["PFD_DB_URL"] = url
    get_settings.cache_clear()
    try:
        with following_settings():
            yield
    finally:
        if saved is None:
            os.environ.pop("PFD_DB_URL", None)
        else:
            os.environ["PFD_DB_URL"] = saved
        get_settings.cache_clear()


@contextmanager
def database(url: str | None, access: Access = WRITE) -> Iterator[Engine]:
    """An engine on the database ``url`` names, checked for what ``access`` needs.

    Refused, before anything is written: an unusable URL; a SQLite path that is
    missing (unless ``access.creates``), a directory, not a database, or not
    writable when ``access.writes``; a database that cannot be reached; a revision
    that is not head (or unknown) when ``access`` needs it. Read-only access opens
    SQLite read-only and refuses every write, so inspecting changes nothing.
    """
    from sqlalchemy.engine import Engine

    with url_in_settings(url):
        target = locate(url)
        if target.path is not None:
            check_file(target.path, access)
        if target.path is None or target.path.exists():
            with opened(target, writable=False) as reader:
                require_revision(reader, target, access)
                if not access.writes:
                    yield reader
                    return
        with opened(target, writable=True) as writer:
            assert isinstance(writer, Engine)
            yield writer


@contextmanager
def transaction(url: str | None, access: Access = WRITE) -> Iterator[Session]:
    """A session on ``url`` (checked as by :func:`database`) that commits when the
    block succeeds and rolls back when it raises."""
    from sqlalchemy.orm import Session

    with (
        database(url, access) as engine,
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        yield session


def check_file(path: Path, access: Access) -> None:
    """Refuse a SQLite path the command cannot use, naming the fix."""
    from pfd_db.errors import DatabaseUnavailable

    if path.is_dir():
        raise DatabaseUnavailable(
            f"{path} is a directory, not a database file: pass --url sqlite:///{path}/pfd.db"
        )
    if not path.exists():
        if not access.creates:
            raise DatabaseUnavailable(
                f"no pfd-db database at {path}: run pfd-db init, or pass --url"
            )
        if not path.parent.is_dir():
            raise DatabaseUnavailable(
                f"no directory {path.parent} for the database {path}: create it, or pass --url"
            )
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise DatabaseUnavailable(
                f"cannot create {path}: the directory {path.parent} is not writable"
            )
        return
    if access.writes and not (
        os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)
    ):
        raise DatabaseUnavailable(
            f"the database {path} is read-only (the file or its directory): make both "
            "writable, or use a command that only reads (status, check, user list, ...)"
        )


@contextmanager
def opened(target: Target, *, writable: bool) -> Iterator[Engine]:
    """An engine on ``target``, checked to be reachable. Read-only: SQLite is opened
    with ``mode=ro`` (and ``immutable`` when it cannot be written at all), and the
    engine refuses writes. Writable: an existing SQLite file is never re-created."""
    from pfd_db.engine import make_engine, read_only

    engine = make_engine(engine_url(target, writable))
    try:
        verify_reachable(engine, target)
        yield engine if writable else read_only(engine)
    finally:
        engine.dispose()


def engine_url(target: Target, writable: bool) -> str:
    """The URL to connect with: for a SQLite file, a ``file:`` URI whose mode says
    whether it may be written or created, so a read never creates a file."""
    return engine_url_of(target, writable).render_as_string(hide_password=False)


def engine_url_of(target: Target, writable: bool) -> URL:
    from pfd_db.cli.sqlite_files import wal_without_readers
    if target.path is None:
        return target.url
    path = target.path
    if writable:
        mode = {"mode": "rw" if path.exists() else "rwc"}
    elif os.access(path.parent, os.W_OK) and wal_without_readers(path):
        mode = {"mode": "rw"}  # so that it removes its -wal/-shm; read_only() refuses writes
    elif os.access(path, os.W_OK) and (
        os.access(path.parent, os.W_OK) or Path(f"{path}-shm").exists()
    ):
        mode = {"mode": "ro"}
    else:  # nothing can write it (nor its WAL index): read it as it is
        mode = {"mode": "ro", "immutable": "1"}
    return target.url.set(database=f"file:{quote(str(path))}").update_query_dict(
        {**mode, "uri": "true"}
    )


def verify_reachable(engine: Engine, target: Target) -> None:
    """Connect and read once, or refuse naming the database and what to check."""
    from sqlalchemy.exc import DBAPIError

    from pfd_db.errors import DatabaseUnavailable

    probe = "SELECT count(*) FROM sqlite_master" if target.sqlite else "SELECT 1"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(probe)
    except DBAPIError as exc:
        raise DatabaseUnavailable(unreachable(target, first_line(exc.orig))) from None


def unreachable(target: Target, reason: str) -> str:
    """Why ``target`` cannot be used, and what to do about it."""
    if target.path is None:
        return (
            f"cannot reach {target.shown}: {reason}: check the host, port, user, password "
            "and database name (--url or PFD_DB_URL) and that the server is running"
        )
    if "not a database" in reason:
        return f"{target.path} is not a SQLite database ({reason}): pass --url with the right file"
    return f"cannot open the database {target.path} ({reason}): check the file, or pass --url"


def require_revision(engine: Engine, target: Target, access: Access) -> DatabaseState:
    """The database's migration state, refused when ``access`` needs head (or a
    revision this pfd-db knows) and it is not."""
    from pfd_db import migrations
    from pfd_db.errors import MigrationError

    state = migrations.state(engine)
    if access.revision == "any":
        return state
    if state.current is not None and not is_known(state.current):
        raise MigrationError(unknown_revision(state))
    if access.revision == "versioned" and state.current is None:
        raise MigrationError(f"{not_at_head(state, target)}: nothing to move from")
    if access.revision == "head" and not state.at_head:
        raise MigrationError(not_at_head(state, target))
    return state


def is_known(revision: str) -> bool:
    """Whether ``revision`` is one of this pfd-db's migrations."""
    from pfd_db import migrations

    return revision in {r.revision for r in migrations.history()}


def unknown_revision(state: DatabaseState) -> str:
    from pfd_db import __version__

    return (
        f"the database is at revision {state.current}, which this pfd-db ({__version__}, "
        f"head {state.head}) does not know: upgrade pfd-db, or pass --url"
    )


def not_at_head(state: DatabaseState, target: Target) -> str:
    if state.needs_adoption:
        return (
            f"the database has {state.model_tables} pfd-db tables but no migration history: "
            "run pfd-db migrate --adopt"
        )
    if state.current is None:
        return f"the database {target.shown} has no pfd-db schema: run pfd-db init"
    return (
        f"the database is at revision {state.current}, behind head {state.head}: "
        "run pfd-db migrate first"
    )


def confirm_or_refuse(question: str, yes: bool, refusal: str) -> None:
    """Go on when ``yes``, or when the operator agrees at a terminal; otherwise
    refuse with ``refusal`` (nothing has been changed yet)."""
    from pfd_db.errors import PfdDbError

    if yes:
        return
    if not sys.stdin.isatty():
        raise PfdDbError(f"{refusal}: pass --yes to confirm")
    if not typer.confirm(question, default=False):
        raise PfdDbError("cancelled: nothing was changed")
