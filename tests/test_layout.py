"""The package's shape: no module over 450 lines, imports only going down the layers,
and only pfd_db.target building database URLs."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src"
MAX_LINES = 450
GENERATED = SOURCE / "pfd_db" / "migrations" / "versions"


def modules(source: Path) -> Iterator[tuple[Path, str, list[str]]]:
    """Every module under ``source``: its path, its name relative to ``source``
    and its lines."""
    for path in sorted(source.rglob("*.py")):
        yield path, str(path.relative_to(source)), path.read_text(encoding="utf-8").splitlines()


def long_modules(source: Path = SOURCE, limit: int = MAX_LINES) -> list[str]:
    """Every module under ``source`` over ``limit`` lines (migration revisions
    excepted), as "path: lines"."""
    return [
        f"{name}: {len(lines)}"
        for path, name, lines in modules(source)
        if len(lines) > limit and not path.is_relative_to(GENERATED)
    ]


def test_no_module_is_over_450_lines():
    too_long = long_modules()
    assert not too_long, f"modules over {MAX_LINES} lines: split them by job: {too_long}"


def test_the_line_count_finds_a_long_module_and_skips_revisions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "short.py").write_text("x = 1\n" * MAX_LINES)
    (package / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert long_modules(tmp_path) == [f"{Path('pkg', 'long.py')}: {MAX_LINES + 1}"]
    revision_lines = [len(p.read_text().splitlines()) for p in GENERATED.glob("0*.py")]
    assert max(revision_lines) > MAX_LINES  # so the exception matters


def test_imports_only_go_down_the_layers():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


TARGET = str(Path("pfd_db", "target.py"))
URL_BUILDING = re.compile(r"make_url|render_as_string|URL\.create|[\"']file:|mode=ro|PGPASSWORD")
"""What parses, renders or builds a database URL, a SQLite ``file:`` URI or a
client's libpq environment: pfd_db.target's job alone (docs/architecture.md)."""
URL_BUILDING_ALLOWED: dict[str, str] = {}
"""Module (relative to src/) → why it may do target.py's job itself. Empty: none may."""


def url_building(source: Path = SOURCE) -> list[str]:
    """Every line under ``source``, outside target.py and the allowed modules, that
    does target.py's job, as "path:line: text"."""
    return [
        f"{name}:{number}: {line.strip()}"
        for _, name, lines in modules(source)
        if name != TARGET and name not in URL_BUILDING_ALLOWED
        for number, line in enumerate(lines, 1)
        if URL_BUILDING.search(line)
    ]


def test_only_target_py_parses_renders_or_builds_a_database_url():
    found = url_building()
    assert not found, f"use pfd_db.target (or allow-list with a reason): {found}"


def test_the_url_check_finds_each_way_of_building_one(tmp_path):
    package = tmp_path / "pfd_db"
    package.mkdir()
    lines = [
        "u = make_url(text)",
        "s = u.render_as_string(False)",
        "u = URL.create('sqlite')",
        "d = f'file:{path}?mode=ro'",
        'e["PGPASSWORD"] = secret',
        "x = 'the key file: missing'",  # prose, not a URI
    ]
    (package / "module.py").write_text("\n".join(lines) + "\n")
    (package / "target.py").write_text("u = make_url(text)\n")
    found = url_building(tmp_path)
    assert [entry.split(":")[1] for entry in found] == ["1", "2", "3", "4", "5"]
    assert all(entry.startswith(str(Path("pfd_db", "module.py"))) for entry in found)
