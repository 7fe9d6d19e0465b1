"""What schema comparison looks at: the models, less what only one dialect has,
plus what Alembic does not compare (triggers, expression indexes, partitioning).

Alembic compares tables, columns and plain indexes. The rest is compared here by
name and place: the triggers the models' DDL creates (SQLite: the FTS triggers
on ``experiments`` and the tag-count triggers; PostgreSQL: the tag-count
triggers, enabled, and their function), and the models' expression indexes
(``lower(username)``), which SQLite cannot reflect.

Partitioned log tables (PostgreSQL, revision 0011; docs/partitions.md): the
models describe the four tables of :data:`PARTITIONED` as plain tables with an
``(id)`` primary key, and both forms pass. Partitioned, a table must be
``PARTITION BY RANGE`` on its time column, with the primary key ``(id, <time
column>)`` and a default partition; its partitions (and their indexes) are
left out of Alembic's comparison, which compares the partitioned table itself
(its columns and its partitioned indexes) with the model. Alembic does not
compare primary keys, so the wider key is compared here. Any other table found
partitioned is drift.
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

PARTITIONED: dict[str, str] = {
    "api_request_logs": "request_time",
    "api_usage": "timestamp",
    "system_logs": "created_at",
    "login_history": "timestamp",
}
"""The tables revision 0011 partitions on PostgreSQL, each with its partition key:
a monthly range of this time column."""

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
    index, the expression indexes (compared by :func:`extra_drift`), and the
    partitions of the :data:`PARTITIONED` tables with their indexes are left out
    of Alembic's comparison."""
    skipped = set(expression_indexes())

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "table" and name is not None and name.startswith(FTS_TABLE):
            return False
        if type_ == "table" and reflected and is_log_partition(obj):
            return False
        if type_ == "index" and reflected and is_log_partition(getattr(obj, "table", None)):
            return False
        if type_ == "index" and name in skipped:
            return False
        return not (type_ == "index" and name == GIN_INDEX and dialect == "sqlite")

    return include_object


def is_log_partition(table: Any) -> bool:
    """Whether a reflected table is a partition of one of the :data:`PARTITIONED`
    tables (PostgreSQL reflects a partition as inheriting from its parent)."""
    options = getattr(table, "dialect_options", None)
    if options is None or "postgresql" not in options:
        return False
    parents = options["postgresql"].get("inherits") or ()
    return any(parent in PARTITIONED for parent in parents)


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
    """How triggers, expression indexes and partitioning differ from the models,
    one line each."""
    return _trigger_drift(conn) + _expression_index_drift(conn) + _partition_drift(conn)


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


def _partition_drift(conn: Connection) -> list[str]:
    """The partitioned tables that are not partitioned as revision 0011 does it."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(
        text(
            "SELECT c.relname, p.partstrat, "
            "ARRAY(SELECT a.attname::text FROM unnest(p.partattrs) WITH ORDINALITY k(n, i) "
            "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n ORDER BY k.i), "
            "ARRAY(SELECT a.attname::text FROM pg_constraint k "
            "  CROSS JOIN unnest(k.conkey) WITH ORDINALITY u(n, i) "
            "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.n "
            "  WHERE k.conrelid = c.oid AND k.contype = 'p' ORDER BY u.i), "
            "p.partdefid <> 0 "
            "FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND NOT c.relispartition"
        )
    )
    lines = []
    models = set(Base.metadata.tables)
    for table, strategy, key, primary_key, has_default in sorted(rows):
        column = PARTITIONED.get(table)
        if column is None:
            if table in models:
                lines.append(f"partitioned_table: {table} (the models' table is not partitioned)")
            continue
        if strategy != "r" or list(key) != [column]:
            lines.append(f"partition_key: {table} (by {', '.join(key)}; expected RANGE ({column}))")
        if list(primary_key) != ["id", column]:
            shown = ", ".join(primary_key) or "none"
            lines.append(f"primary_key: {table} ({shown}; expected id, {column})")
        if not has_default:
            lines.append(f"add_default_partition: {table}_default on {table}")
    return lines


def _compiled(expression: str | ColumnElement[Any], conn: Connection) -> str:
    if isinstance(expression, str):
        return expression
    return str(expression.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def _squashed(sql: str) -> str:
    """``sql`` lowercased without casts, brackets, quotes and spaces, for a
    comparison that ignores how each dialect prints an expression back."""
    return re.sub(r"::\w+|[^a-z0-9_]", "", sql.lower())
