"""docs/schema.md is the guide the models render today."""

from __future__ import annotations

from pathlib import Path

from pfd_db.models import Base
from pfd_db.schema_guide import render

GUIDE = Path(__file__).parent.parent / "docs" / "schema.md"


def test_the_committed_guide_matches_the_models():
    assert GUIDE.read_text() == render(), (
        "docs/schema.md is stale: run `python -m pfd_db.schema_guide > docs/schema.md`"
    )


def test_the_guide_covers_every_table_and_foreign_key():
    guide = render()
    for table in Base.metadata.tables.values():
        assert f"### `{table.name}`" in guide
        for fk in table.foreign_keys:
            assert f"→ `{fk.column.table.name}` ON DELETE {fk.ondelete}" in guide
