"""docs/coming-from-lstm-pfd.md: its Python examples run, top to bottom, on both dialects."""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "coming-from-lstm-pfd.md"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def examples() -> list[str]:
    return PYTHON_BLOCK.findall(GUIDE.read_text())


def test_the_guide_examples_run_in_order(settings_on_fresh):
    namespace: dict[str, object] = {}
    for number, code in enumerate(examples(), start=1):
        exec(compile(code, f"{GUIDE.name} example {number}", "exec"), namespace)
    assert namespace["key"].name == "ci"
    assert namespace["user"].username == "alice"
    assert namespace["done"] == 0


def test_the_guide_names_each_change_with_a_before_and_after():
    text = GUIDE.read_text()
    for legacy_name in (
        "database.connection import engine",
        "init_database()",
        "BaseModel",
        "APIKey.is_expired()",
        "mark_as_used",
        "'user'",
        "datetime.utcnow()",
    ):
        assert legacy_name in text, legacy_name
    blocks = examples()
    assert len(blocks) >= 8
    assert all(block.lstrip().startswith("# before:") for block in blocks)
