"""The digest-queue reads and the overall request figures are served by indexes, on
both dialects: PostgreSQL's plans (EXPLAIN, as in test_query_plans.py) and SQLite's
(EXPLAIN QUERY PLAN), over a migrated database with enough rows that a scan of
the table would show.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.store.notify import digests
from pfd_db.store.ops import partitions, request_figures
from probes import empty_partitions, executions, partition_parents

NOW = datetime(2026, 6, 30, tzinfo=UTC)
START = NOW - timedelta(days=30)
REQUESTS = 60_000
ENTRIES = 30_000
USERS = 200
PG_INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


@pytest.fixture(scope="module")
def loaded(dialect, tmp_path_factory, request) -> Iterator[Engine]:
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'plans.db'}"
        engine = make_engine(url)
        migrations.upgrade(engine)
        fill(engine, series="WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
             "FROM s WHERE i < {n}) SELECT {columns} FROM s")  # fmt: skip
        yield engine
        engine.dispose()
        return
    server = request.getfixturevalue("pg_server")
    name = f"pfd_admin_plans_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    engine = make_engine(server.url(name))
    try:
        migrations.upgrade(engine)
        fill(engine, series="SELECT {columns} FROM generate_series(1, {n}) AS i")
        with Session(engine) as session:  # the months' partitions, as pfd-db maintain makes
            partitions.ensure_partitions(session, now=NOW)
            session.commit()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        yield engine
    finally:
        engine.dispose()
        server.drop_database(name)


def fill(engine: Engine, series: str) -> None:
    """Request logs over 30 days; users with a daily preference for one event; a
    digest queue almost all sent, a few entries pending, one user's rare event."""
    postgresql = engine.dialect.name == "postgresql"

    def moment(step: str) -> str:
        if postgresql:
            return f"CAST(:start AS timestamptz) + i * interval '{step} seconds'"
        return f"strftime('%Y-%m-%d %H:%M:%f', :start, '+' || (i * {step}) || ' seconds')"

    true, false = ("true", "false") if postgresql else ("1", "0")
    rows = {
        "users (username, email, role)": (
            USERS, "'user' || i, 'user' || i || '@example.com', 'viewer'"),
        "notification_preferences (user_id, event_type, email_frequency)": (
            USERS, "i, 'training.complete', 'digest_daily'"),
        "api_request_logs (endpoint, method, status_code, request_time, response_time_ms)": (
            REQUESTS, "'/api/v1/r' || (i % 50), 'GET', CASE WHEN i % 97 = 0 THEN 500 ELSE 200 "
            f"END, {moment('43.2')}, (i * 7919 % 5000) / 10.0"),
        "email_digest_queue (user_id, event_type, event_data, scheduled_for, included_in_digest)": (
            ENTRIES, f"1 + i % {USERS}, CASE WHEN i % 1000 = 0 THEN 'training.failed' ELSE "
            f"'training.complete' END, '{{}}', {moment('86.4')}, "
            f"CASE WHEN i % 300 = 0 THEN {false} ELSE {true} END"),
    }  # fmt: skip
    with engine.begin() as conn:
        for table, (n, columns) in rows.items():
            select = series.format(n=n, columns=columns)
            conn.execute(text(f"INSERT INTO {table} {select}"), {"start": START})
        if not postgresql:
            conn.execute(text("ANALYZE"))


def scans(plan: dict) -> Iterator[tuple[str, str, str | None]]:
    node_type = plan.get("Node Type", "")
    if node_type == "Bitmap Heap Scan":
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


def reads(engine: Engine, call: Callable[[Session], object], table: str) -> list[str]:
    """How each statement ``call`` sends reads ``table``: the index it uses, or
    "scan" for a read of the whole table."""
    with Session(engine) as session, executions(engine) as sent:
        call(session)
        session.rollback()
    found = []
    with engine.connect() as conn:
        for statement, parameters in sent:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            if engine.dialect.name == "postgresql":
                # A partition's scan reads its table; an empty partition costs nothing.
                parent, empty = partition_parents(conn), empty_partitions(conn)
                plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
                found += [
                    parent.get(index, index) if kind in PG_INDEX_SCANS and index else "scan"
                    for kind, name, index in scans(plan.scalar_one()[0]["Plan"])
                    if parent.get(name, name) == table and name not in empty
                ]
            else:
                plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                for *_ids, detail in plan:
                    words = detail.split()
                    if len(words) > 1 and words[1] == table and words[0] in ("SCAN", "SEARCH"):
                        found.append(_sqlite_index(detail))
    return found


def _sqlite_index(detail: str) -> str:
    """The index a SQLite plan line names ("... USING [COVERING] INDEX name (...)"),
    or "scan"."""
    words = detail.split()
    if "INTEGER PRIMARY KEY" in detail:
        return f"pk_{words[1]}"
    if "INDEX" not in words:
        return "scan"
    return words[words.index("INDEX") + 1]


DAY_AGO = NOW - timedelta(days=1)
QUEUE_INCLUDED = ("idx_digest_queue_included", "ix_email_digest_queue_scheduled_for")
QUEUE_USER = ("idx_digest_queue_user_scheduled",)
PREFERENCE = ("uq_user_event_type", "sqlite_autoindex_notification_preferences_1")
REQUEST_TIME = ("ix_api_request_logs_rollup", "ix_api_request_logs_request_time")

CASES = {
    "pending entries": (
        lambda s: digests.pending(s, limit=50), "email_digest_queue", QUEUE_INCLUDED),
    "pending entries, next page": (
        lambda s: digests.pending(s, limit=50, after_id=300),
        "email_digest_queue", (*QUEUE_INCLUDED, "pk_email_digest_queue")),
    "pending entries of a user": (
        lambda s: digests.pending(s, user=7), "email_digest_queue",
        (*QUEUE_USER, *QUEUE_INCLUDED)),
    "pending entries of an event type": (
        lambda s: digests.pending(s, event_type="training.failed"),
        "email_digest_queue", ("idx_digest_queue_event_scheduled", *QUEUE_INCLUDED)),
    "sent history": (
        lambda s: digests.sent_history(s, limit=50), "email_digest_queue", QUEUE_INCLUDED),
    "sent history of a user": (
        lambda s: digests.sent_history(s, user=7, limit=50), "email_digest_queue", QUEUE_USER),
    "queue stats": (
        lambda s: digests.queue_stats(s, NOW, sent_since=DAY_AGO), "email_digest_queue",
        QUEUE_INCLUDED),
    "users with entries": (
        lambda s: digests.users_with_entries(s, limit=20), "email_digest_queue", QUEUE_USER),
    "overall request stats": (
        lambda s: request_figures.request_stats(s, DAY_AGO, NOW), "api_request_logs",
        REQUEST_TIME),
    "overall percentiles": (
        lambda s: request_figures.request_percentiles(s, DAY_AGO, NOW), "api_request_logs",
        REQUEST_TIME),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_the_admin_reads_go_through_an_index(loaded, case):
    call, table, indexes = CASES[case]
    found = reads(loaded, call, table)
    assert found, f"no statement read {table}"
    assert all(index in indexes for index in found), (found, indexes)


def test_the_preference_of_each_entry_is_found_by_its_unique_index(loaded):
    found = reads(loaded, lambda s: digests.pending(s, limit=50), "notification_preferences")
    assert found and all(index in PREFERENCE for index in found), found
