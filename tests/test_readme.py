"""The README is tested: its examples run as written, its settings table lists
every setting, its table of --json keys is what the commands print.

Every ```python and ```sh block runs in a fresh directory on a database that
`pfd-db init` has just set up: on SQLite the default ./pfd.db (no PFD_DB_URL),
on PostgreSQL a new database of the suite's server named by PFD_DB_URL. A block
that exports a PostgreSQL URL of its own runs on PostgreSQL only, with that URL
pointed at the suite's server. Python blocks run with DeprecationWarning as an
error, so they keep to the current API. A block of `make` commands (Quick start) is
checked with `make -n`, since `make test` is this very suite.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_support import pfd_db
from pfd_db.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(python|sh)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
OWN_URL = re.compile(r"postgresql://[^\s'\"]+")
VENV_BIN = str(Path(sys.executable).parent)


def blocks() -> list[tuple[str, str, int]]:
    """(language, code, line) of every runnable block."""
    return [
        (m.group(1), m.group(2), README.count("\n", 0, m.start()) + 1)
        for m in BLOCK.finditer(README)
    ]


def is_make(code: str) -> bool:
    return all(line.startswith("make ") for line in code.splitlines() if line.strip())


def dialects_for(code: str) -> tuple[str, ...]:
    return ("postgresql",) if OWN_URL.search(code) else ("sqlite", "postgresql")


CASES = [
    pytest.param(dialect, language, code, id=f"line{line}-{language}-{dialect}")
    for language, code, line in blocks()
    if not is_make(code)
    for dialect in dialects_for(code)
]


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a block: a working directory with an initialised database."""
    env = {k: v for k, v in os.environ.items() if k not in ("PFD_DB_URL", "DATABASE_URL")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    dialect = request.node.callspec.params["dialect"]
    name = None
    if dialect == "postgresql":
        server = request.getfixturevalue("pg_server")
        name = f"pfd_readme_{uuid.uuid4().hex[:10]}"
        server.create_database(name)
        env["PFD_DB_URL"] = server.url(name)
    with pytest.MonkeyPatch.context() as patch:  # `pfd-db init` in-process, in tmp_path
        patch.chdir(tmp_path)
        init = pfd_db("init", "--quiet", env={"PFD_DB_URL": env.get("PFD_DB_URL", ""),
                                              "DATABASE_URL": ""})  # fmt: skip
    assert init.exit_code == 0, init.output
    try:
        yield env
    finally:
        if name is not None:
            request.getfixturevalue("pg_server").drop_database(name)


@pytest.mark.parametrize(("dialect", "language", "code"), CASES)
def test_readme_example_runs_as_written(dialect, language, code, database, tmp_path):
    if OWN_URL.search(code):
        code = OWN_URL.sub(database["PFD_DB_URL"], code)
    argv = [sys.executable, "-W", "error::DeprecationWarning", "-c", code] if language == "python" \
        else ["bash", "-euo", "pipefail", "-c", code]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, env=database, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr


def test_every_python_block_is_run():
    """No example hides under another fence or an indent: every block is python or
    sh, and every python block is a case of the test above."""
    openings = re.findall(r"^\s*```(.*)$", README, re.MULTILINE)[0::2]
    assert set(openings) <= {"python", "sh"}, openings
    python = [code for language, code, _ in blocks() if language == "python"]
    assert len(python) == openings.count("python") >= 3
    run = {code for _, language, code in (case.values for case in CASES) if language == "python"}
    assert run == set(python)


def test_the_quick_start_make_targets_exist():
    quick_start = [code for _, code, _ in blocks() if is_make(code)]
    assert quick_start, "no block of make commands"
    for code in quick_start:
        for line in code.splitlines():
            target = line.split("#")[0].split()[1]
            done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True,
                                  text=True)  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip()


# --- tables that must say what the code does ---------------------------------------


def table_after(heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after ``heading``, header excluded."""
    section = README[README.index(heading) :]
    lines = []
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_the_settings_table_lists_every_setting_with_its_default():
    rows = {cells[0].strip("`"): cells for cells in table_after("## Configuration")}
    wanted = {f"PFD_DB_{name.upper()}" for name in Settings.model_fields}
    assert set(rows) == wanted, f"missing: {wanted - set(rows)}; unknown: {set(rows) - wanted}"
    for name, field in Settings.model_fields.items():
        default = rows[f"PFD_DB_{name.upper()}"][1]
        literal = re.fullmatch(r"`([^`]*)`", default)
        if literal and isinstance(field.default, bool | int | float):
            shown = str(field.default).lower() if isinstance(field.default, bool) else field.default
            assert str(shown) == literal.group(1) or float(literal.group(1)) == field.default, name


JSON_COMMANDS = {
    "status": ["status"],
    "current": ["current"],
    "history": ["history"],
    "check": ["check"],
    "user list": ["user", "list"],
    "apikey list": ["apikey", "list"],
}
KEY = re.compile(r"`(\w+)`(?: \(([^)]*)\))?")


def documented_keys(cell: str) -> dict[str, set[str]]:
    """Each top-level key, with the keys documented inside its parentheses."""
    return {m.group(1): set(re.findall(r"`(\w+)`", m.group(2) or "")) for m in KEY.finditer(cell)}


def test_the_json_documents_have_the_documented_keys(tmp_path):
    url = f"sqlite:///{tmp_path / 'pfd.db'}"
    pfd_db("init", "--quiet", "--url", url)
    pfd_db("apikey", "create", "admin", "--name", "ci", "--url", url)
    rows = {cells[0].strip("`"): cells[1] for cells in table_after("**For scripts.**")}
    assert set(rows) == set(JSON_COMMANDS)
    for command, args in JSON_COMMANDS.items():
        document = json.loads(pfd_db(*args, "--json", "--url", url).stdout)
        keys = documented_keys(rows[command])
        assert set(document) == set(keys), command
        for key, inner in keys.items():
            value = document[key]
            if inner and value != []:  # a list of none (no replica on SQLite) has no keys
                value = value[0] if isinstance(value, list) else value
                assert set(value) == inner, f"{command}: {key}"
