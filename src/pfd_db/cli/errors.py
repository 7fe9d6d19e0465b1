"""The one place where a command's failure becomes what the operator sees.

Commands never print errors: they raise. :class:`Commands` (the ``pfd-db``
group) catches what they raise and prints one line on stderr, ``error: ...``,
naming the problem and the fix, and exits with the documented code: 2 for every
expected failure (pfd-db's own errors, usage errors, a URL, database or file the
command cannot use), or the code a :class:`CommandFailed` carries (``check``).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from pfd_db.cli.output import documents_printed, err_console, print_json

OK = 0
BEHIND_HEAD = 1
"""``check``: the database is reachable but not at head (or has no schema)."""
FAILED = 2
"""Any command: an expected failure (bad URL, unreachable database, bad input, ...)."""
SCHEMA_DRIFT = 3
"""``check``: the schema differs from the models."""
KEY_MISSING = 4
"""``check``: no usable instance key, or two-factor data stored that it does not open."""


class CommandFailed(Exception):
    """A command's verdict that is not "failed, exit 2": its own exit code, and the
    lines that explain it (printed under the error line). Not a
    :class:`~pfd_db.errors.PfdDbError`, which would load SQLAlchemy at start-up."""

    def __init__(self, message: str, exit_code: int, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = list(details)


class Commands(TyperGroup):
    """The pfd-db command group: turns every expected failure into one line on
    stderr and its exit code (usage errors included), and leaves real bugs their
    traceback."""

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
        wants_json = "--json" in _options(sys.argv[1:] if args is None else args)
        printed = documents_printed()
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # usage errors: bad option, value out of range
            usage = exc.format_message()
            if not usage:  # no arguments: the help was shown
                return FAILED
            code = int(getattr(exc, "exit_code", FAILED))
            message = f"{usage}{_help_hint(exc)}"
        except typer.Abort:
            code, message = FAILED, "aborted: nothing was changed"
        except Exception as exc:
            failure = describe_failure(exc)
            if failure is None:
                raise
            _print_details(exc)
            code = exc.exit_code if isinstance(exc, CommandFailed) else FAILED
            message = failure
        else:
            return result if isinstance(result, int) else OK
        report(message)
        if wants_json and documents_printed() == printed:  # the one document scripts read
            print_json({"ok": False, "exit_code": code, "problem": " ".join(message.split())})
        return code


def _options(args: Sequence[str]) -> Sequence[str]:
    """The arguments before ``--`` (after it, everything is a value)."""
    args = list(args)
    return args[: args.index("--")] if "--" in args else args


def report(message: str) -> None:
    """``error: message`` on stderr, on one line, taken literally."""
    from rich.text import Text

    line = " ".join(message.split())
    err_console.print(Text.assemble(("error:", "red"), " ", line))


def _help_hint(exc: Exception) -> str:
    context = getattr(exc, "ctx", None)
    path = getattr(context, "command_path", None)
    return f" (see `{path} --help`)" if path else ""


def _print_details(exc: Exception) -> None:
    """The list that explains an error, when it has one (schema differences)."""
    lines: Sequence[str] = getattr(exc, "details", None) or getattr(exc, "differences", None) or ()
    for line in lines:
        err_console.print(f"  - {line}", markup=False)


def describe_failure(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or None for a bug.

    Expected: pfd-db's own errors, and what a database or its driver says about
    an unusable URL, an unreachable server or a refused operation (never the
    statement or its parameters, which may hold secrets).
    """
    from pfd_db.errors import PfdDbError

    if isinstance(exc, PfdDbError | CommandFailed):
        return str(exc)
    from pfd_db.target import URL_FORMS, first_line  # loads SQLAlchemy: only for the rest

    if "sqlalchemy" in sys.modules:
        from sqlalchemy import exc as sa

        if isinstance(exc, sa.DBAPIError):
            return database_refusal(exc)
        if isinstance(exc, sa.NoSuchModuleError | sa.ArgumentError):
            return f"unusable database URL: {first_line(exc)}: use {URL_FORMS}"
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
    from pfd_db.target import first_line

    reason = first_line(getattr(exc, "orig", None) or exc)
    if "readonly" in reason or "read-only" in reason:
        return f"the database is read-only ({reason}): make it writable, or only read from it"
    if "database is locked" in reason:
        return f"the database is busy ({reason}): another process holds its write lock; retry"
    return f"the database refused the operation: {reason}"
