"""The package's shape: no module over 450 lines, imports only going down the layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src"
MAX_LINES = 450
GENERATED = SOURCE / "pfd_db" / "migrations" / "versions"


def long_modules(source: Path = SOURCE, limit: int = MAX_LINES) -> list[str]:
    """Every module under ``source`` over ``limit`` lines (migration revisions
    excepted), as "path: lines"."""
    found = []
    for path in sorted(source.rglob("*.py")):
        if path.is_relative_to(GENERATED):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found.append(f"{path.relative_to(source)}: {lines}")
    return found


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
