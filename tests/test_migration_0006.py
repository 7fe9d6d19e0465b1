"""Revision 0006 on both dialects: on a database holding traffic, logins and audit
entries it adds the dashboard's indexes, and down again it drops them; every row
stays as it was both ways."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, text

from factories import insert_row
from pfd_db import migrations

ADDED = {
    "api_request_logs": {
        "ix_api_request_logs_rollup",
        "ix_api_request_logs_endpoint_time",
        "ix_api_request_logs_key_time",
        "ix_api_request_logs_errors",
    },
    "api_usage": {"ix_api_usage_key_time"},
    "login_history": {"ix_login_history_user_time"},
    "system_logs": {"idx_system_log_action_time"},
}
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def indexes(engine) -> dict[str, set[str]]:
    with engine.connect() as conn:
        found = inspect(conn)
        return {table: {ix["name"] for ix in found.get_indexes(table)} for table in ADDED}


def rows(engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            table: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in ADDED
        }


def test_0006_adds_the_indexes_and_takes_them_away_keeping_every_row(fresh_engine):
    migrations.upgrade(fresh_engine, "0005")
    with fresh_engine.begin() as conn:
        user = insert_row(conn, "users")
        key = insert_row(conn, "api_keys", user_id=user)
        for n in range(5):
            insert_row(conn, "api_request_logs", request_time=T0, status_code=200 + 100 * n,
                       api_key_id=key, endpoint=f"/e{n % 2}", response_time_ms=n)  # fmt: skip
            insert_row(conn, "api_usage", api_key_id=key, timestamp=T0)
            insert_row(conn, "login_history", user_id=user, success=n % 2 == 0, timestamp=T0)
            insert_row(conn, "system_logs", user_id=user, action=f"thing.{n}")
    before, stored = indexes(fresh_engine), rows(fresh_engine)
    assert all(not (before[table] & names) for table, names in ADDED.items())

    assert migrations.upgrade(fresh_engine, "0006").current == "0006"
    after = indexes(fresh_engine)
    assert {table: after[table] - before[table] for table in ADDED} == ADDED
    assert rows(fresh_engine) == stored

    assert migrations.downgrade(fresh_engine, "0005").current == "0005"
    assert indexes(fresh_engine) == before
    assert rows(fresh_engine) == stored

    migrations.upgrade(fresh_engine)
    assert migrations.schema_drift(fresh_engine) == []


def test_the_error_index_holds_only_failed_requests(fresh_engine, dialect):
    """The partial index's condition, as each dialect stores it."""
    migrations.upgrade(fresh_engine)
    with fresh_engine.connect() as conn:
        if dialect == "postgresql":
            definition = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                {"name": "ix_api_request_logs_errors"},
            ).scalar_one()
        else:
            definition = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_api_request_logs_errors'")
            ).scalar_one()
    assert "status_code >= 400" in definition and "request_time" in definition
