"""The dashboard's queries are served by indexes: their plans on PostgreSQL.

Each store function runs against a migrated database whose tables hold enough
rows for the planner to prefer an index by itself (200 000 request logs over 30
days, 100 000 usage records, login attempts and audit entries), with fresh
statistics; no ``enable_seqscan`` games. Where an index serves a filter (an
endpoint, a key), the filter picks out few rows, as the dashboard's drill-downs
do (for a busy endpoint the planner may as well walk the time index backwards).
The statements a call sends are caught as sent, then EXPLAINed with the same
parameters: each must read the table it filters through the index named (an
Index, Index Only or Bitmap Index Scan), never a sequential scan of that table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.store.identity import logins
from pfd_db.store.ops import audit, partitions, request_figures, request_lists, retention, rollups
from probes import empty_partitions, executions, partition_parents

INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}
NOW = datetime(2026, 6, 30, tzinfo=UTC)
START = NOW - timedelta(days=30)
REQUESTS = 200_000
KEYS = 20
RARE_KEY = KEYS  # a key that made few of the requests (one in a thousand)
USERS = 100


@pytest.fixture(scope="module")
def engine(pg_server):
    name = f"pfd_plans_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name)
    engine = make_engine(pg_server.url(name))
    try:
        migrations.upgrade(engine)
        fill(engine)
        yield engine
    finally:
        engine.dispose()
        pg_server.drop_database(name)


def fill(engine) -> None:
    statements = [
        f"INSERT INTO users (username, email, role) SELECT 'user' || i, 'user' || i || "
        f"'@example.com', 'viewer' FROM generate_series(1, {USERS}) AS i",
        f"INSERT INTO api_keys (user_id, key_hash, name, prefix, scopes) SELECT 1 + i % "
        f"{USERS}, md5(i::text), 'key ' || i, lpad(to_hex(i), 16, '0'), ARRAY['read'] "
        f"FROM generate_series(1, {KEYS}) AS i",
        "INSERT INTO api_request_logs (endpoint, method, status_code, request_time, "
        "response_time_ms, api_key_id, error_message) SELECT "
        "CASE WHEN i % 1000 = 0 THEN '/api/v1/rare' ELSE '/api/v1/r' || (i % 50) END, 'GET', "
        "CASE WHEN i % 97 = 0 THEN 500 ELSE 200 END, "
        f"CAST(:start AS timestamptz) + i * interval '12.96 seconds', (i * 7919 % 5000) / 10.0, "
        f"CASE WHEN i % 1000 = 1 THEN {RARE_KEY} WHEN i % 3 = 0 THEN 1 + i % ({KEYS} - 1) END, "
        "CASE WHEN i % 97 = 0 THEN 'boom' END "
        f"FROM generate_series(1, {REQUESTS}) AS i",
        "INSERT INTO api_usage (api_key_id, endpoint, method, status_code, response_time_ms, "
        f"timestamp) SELECT CASE WHEN i % 500 = 0 THEN {RARE_KEY} ELSE 1 + i % ({KEYS} - 1) END, "
        "'/api/v1/r' || (i % 50), 'GET', 200, i % 300, "
        "CAST(:start AS timestamptz) + i * interval '25.92 seconds' "
        "FROM generate_series(1, 100000) AS i",
        "INSERT INTO login_history (user_id, username_attempted, ip_address, login_method, "
        f"success, timestamp) SELECT 1 + i % {USERS}, 'user' || (1 + i % {USERS}), '10.0.0.1', "
        "'password', i % 5 > 0, CAST(:start AS timestamptz) + i * interval '25.92 seconds' "
        "FROM generate_series(1, 100000) AS i",
        "INSERT INTO system_logs (user_id, action, status, details, created_at, updated_at) "
        f"SELECT 1 + i % {USERS}, 'thing.action' || (i % 50), 'success', '{{}}', "
        "CAST(:start AS timestamptz) + i * interval '25.92 seconds', now() "
        "FROM generate_series(1, 100000) AS i",
    ]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), {"start": START})
    with Session(engine) as session:  # the months' partitions, as pfd-db maintain makes them
        partitions.ensure_partitions(session, now=NOW)
        session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def scans(plan: dict) -> Iterator[tuple[str, str, str | None]]:
    """(node type, table, index) of every scan in a JSON plan."""
    node_type = plan.get("Node Type", "")
    if node_type == "Bitmap Heap Scan":  # its index is named by the Bitmap Index Scans below
        for child in plan.get("Plans", []):
            for _type, _table, index in scans(child):
                yield node_type, plan["Relation Name"], index
        return
    if "Scan" in node_type and "Relation Name" in plan:
        yield node_type, plan["Relation Name"], plan.get("Index Name")
    if node_type == "Bitmap Index Scan":
        yield node_type, "", plan["Index Name"]
    for child in plan.get("Plans", []):
        yield from scans(child)


def plans_of(engine, call: Callable[[Session], object]) -> list[list[tuple[str, str, str | None]]]:
    """The scans of each statement ``call`` sends (EXPLAINed with the same parameters)."""
    with Session(engine) as session, executions(engine) as sent:
        call(session)
        session.rollback()
    found = []
    with engine.connect() as conn:
        # A partition's scan is a read of its table; an empty partition costs nothing.
        parent, empty = partition_parents(conn), empty_partitions(conn)
        for statement, parameters in sent:
            if statement.lstrip().upper().startswith(("SELECT", "INSERT", "DELETE", "WITH")):
                explained = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
                found.append(
                    [
                        (kind, parent.get(table, table), parent.get(index or "", index))
                        for kind, table, index in scans(explained.scalar_one()[0]["Plan"])
                        if table not in empty
                    ]
                )
    return found


def assert_served_by(engine, call, table: str, *indexes: str) -> None:
    """Every statement of ``call`` that reads ``table`` does so through one of ``indexes``."""
    reads = [scan for plan in plans_of(engine, call) for scan in plan if scan[1] == table]
    assert reads, f"no statement read {table}"
    for node_type, _table, index in reads:
        assert node_type in INDEX_SCANS and index in indexes, (node_type, index, indexes)


DAY_AGO = NOW - timedelta(days=1)
HOUR_AGO = NOW - timedelta(hours=1)
REQUEST_TIME = ("ix_api_request_logs_request_time", "ix_api_request_logs_rollup")

CASES = {
    "recent requests": (
        lambda s: request_lists.recent_requests(s, DAY_AGO, NOW, limit=50),
        "api_request_logs", REQUEST_TIME,
    ),
    "recent requests, next page": (
        lambda s: request_lists.recent_requests(s, DAY_AGO, NOW, limit=50, before_id=190_000),
        "api_request_logs", (*REQUEST_TIME, "pk_api_request_logs"),
    ),
    "recent requests of an endpoint": (
        lambda s: request_lists.recent_requests(s, START, NOW, endpoint="/api/v1/rare"),
        "api_request_logs", ("ix_api_request_logs_endpoint_time",),
    ),
    "recent requests of a key": (
        lambda s: request_lists.recent_requests(s, START, NOW, api_key=RARE_KEY),
        "api_request_logs", ("ix_api_request_logs_key_time",),
    ),
    "error log": (
        lambda s: request_lists.error_logs(s, START, NOW, limit=100),
        "api_request_logs", ("ix_api_request_logs_errors",),
    ),
    "endpoint metrics": (
        lambda s: request_figures.endpoint_metrics(s, HOUR_AGO, NOW),
        "api_request_logs", (*REQUEST_TIME, "ix_api_request_logs_endpoint_time"),
    ),
    "timeline": (
        lambda s: request_figures.timeline(s, NOW - timedelta(hours=6), NOW, timedelta(minutes=10)),
        "api_request_logs", REQUEST_TIME,
    ),
    "top api keys": (
        lambda s: request_figures.top_api_keys(s, DAY_AGO, NOW),
        "api_request_logs", (*REQUEST_TIME, "ix_api_request_logs_key_time"),
    ),
    "hourly rollup": (
        lambda s: rollups.rollup(s, "hourly", HOUR_AGO, NOW),
        "api_request_logs", REQUEST_TIME,
    ),
    "key usage per day": (
        lambda s: request_figures.key_usage(s, RARE_KEY, NOW - timedelta(days=7), NOW),
        "api_usage", ("ix_api_usage_key_time",),
    ),
    "login history": (
        lambda s: logins.history(s, 7, limit=20),
        "login_history", ("ix_login_history_user_time",),
    ),
    "audit entries of an action": (
        lambda s: audit.entries(s, action="thing.action7", limit=20),
        "system_logs", ("idx_system_log_action_time",),
    ),
    "audit entries of an actor": (
        lambda s: audit.entries(s, actor=9, limit=20),
        "system_logs", ("idx_system_log_user_time",),
    ),
    "audit entries of a day": (
        lambda s: audit.entries(s, since=DAY_AGO, until=NOW, limit=20),
        "system_logs", ("idx_system_log_time_status",),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_the_dashboards_queries_read_through_an_index(engine, case):
    call, table, indexes = CASES[case]
    assert_served_by(engine, call, table, *indexes)


def test_a_retention_batch_finds_its_rows_through_the_time_index(engine):
    """The count of a clean and each batch's ``DELETE ... WHERE id IN (SELECT id ...
    LIMIT n)``: the old rows are found through the time index, then deleted by
    primary key. (It runs last: it removes the first ten minutes' requests.)"""
    age = timedelta(days=29, hours=23, minutes=50)

    def clean(_session: Session) -> None:
        retention.clean(engine, older_than=age, tables=["api_request_logs"], batch_size=20,
                        now=NOW)  # fmt: skip

    assert_served_by(engine, clean, "api_request_logs", *REQUEST_TIME, "pk_api_request_logs")
