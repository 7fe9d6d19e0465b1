"""The Python examples in docs/ run as written, on both dialects.

docs/coming-from-lstm-pfd.md has its own test (test_guide_examples.py), which
also checks its before/after form; every other page's blocks run here, in order,
against a fresh database at head that pfd_db.session is pointed at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pfd_db import migrations

DOCS = Path(__file__).resolve().parent.parent / "docs"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
OWN_TEST = {"coming-from-lstm-pfd.md"}


def pages_with_examples() -> list[Path]:
    return sorted(
        page
        for page in DOCS.glob("*.md")
        if page.name not in OWN_TEST and PYTHON_BLOCK.search(page.read_text())
    )


def test_some_page_besides_the_guide_has_examples():
    assert [page.name for page in pages_with_examples()] == ["rollups.md"]


@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda page: page.name)
def test_a_pages_examples_run_in_order(settings_on_fresh, fresh_engine: Engine, page: Path):
    migrations.upgrade(fresh_engine)
    namespace: dict[str, object] = {}
    for number, code in enumerate(PYTHON_BLOCK.findall(page.read_text()), start=1):
        exec(compile(code, f"{page.name} example {number}", "exec"), namespace)
    if page.name == "rollups.md":
        assert namespace["done"].complete
