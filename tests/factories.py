"""Rows for any table, with every NOT NULL column filled and parents made as needed.

Tests of database rules (ON DELETE, CHECK) need one valid row in a given table
without caring about its content; ``insert_row`` makes one with Core inserts, so
the ORM's own behaviour stays out of the way.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Enum,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)

from pfd_db.models import Base

_counter = itertools.count(1)

# Values that satisfy the CHECK constraints on plain string columns.
CHECKED_VALUES = {
    "event_type": "training.started",
    "provider_type": "slack",
    "aggregation_type": "hourly",
    ("email_logs", "status"): "sent",
    ("webhook_logs", "status"): "sent",
    ("system_logs", "status"): "success",
}


def value_for(table: Table, column: Column[Any]) -> Any:
    """A valid value for a NOT NULL ``column`` that has no default."""
    for key in ((table.name, column.name), column.name):
        if key in CHECKED_VALUES:
            return CHECKED_VALUES[key]
    sql_type = getattr(column.type, "impl", column.type)
    if isinstance(sql_type, Enum):
        return sql_type.enums[0]
    if isinstance(sql_type, DateTime):
        return datetime.now(UTC)
    if isinstance(sql_type, Boolean):
        return False
    if isinstance(sql_type, Integer):
        return 1
    if isinstance(sql_type, Float):
        return 0.5
    if isinstance(sql_type, JSON):
        return {}
    if isinstance(sql_type, String | Text):
        return f"{column.name}-{next(_counter)}"[: getattr(sql_type, "length", None) or 100]
    return f"{column.name}-{next(_counter)}"


def insert_row(conn: Connection, table_name: str, **values: Any) -> int:
    """Insert one row into ``table_name`` and return its id; parents of NOT NULL
    foreign keys that are not given are inserted first."""
    table = Base.metadata.tables[table_name]
    row: dict[str, Any] = {}
    for column in table.columns:
        if column.name in values or column.primary_key or column.computed is not None:
            continue
        if column.nullable or column.default is not None or column.server_default is not None:
            continue
        foreign = next(iter(column.foreign_keys), None)
        if foreign is not None:
            row[column.name] = insert_row(conn, foreign.column.table.name)
        else:
            row[column.name] = value_for(table, column)
    row.update(values)
    table = columns_in_database(conn, table)
    return int(conn.execute(table.insert().values(row).returning(table.c.id)).scalar_one())


def columns_in_database(conn: Connection, table: Table) -> Table:
    """``table`` with only the columns the database has (a test at an older revision
    must not be sent a later column's default)."""
    present = {column["name"] for column in inspect(conn).get_columns(table.name)}
    if present >= set(table.c.keys()):
        return table
    kept = [column._copy() for column in table.columns if column.name in present]
    for column in kept:
        column.foreign_keys.clear()
        column.constraints.clear()
    return Table(table.name, MetaData(), *kept)


def epoch(number: int, **extra: Any) -> dict[str, Any]:
    """One epoch's row of a training curve, plausible values, ``extra`` columns added."""
    return {
        "epoch": number,
        "train_loss": 1 / (number + 1),
        "val_loss": 1.2 / (number + 1),
        "train_accuracy": 0.5 + number / 100,
        "val_accuracy": 0.45 + number / 100,
        **extra,
    }
