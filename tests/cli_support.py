"""Running pfd-db as an operator would, and checking what it says.

``pfd_db(...)`` runs the command in-process (fast: Typer's CliRunner);
``pfd_db_process(...)`` runs the installed ``pfd-db`` program in a subprocess,
for what only a real process shows (exec of a client, a terminal, start-up).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import typer.testing
from typer.main import get_command
from typer.testing import CliRunner, Result

from pfd_db.cli import app
from pfd_db.config import get_settings

PFD_DB = str(Path(sys.executable).with_name("pfd-db"))
_built: dict[int, object] = {}


def built_command(typer_app: object) -> object:
    """The click command of ``typer_app``, built once (Typer builds it on every run)."""
    if id(typer_app) not in _built:
        _built[id(typer_app)] = get_command(typer_app)  # type: ignore[arg-type]
    return _built[id(typer_app)]


class Runner(CliRunner):
    """Typer's CliRunner, reusing the built command: the matrix runs hundreds."""

    def invoke(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        with mock.patch.object(typer.testing, "_get_command", built_command):
            return super().invoke(*args, **kwargs)


runner = Runner()


def pfd_db(*args: str, input: str | None = None, env: Mapping[str, str] | None = None) -> Result:
    """``pfd-db ARGS`` in this process; ``env`` is set (and the settings re-read) for it."""
    with settings_env(env or {}):
        return runner.invoke(app, list(args), input=input)


def pfd_db_process(
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``pfd-db ARGS`` as a program, with this environment plus ``env``."""
    return subprocess.run(
        [PFD_DB, *args],
        input=input,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def settings_env(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` (a value of "" removes the variable) and re-read the settings;
    both are restored afterwards."""
    saved = {name: os.environ.get(name) for name in env}
    for name, value in env.items():
        if value == "":
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def assert_refused(result: Result | subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The command failed as an expected failure must: exit 2, exactly one line on
    stderr starting ``error:``, no traceback (on stdout, nothing but, with ``--json``,
    the failure's one document). Returns the line."""
    code, stdout, stderr = outcome(result)
    assert code == 2, f"exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert "Traceback" not in stdout + stderr, stderr
    if isinstance(result, Result):
        assert result.exception is None or isinstance(result.exception, SystemExit), stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and len(stderr.splitlines()) == 1, repr(stderr)
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def outcome(result: Result | subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of an in-process or subprocess run."""
    if isinstance(result, Result):
        return result.exit_code, result.stdout, result.stderr
    return result.returncode, result.stdout, result.stderr
