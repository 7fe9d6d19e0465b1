"""The upkeep commands as a scheduler runs them: two ``pfd-db maintain`` (or two
``pfd-db clean --yes``) at once on one database, and ``pfd-db status`` /
``pfd-db serve`` with read replicas configured for a SQLite database."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from cli_support import PFD_DB, assert_refused, pfd_db, pfd_db_process
from pfd_db.engine import make_engine
from pfd_db.models.api import APIMetricsSummary
from pfd_db.store.ops.request_log import record_requests

REQUESTS = 300
"""Request-log rows written, one every 11 hours back from now (about 4.5 months)."""
REPLICA = "postgresql://r:s3cr3t-pw@127.0.0.1:1/db"


def migrated_with_requests(url: str) -> None:
    """Migrate ``url`` and write :data:`REQUESTS` request-log rows spread over months."""
    assert pfd_db("migrate", "--url", url).exit_code == 0
    now = datetime.now(UTC)
    rows = [
        {
            "endpoint": "/api/v1/experiments",
            "method": "GET",
            "status_code": 200,
            "response_time_ms": 4.0,
            "request_time": now - timedelta(hours=11 * i),
        }
        for i in range(REQUESTS)
    ]
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            record_requests(session, rows)
            session.commit()
    finally:
        engine.dispose()


def at_once(*args: str) -> list[subprocess.CompletedProcess[str]]:
    """The installed ``pfd-db ARGS`` run twice, the two processes started together
    (a run waiting for the other's lock is no slow query here: stderr stays empty)."""
    env = {**os.environ, "PFD_DB_SLOW_QUERY_SECONDS": "600"}
    runs = [
        subprocess.Popen(
            [PFD_DB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    done = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr))
    return done


def test_two_maintains_at_once_both_succeed_and_write_each_rollup_row_once(fresh_url):
    migrated_with_requests(fresh_url)
    runs = at_once("maintain", "--json", "--url", fresh_url)
    assert [(r.returncode, r.stderr) for r in runs] == [(0, ""), (0, "")]
    reports = [json.loads(r.stdout) for r in runs]
    engine = make_engine(fresh_url)
    try:
        with engine.connect() as conn:
            period = (APIMetricsSummary.aggregation_type, APIMetricsSummary.period_start)
            rows = conn.scalar(select(func.count()).select_from(APIMetricsSummary))
            distinct = conn.scalar(
                select(func.count()).select_from(select(*period).distinct().subquery())
            )
            if engine.dialect.name == "postgresql":
                created = [c["partition"] for report in reports for c in report["created"]]
                assert created and len(created) == len(set(created))  # each made by one run
    finally:
        engine.dispose()
    assert rows == distinct and rows >= REQUESTS  # one row per period, none twice


def test_two_cleans_at_once_both_succeed_and_remove_the_old_rows(fresh_url):
    migrated_with_requests(fresh_url)
    assert pfd_db("maintain", "--url", fresh_url).exit_code == 0  # old months' partitions
    runs = at_once("clean", "--yes", "--older-than", "30d", "--json", "--url", fresh_url)
    assert [(r.returncode, r.stderr) for r in runs] == [(0, ""), (0, "")]
    removed = [json.loads(r.stdout)["rows"] for r in runs]
    engine = make_engine(fresh_url)
    try:
        with engine.connect() as conn:
            left = conn.scalar(text("SELECT count(*) FROM api_request_logs"))
    finally:
        engine.dispose()
    kept = sum(1 for i in range(REQUESTS) if 11 * i < 30 * 24)
    assert left in (kept, kept + 1)  # the one at the cutoff's edge may go either way
    assert sum(removed) == REQUESTS - left  # no row counted by both runs


def test_status_on_sqlite_with_replicas_says_none_can_be_used_and_serve_refuses(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert pfd_db("migrate", "--url", url).exit_code == 0
    env = {"PFD_DB_REPLICA_URLS": REPLICA}
    shown = pfd_db("status", "--url", url, env=env)
    assert shown.exit_code == 0 and shown.stderr == ""
    assert "need a PostgreSQL primary" in shown.stdout and "r:***@127.0.0.1:1" in shown.stdout
    document = pfd_db("status", "--json", "--url", url, env=env)
    (replica,) = json.loads(document.stdout)["replicas"]
    assert (replica["in_use"], replica["url"]) == (
        False,
        "postgresql+psycopg://r:***@127.0.0.1:1/db",
    )
    assert "s3cr3t" not in shown.stdout + document.stdout
    refused = pfd_db_process("serve", "--url", url, "--port", "1", env=env, timeout=60)
    assert "s3cr3t" not in assert_refused(refused, "PFD_DB_REPLICA_URLS", "PostgreSQL primary")


def test_status_never_shows_a_replica_password_given_in_the_query(fresh_url):
    assert pfd_db("migrate", "--url", fresh_url).exit_code == 0
    env = {"PFD_DB_REPLICA_URLS": "postgresql://rep:s3cret@127.0.0.1:1/db?password=qsecret"}
    shown = pfd_db("status", "--url", fresh_url, env=env)
    assert shown.exit_code == 0, shown.output
    document = pfd_db("status", "--json", "--url", fresh_url, env=env)
    assert document.exit_code == 0, document.output
    (replica,) = json.loads(document.stdout)["replicas"]
    assert replica["in_use"] is False and replica["problem"]
    assert "rep:***@127.0.0.1:1/db" in replica["url"] and "password=***" in replica["url"]
    assert "rep:***@127.0.0.1:1/db" in shown.stdout
    for secret in ("s3cret", "qsecret"):
        assert secret not in shown.stdout + shown.stderr + document.stdout + document.stderr
