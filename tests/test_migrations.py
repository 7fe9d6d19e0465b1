"""The migration history, on both dialects: from empty to head, back and forth,
atomic on failure, and identical to the models."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from pfd_db import migrations
from pfd_db.errors import MigrationError, SchemaDrift, UnversionedDatabase
from pfd_db.migrations.revisions import downgrade_loses_data, plan_downgrade
from pfd_db.models import Base

FAILING_REVISION_DIR = Path(__file__).parent / "failing_revision"


def table_names(engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def user_columns(engine) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns("users")}


def test_upgrade_from_empty_reaches_head_with_every_table(fresh_engine):
    assert migrations.state(fresh_engine).current is None
    state = migrations.upgrade(fresh_engine)
    assert state.at_head and state.current == migrations.head_revision()
    assert set(Base.metadata.tables) | {"alembic_version"} <= table_names(fresh_engine)
    assert state.model_tables == 29


def test_the_migrated_schema_equals_the_models(fresh_engine):
    migrations.upgrade(fresh_engine)
    assert migrations.schema_drift(fresh_engine) == []


def test_the_migrated_full_text_objects_equal_the_models_ones(fresh_engine, engine, dialect):
    migrations.upgrade(fresh_engine)
    if dialect == "sqlite":
        query = text(
            "SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'experiments_fts%' "
            "ORDER BY name"
        )
    else:
        query = text(
            "SELECT a.attname, a.attgenerated, pg_get_expr(d.adbin, d.adrelid) "
            "FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid "
            "AND d.adnum = a.attnum WHERE a.attrelid = 'experiments'::regclass "
            "AND a.attname = 'search_vector' "
            "UNION ALL SELECT indexname, '', indexdef FROM pg_indexes "
            "WHERE indexname = 'ix_experiments_search_vector'"
        )

    def objects(eng):
        with eng.connect() as conn:
            return [tuple(" ".join(str(v).split()) for v in row) for row in conn.execute(query)]

    migrated = objects(fresh_engine)
    assert migrated == objects(engine)  # the create_all database of the suite
    assert len(migrated) >= (4 if dialect == "sqlite" else 2)


def test_full_text_search_works_after_migrating(fresh_engine, dialect):
    migrations.upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO datasets (name, num_signals, fault_types, severity_levels, file_path)"
                " VALUES ('d', 1, '[]', '[]', 'd.h5')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO experiments (name, model_type, dataset_id, config, notes) "
                "VALUES ('cnn baseline', 'resnet', 1, '{}', 'bearings were vibrating')"
            )
        )
    match = (
        "SELECT rowid FROM experiments_fts WHERE experiments_fts MATCH 'vibrate'"
        if dialect == "sqlite"
        else "SELECT id FROM experiments WHERE search_vector @@ plainto_tsquery('english', "
        "'vibrate')"
    )
    with fresh_engine.connect() as conn:
        assert conn.execute(text(match)).scalars().all() == [1]


def test_head_to_base_to_head_round_trips(fresh_engine):
    migrations.upgrade(fresh_engine)
    down = migrations.downgrade(fresh_engine, "base")
    assert down.current is None
    assert table_names(fresh_engine) <= {"alembic_version"}
    up = migrations.upgrade(fresh_engine)
    assert up.at_head
    assert migrations.schema_drift(fresh_engine) == []


def test_migrating_twice_is_a_no_op(fresh_engine):
    first = migrations.upgrade(fresh_engine)
    tables = table_names(fresh_engine)
    second = migrations.upgrade(fresh_engine)
    assert first == second
    assert table_names(fresh_engine) == tables


def test_a_revision_that_fails_half_way_leaves_the_database_as_it_was(fresh_engine):
    migrations.upgrade(fresh_engine, "0001")  # the failing revision branches off 0001
    tables, columns = table_names(fresh_engine), user_columns(fresh_engine)
    config = migrations.alembic_config()
    config.set_main_option(
        "version_locations", f"{migrations.MIGRATIONS_DIR / 'versions'}:{FAILING_REVISION_DIR}"
    )
    with fresh_engine.connect() as conn, pytest.raises(Exception, match="no_such_table"):
        config.attributes["connection"] = conn
        command.upgrade(config, "0002_fails")
    assert migrations.state(fresh_engine).current == "0001"
    assert table_names(fresh_engine) == tables
    assert "half_done" not in table_names(fresh_engine)
    assert user_columns(fresh_engine) == columns


def test_an_unknown_revision_is_a_migration_error(fresh_engine):
    with pytest.raises(MigrationError, match="nope"):
        migrations.upgrade(fresh_engine, "nope")
    assert table_names(fresh_engine) == set()


def test_a_create_all_database_must_be_adopted(fresh_engine):
    Base.metadata.create_all(fresh_engine)
    with pytest.raises(UnversionedDatabase, match="--adopt"):
        migrations.upgrade(fresh_engine)
    state = migrations.adopt(fresh_engine)
    assert state.at_head
    assert migrations.upgrade(fresh_engine).at_head


def test_adoption_is_refused_when_the_schema_does_not_match(fresh_engine):
    Base.metadata.create_all(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_users_is_active"))
    with pytest.raises(SchemaDrift) as refused:
        migrations.adopt(fresh_engine)
    assert any("ix_users_is_active" in d for d in refused.value.differences)
    assert not migrations.state(fresh_engine).versioned


@pytest.mark.parametrize(
    "url", ["sqlite:///offline.db", "postgresql://dba@db.example/pfd"], ids=["sqlite", "pg"]
)
def test_offline_sql_creates_all_29_tables(url):
    sql = migrations.offline_sql(url)
    for table in Base.metadata.tables:
        assert f"CREATE TABLE {table} (" in sql, table
    assert "INSERT INTO alembic_version" in sql


def test_the_history_is_linear_and_every_revision_can_go_down():
    revisions = migrations.history()
    downs = [rev.down_revision for rev in revisions]
    assert len(set(downs)) == len(downs), "two revisions share a down-revision (a branch)"
    assert downs[0] is None
    assert [rev.revision for rev in revisions[:-1]] == downs[1:]
    for script in migrations.script_directory().walk_revisions():
        tree = ast.parse(Path(script.path).read_text())
        [downgrade] = [n for n in tree.body if getattr(n, "name", None) == "downgrade"]
        assert not all(isinstance(stmt, ast.Pass) for stmt in downgrade.body), script.revision


def test_every_revision_declares_whether_its_downgrade_loses_data():
    for script in migrations.script_directory().walk_revisions():
        declared = getattr(script.module, "downgrade_loses_data", None)
        assert isinstance(declared, bool), f"{script.revision} declares no downgrade_loses_data"
    template = (migrations.MIGRATIONS_DIR / "script.py.mako").read_text()
    assert "\ndowngrade_loses_data = " in template


def test_a_downgrade_plan_lists_the_declared_losses():
    plan = plan_downgrade(migrations.head_revision(), "base")
    scripts = list(migrations.script_directory().walk_revisions())
    assert plan.target is None and plan.target_name == "base"
    assert plan.undone == [s.revision for s in scripts]
    assert plan.losing == [s.revision for s in scripts if s.module.downgrade_loses_data]
    assert "0001" in plan.losing and "0002" not in plan.losing
    assert downgrade_loses_data("0001") and not downgrade_loses_data("0002")


@pytest.mark.parametrize(
    ("current", "wanted", "target", "undone"),
    [
        ("0002", "-1", "0001", ["0002"]),
        ("0007", "-3", "0004", ["0007", "0006", "0005"]),
        ("0001", "-1", None, ["0001"]),
        ("0005", "0003", "0003", ["0005", "0004"]),
        ("0005", "base", None, ["0005", "0004", "0003", "0002", "0001"]),
        ("0005", "0005", "0005", []),
    ],
)
def test_a_downgrade_target_is_resolved_by_alembic(current, wanted, target, undone):
    plan = plan_downgrade(current, wanted)
    assert (plan.target, plan.undone) == (target, undone)


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        ("nope", "no single revision 'nope'"),
        ("000", "no single revision '000'"),
        ("", "no single revision ''"),
        ("+1", "no single revision '+1'"),
        ("-5", "cannot go 5 steps back from 0002: it is 2 above base"),
        ("0004", "0004 is above the current revision 0002: run pfd-db migrate --to 0004"),
        ("head", f"{migrations.head_revision()} is above the current revision 0002"),
    ],
)
def test_a_downgrade_target_that_names_nothing_below_is_refused(wanted, message):
    with pytest.raises(MigrationError, match=re.escape(message)):
        plan_downgrade("0002", wanted)


def test_an_unknown_revision_has_no_declaration_to_read():
    with pytest.raises(MigrationError, match="no revision 'nope'"):
        downgrade_loses_data("nope")


def test_the_stock_alembic_command_works_with_the_packaged_ini(fresh_url, fresh_engine):
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(migrations.ALEMBIC_INI),
         "-x", f"url={fresh_url}", "upgrade", "head"],
        check=True, capture_output=True,
    )  # fmt: skip
    assert migrations.state(fresh_engine).at_head


# --- 0002: one explanation per (experiment, signal, method) -------------------------------

EXPLANATIONS_AT_0001 = [  # (experiment, signal, method, n): n tells the copies apart
    (1, "s1", "shap", 1),
    (1, "s1", "shap", 2),
    (1, "s1", "lime", 3),
    (1, "s1", "shap", 4),
    (2, "s1", "shap", 5),
    (1, "s2", "shap", 6),
    (1, "s2", "shap", 7),
]


def fill_explanations_at_0001(engine) -> None:
    """Two experiments and ``EXPLANATIONS_AT_0001``, written as revision 0001's
    tables are (no models: they describe the head)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO datasets (name, num_signals, fault_types, severity_levels, file_path)"
                " VALUES ('d', 1, '[]', '[]', 'd.h5')"
            )
        )
        for name in ("a", "b"):
            conn.execute(
                text(
                    "INSERT INTO experiments (name, model_type, dataset_id, config) "
                    "VALUES (:name, 'cnn', 1, '{}')"
                ),
                {"name": name},
            )
        for experiment, signal, method, n in EXPLANATIONS_AT_0001:
            conn.execute(
                text(
                    "INSERT INTO explanations (experiment_id, signal_id, method, explanation_data)"
                    f" VALUES (:experiment, :signal, :method, '{{\"n\": {n}}}')"
                ),
                {"experiment": experiment, "signal": signal, "method": method},
            )


def stored_explanations(engine) -> list[tuple]:
    """(experiment, signal, method, n) of each stored explanation."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT experiment_id, signal_id, method, explanation_data FROM explanations")
        ).all()
    decoded = [
        (e, s, m, data if isinstance(data, dict) else json.loads(data)) for e, s, m, data in rows
    ]
    return sorted((e, s, m, data["n"]) for e, s, m, data in decoded)


def oldest_of_each_key() -> list[tuple]:
    oldest: dict[tuple, int] = {}
    for experiment, signal, method, n in EXPLANATIONS_AT_0001:
        oldest.setdefault((experiment, signal, method), n)
    return sorted((*key, n) for key, n in oldest.items())


def test_0002_keeps_the_oldest_explanation_of_each_key_and_round_trips(fresh_engine):
    migrations.upgrade(fresh_engine, "0001")
    fill_explanations_at_0001(fresh_engine)
    assert migrations.upgrade(fresh_engine, "0002").current == "0002"
    assert stored_explanations(fresh_engine) == oldest_of_each_key()
    with pytest.raises(IntegrityError), fresh_engine.begin() as conn:  # now refused
        conn.execute(
            text(
                "INSERT INTO explanations (experiment_id, signal_id, method, explanation_data)"
                " VALUES (1, 's1', 'shap', '{}')"
            )
        )

    migrations.downgrade(fresh_engine, "0001")
    with fresh_engine.begin() as conn:  # allowed again at 0001
        conn.execute(
            text(
                "INSERT INTO explanations (experiment_id, signal_id, method, explanation_data)"
                " VALUES (1, 's1', 'shap', '{\"n\": 8}')"
            )
        )
    assert len(stored_explanations(fresh_engine)) == len(oldest_of_each_key()) + 1

    migrations.upgrade(fresh_engine, "0002")
    assert stored_explanations(fresh_engine) == oldest_of_each_key()
    migrations.upgrade(fresh_engine)
    assert migrations.schema_drift(fresh_engine) == []
