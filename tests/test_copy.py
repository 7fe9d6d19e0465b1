"""pfd-db copy: SQLite to PostgreSQL and back, identical row by row, refusals, interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from pfd_db import migrations
from pfd_db.cli import app
from pfd_db.demo import build_demo
from pfd_db.engine import make_engine
from pfd_db.errors import MigrationError
from pfd_db.models import Base, Experiment, Signal, Tag, User
from pfd_db.portability.copy import copy_database
from pfd_db.portability.rows import canonical, layout_of, stream_rows
from pfd_db.portability.target import MARKER_TABLE
from pfd_db.seed import ADMIN_USERNAME, seed
from pfd_db.store import search, tags, users

runner = CliRunner()


def make_demo(url: str, experiments: int = 4) -> None:
    """A migrated database holding `pfd-db demo` data (a few experiments)."""
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
        with Session(engine) as session, session.begin():
            seed(session)
            owner = session.scalars(select(User).where(User.username == ADMIN_USERNAME)).one()
            build_demo(session, owner, experiment_count=experiments, seed=7)
    finally:
        engine.dispose()


def table_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in a form equal across dialects for equal data."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found = {}
            for table in Base.metadata.sorted_tables:
                layout = layout_of(table)
                found[table.name] = [
                    canonical(layout.kinds, row)
                    for batch in stream_rows(conn, layout, 1000)
                    for row in batch
                ]
            return found
    finally:
        engine.dispose()


def copy(source: str, target: str, *extra: str):
    return runner.invoke(app, ["copy", "--url", source, "--to", target, *extra])


@pytest.fixture
def demo_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    make_demo(url)
    return url


def test_demo_copied_to_postgresql_and_back_is_identical(demo_url, pg_server, tmp_path):
    pg_server.create_database("copy_roundtrip")
    pg_url = pg_server.url("copy_roundtrip")
    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    try:
        there = copy(demo_url, pg_url)
        assert there.exit_code == 0, there.output
        assert "every table read back and matching" in there.output
        back = copy(pg_url, back_url)
        assert back.exit_code == 0, back.output

        original = table_rows(demo_url)
        assert sum(map(len, original.values())) > 500
        assert table_rows(pg_url) == original
        assert table_rows(back_url) == original
        for url in (pg_url, back_url):
            assert_new_rows_get_new_ids(url)
            assert_search_finds_the_experiments(url)
    finally:
        pg_server.drop_database("copy_roundtrip")


def assert_new_rows_get_new_ids(url: str) -> None:
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            highest = {
                model: session.scalar(select(func.max(model.id))) for model in (User, Tag, Signal)
            }
            user = users.create_user(session, "newcomer", "new@example.com", "a long password 1")
            tag = tags.get_or_create_tag(session, "after-copy")
            dataset_id = session.scalar(select(Signal.dataset_id).limit(1))
            signal_row = Signal(dataset_id=dataset_id, signal_id="new", fault_class="normal")
            session.add(signal_row)
            session.flush()
            assert user.id > highest[User]
            assert tag.id > highest[Tag]
            assert signal_row.id > highest[Signal]
    finally:
        engine.dispose()


def assert_search_finds_the_experiments(url: str) -> None:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            for experiment in session.scalars(select(Experiment)):
                found = search.search(session, experiment.model_type).rows
                assert experiment.id in [hit.experiment.id for hit in found]
    finally:
        engine.dispose()


def test_a_target_holding_data_is_refused_unless_replaced(demo_url, fresh_url):
    assert runner.invoke(app, ["init", "--url", fresh_url, "--quiet"]).exit_code == 0
    refused = copy(demo_url, fresh_url)
    assert refused.exit_code == 2
    assert "--replace" in refused.output
    replaced = copy(demo_url, fresh_url, "--replace", "--yes")
    assert replaced.exit_code == 0, replaced.output
    assert table_rows(fresh_url) == table_rows(demo_url)


def test_the_same_database_is_refused(demo_url):
    result = copy(demo_url, demo_url)
    assert result.exit_code == 2
    assert "same database" in result.output


STOP_MIDWAY = """
import sys, time
from pfd_db.engine import make_engine
from pfd_db.portability.copy import copy_database

def progress(table, done, total):
    if table == "signals" and done > 0:
        print("midway", flush=True)
        time.sleep(600)

source, target = make_engine(sys.argv[1]), make_engine(sys.argv[2])
copy_database(source, target, progress=progress, batch_size=100)
"""


def test_a_copy_killed_midway_is_refused_until_replaced(demo_url, fresh_url):
    child = subprocess.Popen(
        [sys.executable, "-c", STOP_MIDWAY, demo_url, fresh_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "midway"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    again = copy(demo_url, fresh_url)
    assert again.exit_code == 2
    assert "unfinished copy" in again.output
    check = runner.invoke(app, ["check", "--url", fresh_url])
    assert check.exit_code == 3
    assert MARKER_TABLE in check.output

    replaced = copy(demo_url, fresh_url, "--replace", "--yes")
    assert replaced.exit_code == 0, replaced.output
    assert table_rows(fresh_url) == table_rows(demo_url)
    assert runner.invoke(app, ["check", "--url", fresh_url]).exit_code == 0


def test_copy_reads_one_snapshot_and_reports_as_json(demo_url, fresh_url):
    import json

    result = copy(demo_url, fresh_url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {t["name"] for t in report["tables"]} == set(Base.metadata.tables)
    assert all(t["ok"] for t in report["tables"])
    assert report["rows"] == sum(len(rows) for rows in table_rows(demo_url).values())


def test_a_source_behind_head_is_refused(tmp_path, fresh_url):
    old = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(old)
    migrations.upgrade(engine, "0001")
    engine.dispose()
    with pytest.raises(MigrationError, match="head"):
        copy_database(make_engine(old), make_engine(fresh_url))
