"""Retention on both dialects: ``retention.clean`` and ``pfd-db clean`` remove the old
rows of the log tables only, in committed batches, and a clean killed midway
leaves a consistent database that a second run finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import sessionmaker

from cli_support import PFD_DB, assert_refused, pfd_db
from factories import insert_row
from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.errors import InvalidInput
from pfd_db.models import Base
from pfd_db.store.ops import retention

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
KEPT_TABLES = [
    "users", "api_keys", "experiments", "training_runs", "datasets", "api_metrics_summary",
    "tags", "notification_preferences", "webhook_configurations",
]  # fmt: skip


def count(connection, table: str, where: str = "1 = 1") -> int:
    return connection.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one()


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table: count(conn, table) for table in Base.metadata.tables}


def fill(engine, now: datetime = NOW) -> dict[str, int]:
    """Rows in every retention table on both sides of its default age, and rows
    in tables pfd-db never cleans; how many old rows each table got."""
    with engine.begin() as conn:
        user = insert_row(conn, "users")
        key = insert_row(conn, "api_keys", user_id=user)
        experiment = insert_row(conn, "experiments")
        insert_row(conn, "training_runs", experiment_id=experiment, epoch=0)
        insert_row(conn, "api_metrics_summary", period_start=now - 900 * DAY,
                   period_end=now - 899 * DAY)  # fmt: skip
        hook = insert_row(conn, "webhook_configurations", user_id=user)
        for age in (91, 89):
            insert_row(conn, "api_request_logs", request_time=now - age * DAY, created_at=now)
            insert_row(conn, "api_usage", api_key_id=key, timestamp=now - age * DAY)
            insert_row(conn, "webhook_logs", webhook_config_id=hook, created_at=now - age * DAY)
        insert_row(conn, "webhook_logs", webhook_config_id=hook, created_at=now - 400 * DAY,
                   status="pending")  # still queued: kept however old  # fmt: skip
        for age in (181, 179):
            insert_row(conn, "email_logs", created_at=now - age * DAY, status="failed")
        insert_row(conn, "email_logs", created_at=now - 400 * DAY, status="pending")
        for age in (366, 364):
            insert_row(conn, "login_history", timestamp=now - age * DAY, success=False)
            insert_row(conn, "system_logs", created_at=now - age * DAY)
        session = {"user_id": user, "expires_at": now + DAY}
        insert_row(conn, "session_logs", **session, is_active=False,
                   logged_out_at=now - 31 * DAY)  # ended long ago  # fmt: skip
        insert_row(conn, "session_logs", **session, is_active=False, logged_out_at=now - 29 * DAY)
        insert_row(conn, "session_logs", user_id=user, expires_at=now - 31 * DAY)  # expired
        insert_row(conn, "session_logs", **session, created_at=now - 400 * DAY)  # live
    return {
        "api_request_logs": 1, "api_usage": 1, "email_logs": 1, "webhook_logs": 1,
        "login_history": 1, "session_logs": 2, "system_logs": 1,
    }  # fmt: skip


def test_clean_removes_the_old_rows_of_each_log_table_and_nothing_else(db, engine):
    old = fill(engine)
    before = counts(engine)
    report = retention.clean(engine, now=NOW)
    assert [r.table for r in report] == list(retention.TABLES)
    assert {r.table: r.rows for r in report} == old
    after = counts(engine)
    assert {t: before[t] - after[t] for t in before if before[t] != after[t]} == old
    assert all(after[table] == before[table] for table in KEPT_TABLES)
    with engine.connect() as conn:
        assert count(conn, "email_logs", "status = 'pending'") == 1
        assert count(conn, "webhook_logs", "status = 'pending'") == 1
    assert retention.clean(engine, now=NOW)[0].rows == 0  # nothing left to do


def test_a_dry_run_counts_and_removes_nothing(db, engine):
    old = fill(engine)
    before = counts(engine)
    report = retention.clean(engine, dry_run=True, now=NOW)
    assert {r.table: r.rows for r in report} == old
    assert counts(engine) == before


def test_one_age_for_the_tables_named(db, engine):
    fill(engine)
    report = retention.clean(
        sessionmaker(engine),
        older_than=50 * DAY,
        tables=["system_logs", "api_request_logs", "login_history"],
        now=NOW,
    )
    assert [(r.table, r.rows) for r in report] == [
        ("api_request_logs", 2),
        ("login_history", 2),
        ("system_logs", 2),
    ]
    assert report[0].cutoff == NOW - 50 * DAY and not report[0].kept_longer


def test_rows_pfd_db_still_reads_are_kept_whatever_the_age(db, engine):
    with engine.begin() as conn:
        for minutes in (10, 90):
            insert_row(conn, "login_history", timestamp=NOW - timedelta(minutes=minutes),
                       success=False)  # fmt: skip
            insert_row(conn, "api_usage", timestamp=NOW - timedelta(minutes=minutes))
    report = retention.clean(engine, older_than=timedelta(minutes=5), now=NOW,
                             tables=["login_history", "api_usage"])  # fmt: skip
    usage, logins = report
    assert (usage.table, usage.rows, usage.kept_longer) == ("api_usage", 1, True)
    assert usage.cutoff == NOW - timedelta(hours=1)  # the rate limit's window
    assert (logins.rows, logins.kept_longer) == (0, True)
    assert logins.cutoff == NOW - timedelta(days=30)  # the known-address window


def at_and_before(conn, table: str, cutoff: datetime) -> None:
    """Two rows of ``table``: one exactly at ``cutoff``, one a microsecond older."""
    for moment in (cutoff, cutoff - timedelta(microseconds=1)):
        if table == "session_logs":  # ended then, and expired then
            insert_row(conn, table, is_active=False, logged_out_at=moment,
                       expires_at=NOW + DAY)  # fmt: skip
            insert_row(conn, table, expires_at=moment)
        elif table in ("email_logs", "webhook_logs"):
            insert_row(conn, table, created_at=moment, status="failed")
        else:
            column = {"api_request_logs": "request_time", "system_logs": "created_at"}
            insert_row(conn, table, **{column.get(table, "timestamp"): moment})


@pytest.mark.parametrize("age", [None, 50 * DAY], ids=["settings", "older_than"])
def test_a_row_exactly_at_the_cutoff_is_kept_and_one_older_is_removed(db, engine, age):
    cutoffs = {r.table: r.cutoff for r in retention.clean(engine, older_than=age,
                                                          dry_run=True, now=NOW)}  # fmt: skip
    with engine.begin() as conn:
        for table, cutoff in cutoffs.items():
            at_and_before(conn, table, cutoff)
    before = counts(engine)
    report = retention.clean(engine, older_than=age, now=NOW)
    older = {table: 2 if table == "session_logs" else 1 for table in retention.TABLES}
    assert {r.table: r.rows for r in report} == older
    assert {r.table: r.cutoff for r in report} == cutoffs
    after = counts(engine)
    assert {t: before[t] - after[t] for t in retention.TABLES} == older
    assert all(after[table] == (2 if table == "session_logs" else 1) for table in older)


def test_batches_are_committed_one_by_one(db, engine):
    with engine.begin() as conn:
        for n in range(50):
            insert_row(conn, "system_logs", created_at=NOW - (400 + n) * DAY)
    seen: list[tuple[str, int, int]] = []
    [removed] = retention.clean(engine, tables=["system_logs"], batch_size=7, now=NOW,
                                progress=lambda *step: seen.append(step))  # fmt: skip
    assert removed.rows == 50
    assert seen == [("system_logs", done, 50) for done in (0, 7, 14, 21, 28, 35, 42, 49, 50)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tables": ["users"]}, "pfd-db cleans only"),
        ({"tables": ["experiments", "api_usage"]}, r"got \['experiments'\]"),
        ({"tables": "system_logs"}, "tables must be a list"),
        ({"tables": []}, "at least one table"),
        ({"older_than": timedelta(0)}, "positive timedelta"),
        ({"older_than": 90}, "positive timedelta"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 100_001}, "batch_size"),
        ({"dry_run": "yes"}, "dry_run"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_removed(db, engine, arguments, message):
    fill(engine)
    before = counts(engine)
    with pytest.raises(InvalidInput, match=message):
        retention.clean(engine, now=NOW, **arguments)
    assert counts(engine) == before


# --- pfd-db clean -------------------------------------------------------------------


@pytest.fixture
def migrated(fresh_url):
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    yield fresh_url, engine
    engine.dispose()


def test_the_command_prints_rows_removed_per_table(migrated):
    url, engine = migrated
    old = fill(engine, now=datetime.now(UTC))
    dry = pfd_db("clean", "--url", url, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert f"dry run: {sum(old.values())} rows would be removed; nothing was" in dry.stdout
    assert "api_request_logs" in dry.stdout and "session_logs" in dry.stdout
    result = pfd_db("clean", "--url", url, "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["rows"] == sum(old.values()) and document["dry_run"] is False
    assert {t["table"]: t["rows"] for t in document["tables"]} == old
    again = pfd_db("clean", "--url", url, "--yes", "--older-than", "2w", "--table", "api_usage")
    assert again.exit_code == 0, again.stderr
    assert "removed 1 rows from 1 tables" in again.stdout  # the 89-day-old usage record


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ([], "pass --yes"),  # not a terminal: no one to ask
        (["--yes", "--table", "users"], "pfd-db cleans only"),
        (["--yes", "--older-than", "0d"], "positive age"),
        (["--yes", "--older-than", "ninety days"], "positive age"),
    ],
)
def test_the_command_refuses_and_changes_nothing(migrated, arguments, fragment):
    url, engine = migrated
    fill(engine, now=datetime.now(UTC))
    before = counts(engine)
    assert_refused(pfd_db("clean", "--url", url, *arguments), fragment)
    assert counts(engine) == before


def test_ages_on_the_command_line():
    from pfd_db.cli.clean import parse_age

    assert parse_age("90d") == parse_age("90") == timedelta(days=90)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age(" 2W ") == timedelta(weeks=2)
    assert parse_age("30m") == timedelta(minutes=30)
    for bad in ("", "-1d", "1y", "0", "1.5d"):
        with pytest.raises(InvalidInput):
            parse_age(bad)


OLD_ROWS = 30_000
NEW_ROWS = 100
BATCH = 25


def test_a_clean_killed_midway_leaves_whole_batches_and_a_second_run_finishes(migrated, dialect):
    """SIGKILL while deleting: every committed batch is gone, the batch in flight
    is not (its transaction dies with the process), the rows it must keep are all
    there, and running it again removes the rest."""
    url, engine = migrated
    now = datetime.now(UTC)
    with engine.begin() as conn:
        # Older than any monthly partition (PostgreSQL: they wait in the default
        # partition, cleaned in batches; a whole partition is dropped at once).
        generate_request_logs(conn, dialect, OLD_ROWS, now - 4000 * DAY)
        generate_request_logs(conn, dialect, NEW_ROWS, now - DAY)
    command = [PFD_DB, "clean", "--url", url, "--yes", "--table", "api_request_logs",
               "--batch-size", str(BATCH)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        left = wait_until_some_are_removed(engine, process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    old_left, new_left = old_and_new(engine, now)
    assert 0 < old_left < OLD_ROWS, "killed before or after the work: not midway"
    assert old_left <= left
    assert (OLD_ROWS - old_left) % BATCH == 0  # whole batches only
    assert new_left == NEW_ROWS
    if dialect == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert f"removed {old_left} rows" in finished.stdout
    assert old_and_new(engine, now) == (0, NEW_ROWS)


def generate_request_logs(conn, dialect: str, rows: int, start: datetime) -> None:
    columns = (
        "endpoint, method, status_code, request_time, response_time_ms, created_at, updated_at"
    )
    if dialect == "postgresql":
        conn.execute(
            text(
                f"INSERT INTO api_request_logs ({columns}) SELECT '/a', 'GET', 200, "
                "CAST(:start AS timestamptz) + i * interval '1 second', 1.0, now(), now() "
                "FROM generate_series(1, :rows) AS i"
            ),
            {"start": start, "rows": rows},
        )
        return
    conn.execute(
        text(
            f"WITH RECURSIVE i(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM i WHERE i < :rows) "
            f"INSERT INTO api_request_logs ({columns}) SELECT '/a', 'GET', 200, "
            "strftime('%Y-%m-%d %H:%M:%S', :start + i, 'unixepoch') || '.000000', 1.0, "
            "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000' FROM i"
        ),
        {"start": int(start.timestamp()), "rows": rows},
    )


def old_and_new(engine, now: datetime) -> tuple[int, int]:
    cutoff = now - 90 * DAY
    from pfd_db.models import APIRequestLog

    with engine.connect() as conn:
        old = conn.scalar(select(func.count()).where(APIRequestLog.request_time < cutoff))
        new = conn.scalar(select(func.count()).where(APIRequestLog.request_time >= cutoff))
    return old, new


def wait_until_some_are_removed(engine, process: subprocess.Popen) -> int:
    """Rows left once the running clean has committed a few batches."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            left = count(conn, "api_request_logs")
        if left <= OLD_ROWS + NEW_ROWS - 3 * BATCH:
            return left
        if process.poll() is not None:
            raise AssertionError(f"clean ended early: {process.stderr.read().decode()}")
        time.sleep(0.01)
    raise AssertionError("clean removed nothing in two minutes")





@pytest.mark.parametrize("table", ["users", "api_usage\x00", "\ud800", None, 2**31, float("nan")])
def test_the_partition_steps_refuse_a_table_that_is_not_a_partitioned_log(db, table):
    from pfd_db.errors import InvalidInput
    from pfd_db.store.ops import partitions

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    for step in (
        lambda: partitions.partitions_before(db, table, moment),
        lambda: partitions.straddling(db, table, moment),
        lambda: partitions.drop_before(db, moment, tables=[table]),
    ):
        with pytest.raises(InvalidInput, match="partitioned"):
            step()
    assert not db.new and not db.dirty
