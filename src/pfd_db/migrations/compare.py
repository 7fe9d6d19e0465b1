"""What schema comparison looks at: the models, less what only one dialect has."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pfd_db.models.fulltext import FTS_TABLE

GIN_INDEX = "ix_experiments_search_vector"

IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]


def include_object_for(dialect: str) -> IncludeObject:
    """An Alembic ``include_object`` hook for ``dialect``: SQLite's FTS5 tables
    (virtual, built by DDL of their own) and, on SQLite, the PostgreSQL-only GIN
    index are left out of the comparison."""

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "table" and name is not None and name.startswith(FTS_TABLE):
            return False
        return not (type_ == "index" and name == GIN_INDEX and dialect == "sqlite")

    return include_object
