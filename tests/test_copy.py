"""pfd-db copy: SQLite to PostgreSQL and back, identical row by row, refusals, interruption."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cli_support import assert_refused
from pfd_db import migrations
from pfd_db.cli import app
from pfd_db.cli.demo_data import build_demo
from pfd_db.engine import make_engine
from pfd_db.errors import Conflict, MigrationError
from pfd_db.models import Base, Experiment, Signal, SystemLog, Tag, User
from pfd_db.portability import CopyMismatch, filling
from pfd_db.portability.backup import count_rows, sqlite_engine
from pfd_db.portability.copy import copy_database
from pfd_db.portability.rows import canonical, layout_of, stream_rows
from pfd_db.seed import ADMIN_USERNAME, seed
from pfd_db.store.identity import users
from pfd_db.store.ml import search, tags
from pgserver import worker_name

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


def assert_no_database(url: str) -> None:
    """Nothing was created at ``url``: no SQLite file nor its side files; no table
    in the PostgreSQL database."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        beside = (path, f"{path}-wal", f"{path}-shm", f"{path}-journal")
        left = [p for p in beside if Path(p).exists()]
        assert left == [], left
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == []
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
    name = worker_name("copy_roundtrip")
    pg_server.create_database(name)
    pg_url = pg_server.url(name)
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
        pg_server.drop_database(name)


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
from pfd_db.portability import CopyMismatch, filling
from pfd_db.portability.backup import count_rows, sqlite_engine
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
    assert_refused(check, "holds an unfinished copy", "--replace --yes` again")  # not "drift"

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


# --- what the copy's check catches; sources and targets that are not whole ---------


def logged_document(url: str, document: str) -> int:
    """Log one system_logs row whose details are ``document`` (JSON text); its id."""
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            row = SystemLog(action="copy.check", status="success", details=json.loads(document))
            session.add(row)
            session.flush()
            return row.id
    finally:
        engine.dispose()


def rewriting_once(url: str, row_id: int, document: str):
    """A progress callback that, once the copy reaches experiments (system_logs is
    already committed in the target), stores ``document`` as that row's details."""
    done = []

    def progress(table: str, _done: int, _total: int) -> None:
        if table != "experiments" or done:
            return
        done.append(table)
        engine = make_engine(url)
        try:
            value = "CAST(:d AS JSON)" if engine.dialect.name == "postgresql" else ":d"
            with engine.begin() as conn:
                conn.execute(
                    text(f"UPDATE system_logs SET details = {value} WHERE id = :id"),
                    {"d": document, "id": row_id},
                )
        finally:
            engine.dispose()

    return progress


def test_json_with_its_keys_in_another_order_matches(demo_url, fresh_url):
    row_id = logged_document(demo_url, '{"alpha": 1, "beta": [1, 2], "gamma": {"x": null}}')
    reordered = '{"gamma": {"x": null}, "beta": [1, 2], "alpha": 1}'
    rewrite = rewriting_once(fresh_url, row_id, reordered)
    report = copy_database(make_engine(demo_url), make_engine(fresh_url), progress=rewrite)
    assert all(t.ok for t in report.tables)
    assert table_rows(fresh_url) == table_rows(demo_url)


def test_a_table_changed_behind_the_copy_raises_copy_mismatch_and_stays_marked(demo_url, fresh_url):
    row_id = logged_document(demo_url, '{"alpha": 1, "beta": [1, 2]}')
    different = '{"alpha": 2, "beta": [1, 2]}'
    rewrite = rewriting_once(fresh_url, row_id, different)
    with pytest.raises(CopyMismatch, match="system_logs") as raised:
        copy_database(make_engine(demo_url), make_engine(fresh_url), progress=rewrite)
    assert "experiments" not in str(raised.value)  # only the table that differs is named
    engine = make_engine(fresh_url)
    try:
        assert filling.unfinished_copy(engine) is not None
    finally:
        engine.dispose()
    assert copy(demo_url, fresh_url).exit_code == 2  # marked: refused without --replace
    replaced = copy(demo_url, fresh_url, "--replace", "--yes")
    assert replaced.exit_code == 0, replaced.output
    assert table_rows(fresh_url) == table_rows(demo_url)


def marked_unfinished(url: str, source: str = "/elsewhere/old.db") -> None:
    """Leave ``url`` as a copy cut short right after it began: empty and marked."""
    engine = make_engine(url)
    try:
        filling.prepare(engine, operation="copy", source=source, replace=True)
    finally:
        engine.dispose()


def test_an_empty_target_marked_unfinished_is_a_conflict_not_a_database_error(demo_url, fresh_url):
    marked_unfinished(fresh_url)
    with pytest.raises(Conflict, match=r"unfinished copy from /elsewhere/old\.db"):
        copy_database(make_engine(demo_url), make_engine(fresh_url))
    refused = copy(demo_url, fresh_url)
    assert_refused(refused, "unfinished copy", "--replace")


def test_a_source_marked_unfinished_is_refused_by_copy_and_backup_and_keeps_its_marker(
    fresh_url, tmp_path
):
    make_demo(fresh_url)
    marked_unfinished(fresh_url)
    into = f"sqlite:///{tmp_path / 'into.db'}"
    line = assert_refused(copy(fresh_url, into), "unfinished copy from /elsewhere/old.db")
    assert "pfd-db copy --url SOURCE --to" in line and "--replace --yes` again" in line
    assert_no_database(into)
    with pytest.raises(Conflict, match="unfinished"):
        copy_database(make_engine(fresh_url), make_engine(into))
    assert_no_database(into)

    folder = tmp_path / "backups"
    folder.mkdir()
    backed = runner.invoke(app, ["backup", str(folder / "marked.bak"), "--url", fresh_url])
    assert_refused(backed, "unfinished copy", "--replace --yes` again")
    assert list(folder.iterdir()) == []  # no backup, no manifest, no partial file
    engine = make_engine(fresh_url)
    try:
        assert filling.unfinished_copy(engine) is not None
    finally:
        engine.dispose()


def test_a_backup_file_holding_an_unfinished_copy_is_refused_by_restore(tmp_path, fresh_url):
    from pfd_db.portability import manifest

    marked = f"sqlite:///{tmp_path / 'marked.db'}"
    make_demo(marked)
    marked_unfinished(marked)
    partial, path = tmp_path / "old.partial", tmp_path / "old.bak"
    with sqlite3.connect(tmp_path / "marked.db") as held, sqlite3.connect(partial) as written:
        held.backup(written)
    held.close()
    written.close()
    engine = sqlite_engine(partial)
    try:
        rows, revision = count_rows(engine), migrations.state(engine).current
    finally:
        engine.dispose()
    manifest.publish(partial, path, manifest.describe(partial, "test", revision, rows))
    restored = runner.invoke(app, ["restore", str(path), "--url", fresh_url])
    assert_refused(restored, f"{path} holds an unfinished copy", "--replace --yes` again")
    assert_no_database(fresh_url)


def test_a_refused_copy_leaves_no_file_beside_its_source_nor_a_target(tmp_path, fresh_url):
    folder = tmp_path / "source"
    folder.mkdir()
    future = folder / "future.db"
    assert runner.invoke(app, ["init", "--url", f"sqlite:///{future}", "--quiet"]).exit_code == 0
    with sqlite3.connect(future) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff0000'")
    conn.close()
    before = sorted(p.name for p in folder.iterdir())
    assert_refused(copy(f"sqlite:///{future}", fresh_url), "ffff0000")
    assert_no_database(fresh_url)
    for mode in (0o644, 0o444):  # a read-only file too
        future.chmod(mode)
        for command in (["status"], ["current"], ["check"], ["user", "list"]):
            runner.invoke(app, [*command, "--url", f"sqlite:///{future}"])
        assert sorted(p.name for p in folder.iterdir()) == before
