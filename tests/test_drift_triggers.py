"""``check`` and ``migrate --adopt`` compare triggers and expression indexes too:
a trigger dropped (or, on PostgreSQL, disabled, or its function gone) or a
``lower()`` index dropped is schema drift: ``check`` exits 3, ``adopt`` refuses."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from cli_support import pfd_db
from pfd_db import migrations
from pfd_db.errors import SchemaDrift
from pfd_db.migrations.compare import expected_functions, expected_triggers
from pfd_db.models import Base


def live_triggers(engine) -> set[str]:
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        if engine.dialect.name == "sqlite"
        else "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    )
    with engine.connect() as conn:
        return set(conn.scalars(text(query)))


def drop_trigger(engine, name: str) -> None:
    table = expected_triggers(engine.dialect.name)[name]
    on = "" if engine.dialect.name == "sqlite" else f" ON {table}"
    with engine.begin() as conn:
        conn.execute(text(f"DROP TRIGGER {name}{on}"))


def test_the_expected_triggers_are_what_a_migrated_database_has(fresh_engine, dialect):
    migrations.upgrade(fresh_engine)
    expected = set(expected_triggers(dialect))
    wanted = {"experiment_tags_count_insert", "experiment_tags_count_delete",
              "experiment_tags_count_update"}  # fmt: skip
    if dialect == "sqlite":
        wanted |= {"experiments_fts_ai", "experiments_fts_ad", "experiments_fts_au"}
    assert expected == wanted == live_triggers(fresh_engine)
    assert expected_functions(dialect) == (set() if dialect == "sqlite" else {"count_tag_links"})
    assert migrations.schema_drift(fresh_engine) == []


def test_check_reports_each_dropped_trigger_as_drift(fresh_url, fresh_engine, dialect):
    assert pfd_db("migrate", "--url", fresh_url).exit_code == 0
    for name, table in sorted(expected_triggers(dialect).items()):
        drop_trigger(fresh_engine, name)
        result = pfd_db("check", "--url", fresh_url)
        assert result.exit_code == 3, result.output
        assert f"add_trigger: {name} on {table}" in result.stderr
    assert len(migrations.schema_drift(fresh_engine)) == len(expected_triggers(dialect))


def test_check_reports_a_trigger_moved_disabled_or_without_its_function(
    fresh_url, fresh_engine, dialect
):
    assert pfd_db("migrate", "--url", fresh_url).exit_code == 0
    if dialect == "sqlite":  # SQLite triggers cannot be disabled: one on the wrong table
        drop_trigger(fresh_engine, "experiments_fts_ai")
        with fresh_engine.begin() as conn:
            conn.execute(text("CREATE TRIGGER experiments_fts_ai AFTER INSERT ON tags "
                              "BEGIN SELECT 1; END"))  # fmt: skip
        drift = migrations.schema_drift(fresh_engine)
        assert drift == [
            "add_trigger: experiments_fts_ai on experiments",
            "remove_trigger: experiments_fts_ai on tags",
        ]
        assert pfd_db("check", "--url", fresh_url).exit_code == 3
        return
    with fresh_engine.begin() as conn:
        conn.execute(text("ALTER TABLE experiment_tags DISABLE TRIGGER USER"))
    result = pfd_db("check", "--url", fresh_url)
    assert result.exit_code == 3
    assert "disabled_trigger: experiment_tags_count_insert on experiment_tags" in result.stderr
    with fresh_engine.begin() as conn:
        conn.execute(text("DROP FUNCTION count_tag_links() CASCADE"))
    drift = migrations.schema_drift(fresh_engine)
    assert "add_function: count_tag_links" in drift
    assert "add_trigger: experiment_tags_count_update on experiment_tags" in drift


def test_an_extra_trigger_is_drift(fresh_url, fresh_engine, dialect):
    assert pfd_db("migrate", "--url", fresh_url).exit_code == 0
    body = "BEGIN SELECT 1; END" if dialect == "sqlite" else "EXECUTE FUNCTION count_tag_links()"
    each = "" if dialect == "sqlite" else "FOR EACH STATEMENT "
    with fresh_engine.begin() as conn:
        conn.execute(text(f"CREATE TRIGGER by_hand AFTER INSERT ON tags {each}{body}"))
    result = pfd_db("check", "--url", fresh_url)
    assert result.exit_code == 3 and "remove_trigger: by_hand on tags" in result.stderr


def test_a_dropped_lower_index_is_drift(fresh_url, fresh_engine):
    assert pfd_db("migrate", "--url", fresh_url).exit_code == 0
    with fresh_engine.begin() as conn:
        conn.execute(text("DROP INDEX ux_users_email_lower"))
        conn.execute(text("DROP INDEX ux_users_username_lower"))
        conn.execute(text("CREATE INDEX ux_users_username_lower ON users (lower(username))"))
    result = pfd_db("check", "--url", fresh_url)
    assert result.exit_code == 3
    assert "add_index: ux_users_email_lower (unique lower(email) on users)" in result.stderr
    assert "remove_index: ux_users_username_lower" in result.stderr  # no longer unique


def test_adopt_refuses_a_database_missing_a_trigger(fresh_url, fresh_engine, dialect):
    Base.metadata.create_all(fresh_engine)
    assert migrations.schema_drift(fresh_engine) == []
    name = "experiment_tags_count_delete"
    drop_trigger(fresh_engine, name)
    with pytest.raises(SchemaDrift):
        migrations.adopt(fresh_engine)
    result = pfd_db("migrate", "--adopt", "--url", fresh_url)
    assert result.exit_code == 2 and f"add_trigger: {name}" in result.stderr  # adopt refuses
    assert not migrations.state(fresh_engine).versioned
