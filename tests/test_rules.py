"""Database rules, proved on both dialects: ON DELETE, CHECK and foreign keys."""

from __future__ import annotations

import pytest
from sqlalchemy import CheckConstraint, inspect, select, text
from sqlalchemy.exc import IntegrityError

import pfd_db.models as models
from factories import insert_row
from pfd_db.models import Base
from test_schema import ON_DELETE, RELATIONSHIPS, relationship_named

TABLES = Base.metadata.tables

# What a CHECK must refuse, by constraint name; the column is the name's tail.
BAD_VALUES = {
    "ck_dataset_generations_progress": [101, -1],
    "ck_dataset_imports_progress": [101, -1],
    "ck_tags_color": ["red", "#12345g", "1234567", "#12 456"],
}
CHECKS = sorted(
    constraint.name
    for table in TABLES.values()
    for constraint in table.constraints
    if isinstance(constraint, CheckConstraint)
)


def row_of(engine, table_name: str, row_id: int):
    table = TABLES[table_name]
    with engine.connect() as conn:
        return conn.execute(select(table).where(table.c.id == row_id)).mappings().first()


@pytest.mark.parametrize(("child", "column"), sorted(ON_DELETE))
def test_deleting_a_parent_applies_the_on_delete_rule(engine, db, child, column):
    parent, rule = ON_DELETE[child, column]
    with engine.begin() as conn:
        parent_id = insert_row(conn, parent)
        child_id = insert_row(conn, child, **{column: parent_id})
    delete_parent = text(f"DELETE FROM {parent} WHERE id = :id")

    if rule == "RESTRICT":
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(delete_parent, {"id": parent_id})
        assert row_of(engine, parent, parent_id) is not None
        assert row_of(engine, child, child_id)[column] == parent_id
        return

    with engine.begin() as conn:
        conn.execute(delete_parent, {"id": parent_id})
    remaining = row_of(engine, child, child_id)
    if rule == "CASCADE":
        assert remaining is None
    else:
        assert remaining is not None and remaining[column] is None


@pytest.mark.parametrize("path", sorted(RELATIONSHIPS))
def test_orm_delete_of_a_parent_agrees_with_the_rule(engine, db, path):
    rel = relationship_named(path)
    parent_cls = rel.parent.class_
    [fk_column] = [c.name for c in rel.remote_side]
    child_table = rel.mapper.local_table.name
    with engine.begin() as conn:
        parent_id = insert_row(conn, parent_cls.__tablename__)
        child_id = insert_row(conn, child_table, **{fk_column: parent_id})

    parent = db.get(parent_cls, parent_id)
    if rel.lazy != "write_only":
        assert len(getattr(parent, rel.key)) == 1  # loaded: the ORM sees the child
    db.delete(parent)
    if RELATIONSHIPS[path] == "RESTRICT":
        with pytest.raises(IntegrityError):
            db.commit()
        db.rollback()
        assert row_of(engine, child_table, child_id)[fk_column] == parent_id
        return
    db.commit()
    remaining = row_of(engine, child_table, child_id)
    if RELATIONSHIPS[path] == "CASCADE":
        assert remaining is None
    else:
        assert remaining is not None and remaining[fk_column] is None


@pytest.mark.parametrize("name", CHECKS)
def test_check_constraint_rejects_a_bad_value_written_with_raw_sql(engine, db, name):
    table_name = next(t.name for t in TABLES.values() if name.startswith(f"ck_{t.name}_"))
    column = name.removeprefix(f"ck_{table_name}_")
    assert column in TABLES[table_name].c, f"{name} does not name its column"
    with engine.begin() as conn:
        row_id = insert_row(conn, table_name)
    for bad in BAD_VALUES.get(name, ["bogus"]):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                text(f"UPDATE {table_name} SET {column} = :bad WHERE id = :id"),
                {"bad": bad, "id": row_id},
            )
    assert row_of(engine, table_name, row_id)[column] != "bogus"


def test_every_schema_check_is_tested():
    expected_columns = {
        "users": {"role"}, "login_history": {"login_method"},
        "api_metrics_summary": {"aggregation_type"}, "experiments": {"status"},
        "hpo_campaigns": {"method", "status"}, "nas_campaigns": {"search_algorithm", "status"},
        "dataset_generations": {"status", "progress"}, "dataset_imports": {"status", "progress"},
        "notification_preferences": {"event_type", "email_frequency"},
        "email_logs": {"event_type", "status"}, "email_digest_queue": {"event_type"},
        "webhook_configurations": {"provider_type"},
        "webhook_logs": {"event_type", "provider_type", "status"},
        "tags": {"color"}, "system_logs": {"status"},
        "rollup_watermarks": {"aggregation_type"}, "rollup_stale_periods": {"aggregation_type"},
    }  # fmt: skip
    assert set(CHECKS) == {
        f"ck_{table}_{column}" for table, columns in expected_columns.items() for column in columns
    }


def test_a_valid_color_passes_the_check(engine, db):
    with engine.begin() as conn:
        tag_id = insert_row(conn, "tags", color="#A0b1C2")
    assert row_of(engine, "tags", tag_id)["color"] == "#A0b1C2"


@pytest.mark.parametrize(("child", "column"), [("api_keys", "user_id"), ("signals", "dataset_id")])
def test_a_dangling_foreign_key_is_rejected(engine, db, child, column):
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_row(conn, child, **{column: 987654})
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {child}")).scalar_one() == 0


def test_unique_constraints_hold(engine, db):
    with engine.begin() as conn:
        user_id = insert_row(conn, "users")
        insert_row(conn, "saved_searches", user_id=user_id, name="mine")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_row(conn, "saved_searches", user_id=user_id, name="mine")


def test_the_models_inspect_like_the_metadata(engine, db):
    live = inspect(engine)
    assert set(TABLES) <= set(live.get_table_names())
    live_fks = {
        (table, fk["constrained_columns"][0]): (fk["referred_table"], fk["options"].get("ondelete"))
        for table in TABLES
        for fk in live.get_foreign_keys(table)
    }
    assert live_fks == ON_DELETE
    assert models.User.__table__.c.role.type.enums == ["viewer", "operator", "admin", "super_admin"]
