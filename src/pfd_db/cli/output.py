"""What commands print for people and scripts: lines, tables, JSON, secrets,
warnings, and the question before a change that cannot be undone.

Errors are not printed here: commands raise, and :mod:`pfd_db.cli.errors` prints.
Importing this module is cheap (Rich is loaded when something is printed).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, cast

import typer

if TYPE_CHECKING:
    from rich.console import Console

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


_printed = [0]
"""How many documents :func:`print_json` printed (the error funnel prints one
for a failed ``--json`` run only when the command printed none)."""


def print_json(document: Any) -> None:
    """``document`` as one JSON document on stdout (datetimes in ISO 8601)."""
    print(json.dumps(document, indent=2, default=_json_value))
    _printed[0] += 1


def documents_printed() -> int:
    """How many JSON documents were printed in this process so far."""
    return _printed[0]


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
