"""What schema comparison looks at: the models, less what only one dialect has,
plus what Alembic does not compare (triggers, expression indexes).

Alembic compares tables, columns and plain indexes. The rest is compared here by
name and place: the triggers the models' DDL creates (SQLite: the FTS triggers
on ``experiments`` and the tag-count triggers; PostgreSQL: the tag-count
triggers, enabled, and their function), and the models' expression indexes
(``lower(username)``), which SQLite cannot reflect.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Index, text
from sqlalchemy.exc import SAWarning
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from pfd_db.models import Base, tag_counts
from pfd_db.models.fulltext import FTS_TABLE, sqlite_fts_statements

GIN_INDEX = "ix_experiments_search_vector"

IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]

_TRIGGER = re.compile(r"CREATE TRIGGER (\w+)\b.*?\bON (\w+)", re.DOTALL)
_FUNCTION = re.compile(r"CREATE OR REPLACE FUNCTION (\w+)\(")


def expression_indexes() -> dict[str, Index]:
    """The models' indexes on an expression rather than on columns, by name."""
    return {
        str(index.name): index
        for table in Base.metadata.tables.values()
        for index in table.indexes
        if any(not isinstance(e, ColumnClause) for e in index.expressions)
    }


def include_object_for(dialect: str) -> IncludeObject:
    """An Alembic ``include_object`` hook for ``dialect``: SQLite's FTS5 tables
    (virtual, built by DDL of their own), on SQLite the PostgreSQL-only GIN
    index, and the expression indexes (compared by :func:`extra_drift`) are left
    out of Alembic's comparison."""
    skipped = set(expression_indexes())

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "table" and name is not None and name.startswith(FTS_TABLE):
            return False
        if type_ == "index" and name in skipped:
            return False
        return not (type_ == "index" and name == GIN_INDEX and dialect == "sqlite")

    return include_object


@contextmanager
def quiet_expression_index_reflection() -> Iterator[None]:
    """SQLite's reflection, and Alembic, skip expression indexes with a warning:
    expected here, where :func:`extra_drift` compares them."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "Skipped unsupported reflection of expression-based index", SAWarning
        )
        warnings.filterwarnings(
            "ignore", "autogenerate skipping metadata-specified expression-based index"
        )
        yield


def extra_drift(conn: Connection) -> list[str]:
    """How triggers and expression indexes differ from the models, one line each."""
    return _trigger_drift(conn) + _expression_index_drift(conn)


def expected_triggers(dialect: str) -> dict[str, str]:
    """The triggers the models create on ``dialect``: name -> table."""
    if dialect == "sqlite":
        statements = sqlite_fts_statements() + tag_counts.sqlite_statements()
    else:
        statements = tag_counts.postgresql_statements()
    return {m[1]: m[2] for s in statements if (m := _TRIGGER.match(s.strip()))}


def expected_functions(dialect: str) -> set[str]:
    """The trigger functions the models create (PostgreSQL only)."""
    if dialect != "postgresql":
        return set()
    return {m[1] for s in tag_counts.postgresql_statements() if (m := _FUNCTION.search(s))}


def _trigger_drift(conn: Connection) -> list[str]:
    dialect = conn.dialect.name
    expected = expected_triggers(dialect)
    if dialect == "sqlite":
        rows = conn.execute(
            text("SELECT name, tbl_name, 'O' FROM sqlite_master WHERE type = 'trigger'")
        )
        live = {name: (table, enabled) for name, table, enabled in rows}
        functions: set[str] = set()
    else:
        rows = conn.execute(
            text(
                "SELECT t.tgname, c.relname, t.tgenabled FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
            )
        )
        live = {name: (table, str(enabled)) for name, table, enabled in rows}
        functions = set(
            conn.scalars(
                text(
                    "SELECT p.proname FROM pg_proc p "
                    "JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = current_schema() AND p.prorettype = 'trigger'::regtype"
                )
            )
        )
    lines = []
    for name, table in sorted(expected.items()):
        if name not in live or live[name][0] != table:
            lines.append(f"add_trigger: {name} on {table}")
        elif live[name][1] == "D":
            lines.append(f"disabled_trigger: {name} on {table}")
    for name, (table, _enabled) in sorted(live.items()):
        if expected.get(name) != table:
            lines.append(f"remove_trigger: {name} on {table}")
    wanted = expected_functions(dialect)
    lines += [f"add_function: {name}" for name in sorted(wanted - functions)]
    lines += [f"remove_function: {name}" for name in sorted(functions - wanted)]
    return lines


def _expression_index_drift(conn: Connection) -> list[str]:
    if conn.dialect.name == "sqlite":
        query = "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'"
    else:
        query = (
            "SELECT indexname, tablename, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema()"
        )
    live = {name: (table, _squashed(sql or "")) for name, table, sql in conn.execute(text(query))}
    lines = []
    for name, index in sorted(expression_indexes().items()):
        table = index.table.name if index.table is not None else ""
        definition = ", ".join(_compiled(e, conn) for e in index.expressions)
        unique = "unique " if index.unique else ""
        wanted = f"add_index: {name} ({unique}{definition} on {table})"
        found = live.get(name)
        if found is None or found[0] != table:
            lines.append(wanted)
        elif _squashed(definition) not in found[1] or index.unique != found[1].startswith(
            "createunique"
        ):
            lines.append(f"remove_index: {name}; {wanted}")
    return lines


def _compiled(expression: str | ColumnElement[Any], conn: Connection) -> str:
    if isinstance(expression, str):
        return expression
    return str(expression.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def _squashed(sql: str) -> str:
    """``sql`` lowercased without casts, brackets, quotes and spaces, for a
    comparison that ignores how each dialect prints an expression back."""
    return re.sub(r"::\w+|[^a-z0-9_]", "", sql.lower())
