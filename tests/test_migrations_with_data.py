"""Migrations with data in front of them, on both dialects: a database at revision
0001 full of ``pfd-db demo`` data goes to head and back, and no row, nor any value
of a column that 0001 has, is lost or changed either way."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text
from typer.testing import CliRunner

from pfd_db import migrations
from pfd_db.cli import app
from pfd_db.engine import make_engine

FIRST = "0001"
EXTRA_METRICS = "0005"


@pytest.fixture
def demo_at_0001(fresh_url) -> Engine:
    """A database at 0001 holding the demo's data: made at head with ``pfd-db demo``
    (which writes through the current store), then taken down to 0001."""
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    result = CliRunner().invoke(app, ["demo", "--experiments", "6", "--url", fresh_url])
    assert result.exit_code == 0, result.output
    migrations.downgrade(engine, FIRST)
    assert migrations.state(engine).current == FIRST
    yield engine
    engine.dispose()


def columns_by_table(engine: Engine) -> dict[str, list[str]]:
    """Every table's columns, as the database has them now (SQLite's full-text
    index tables, derived from experiments, left out)."""
    with engine.connect() as conn:
        found = inspect(conn)
        return {
            table: sorted(column["name"] for column in found.get_columns(table))
            for table in found.get_table_names()
            if table != "alembic_version" and not table.startswith("experiments_fts")
        }


def rows_of(engine: Engine, columns: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of each table, on the given columns, in a stable order."""
    with engine.connect() as conn:
        return {
            table: sorted(
                (
                    tuple(row)
                    for row in conn.execute(text(f"SELECT {', '.join(names)} FROM {table}"))
                ),
                key=repr,
            )
            for table, names in columns.items()
        }


def test_every_row_and_value_of_0001s_columns_survives_head_and_back(demo_at_0001):
    engine = demo_at_0001
    at_first = columns_by_table(engine)
    before = rows_of(engine, at_first)
    assert len(before["training_runs"]) > 100 and len(before["experiments"]) == 6
    assert sum(map(len, before.values())) > 500

    migrations.upgrade(engine)
    assert migrations.state(engine).at_head
    assert migrations.schema_drift(engine) == []
    assert rows_of(engine, at_first) == before
    assert set(columns_by_table(engine)["training_runs"]) == {*at_first["training_runs"], "metrics"}
    with engine.connect() as conn:  # the rows already there have no extra metrics
        assert (
            conn.scalar(text("SELECT count(*) FROM training_runs WHERE metrics IS NOT NULL")) == 0
        )

    migrations.downgrade(engine, FIRST)
    assert columns_by_table(engine) == at_first
    assert rows_of(engine, at_first) == before


def test_extra_metrics_go_with_0005_and_the_fixed_columns_stay(demo_at_0001):
    engine = demo_at_0001
    migrations.upgrade(engine, EXTRA_METRICS)
    with engine.begin() as conn:
        conn.execute(text("UPDATE training_runs SET metrics = '{\"f1\": 0.5}' WHERE epoch = 0"))
        fixed = conn.execute(
            text("SELECT id, epoch, train_loss, val_accuracy FROM training_runs ORDER BY id")
        ).all()
    migrations.downgrade(engine, "0004")
    assert "metrics" not in columns_by_table(engine)["training_runs"]
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT id, epoch, train_loss, val_accuracy FROM training_runs ORDER BY id")
            ).all()
            == fixed
        )
    migrations.upgrade(engine)
    assert migrations.schema_drift(engine) == []
