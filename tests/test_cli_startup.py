"""pfd-db starts light: --help and --version load no database machinery (timings
are benchmarks/bench_startup.py's job); shell completion works."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cli_support import PFD_DB

HEAVY = ("alembic", "sqlalchemy", "pydantic_settings", "mako", "pfd_db.models",
         "pfd_db.cli.demo_data", "pfd_db.store", "pfd_db.config", "psycopg", "argon2",
         "cryptography")  # fmt: skip
"""(Typer itself loads pydantic for the options of sub-commands: that one is Typer's.)"""

PROBE = """
import json, sys
from pfd_db.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["user", "--help"]])
def test_help_and_version_import_no_database_machinery(args):
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True)
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert done.stdout.strip()
    heavy = [name for name in loaded if name.split(".")[0] in HEAVY or name in HEAVY]
    assert heavy == []


def test_shell_completion_completes_commands_and_roles():
    def complete(words: str) -> list[str]:
        env = {**os.environ, "_PFD_DB_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - 1)}  # fmt: skip
        done = subprocess.run([PFD_DB], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("pfd-db us") == ["user"]
    assert "admin" in complete("pfd-db user create ada --role a")


def test_install_completion_writes_the_script_for_the_shell(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    done = subprocess.run([PFD_DB, "--install-completion", "bash"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "pfd-db.sh"
    assert "_PFD_DB_COMPLETE" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()
