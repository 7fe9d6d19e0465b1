"""pfd-db backup and restore: a consistent snapshot while writers run, on both dialects."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from cli_support import assert_refused
from pfd_db import migrations
from pfd_db.cli import app
from pfd_db.engine import make_engine
from pfd_db.errors import Conflict, InvalidInput
from pfd_db.models import SystemLog
from pfd_db.portability.backup import (
    COPY_TO_SQLITE,
    ONLINE_BACKUP,
    PG_DUMP,
    backup,
    count_rows,
    restore,
    verify_backup,
)
from pfd_db.portability.manifest import manifest_path
from pfd_db.target import locate

runner = CliRunner()
WRITERS = 4


class Writers:
    """Four threads, each committing one audit-log row after another."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.committed: list[int] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self.write, args=(n,)) for n in range(WRITERS)]

    def write(self, n: int) -> None:
        try:
            while not self.stop.is_set():
                with self.engine.begin() as conn:
                    row_id = conn.execute(
                        insert(SystemLog)
                        .values(action=f"writer-{n}", status="success")
                        .returning(SystemLog.id)
                    ).scalar_one()
                with self.lock:
                    self.committed.append(row_id)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def committed_so_far(self) -> set[int]:
        with self.lock:
            return set(self.committed)

    def wait_for(self, rows: int) -> None:
        while len(self.committed_so_far()) < rows and not self.errors:
            self.stop.wait(0.01)


@contextmanager
def writing(url: str) -> Iterator[Writers]:
    writers = Writers(url)
    for thread in writers.threads:
        thread.start()
    try:
        yield writers
    finally:
        writers.stop.set()
        for thread in writers.threads:
            thread.join()
        writers.engine.dispose()
    assert not writers.errors, writers.errors


@pytest.fixture
def migrated(fresh_url: str) -> str:
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    engine.dispose()
    return fresh_url


@pytest.fixture
def restore_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second empty database on the dialect, to restore into."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name = f"pfd_restore_{uuid.uuid4().hex[:8]}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


def backed_up_while_writing(url: str, path: Path, **options: str) -> tuple[set[int], str]:
    """Back ``url`` up while four writers run; the ids committed before it began."""
    with writing(url) as writers:
        writers.wait_for(40)
        before = writers.committed_so_far()
        engine = make_engine(url)
        try:
            report = backup(engine, path, **options)
        finally:
            engine.dispose()
        writers.wait_for(len(before) + 20)  # they kept going meanwhile
    return before, report.method


def restored_ids(url: str) -> set[int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(select(SystemLog.id)))
    finally:
        engine.dispose()


def assert_restored(path: Path, restore_url: str, before: set[int]) -> None:
    result = runner.invoke(app, ["restore", str(path), "--url", restore_url])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["check", "--url", restore_url]).exit_code == 0
    assert before <= restored_ids(restore_url)


def test_a_backup_taken_while_four_writers_run_restores_what_was_committed(
    migrated, restore_url, dialect, tmp_path
):
    path = tmp_path / "pfd.backup"
    before, method = backed_up_while_writing(migrated, path)
    assert method == (ONLINE_BACKUP if dialect == "sqlite" else PG_DUMP)
    assert_restored(path, restore_url, before)


def test_postgresql_without_pg_dump_backs_up_into_a_sqlite_file(pg_server, tmp_path):
    names = [f"pfd_nodump_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        pg_server.create_database(name)
    try:
        source, restored = (pg_server.url(name) for name in names)
        engine = make_engine(source)
        migrations.upgrade(engine)
        engine.dispose()
        path = tmp_path / "pfd-pg.backup"
        before, method = backed_up_while_writing(source, path, tools_path="")
        assert method == COPY_TO_SQLITE
        assert path.read_bytes().startswith(b"SQLite format 3\x00")
        assert_restored(path, restored, before)
        assert_restored(path, f"sqlite:///{tmp_path / 'from-pg.db'}", before)
    finally:
        for name in names:
            pg_server.drop_database(name)


def test_the_sqlite_backup_is_one_file_with_the_key_beside_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'pfd.db'}"
    assert runner.invoke(app, ["init", "--url", url, "--quiet"]).exit_code == 0
    (tmp_path / "pfd.db.key").write_bytes(b"the instance key\n")
    path = tmp_path / "copy.backup"
    result = runner.invoke(app, ["backup", str(path), "--url", url])
    assert result.exit_code == 0, result.output
    assert ONLINE_BACKUP in result.output
    assert not Path(f"{path}-wal").exists()
    key = Path(f"{path}.key")
    assert key.read_bytes() == b"the instance key\n"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_backup_refuses_an_existing_file_and_restore_a_file_that_is_no_backup(migrated, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("something")
    engine = make_engine(migrated)
    try:
        with pytest.raises(Conflict):
            backup(engine, taken)
        with pytest.raises(InvalidInput, match="neither"):
            restore(taken, engine)
    finally:
        engine.dispose()


def test_restore_refuses_a_database_holding_data(migrated, restore_url, tmp_path):
    path = tmp_path / "pfd.backup"
    engine = make_engine(migrated)
    try:
        backup(engine, path)
    finally:
        engine.dispose()
    assert runner.invoke(app, ["init", "--url", restore_url, "--quiet"]).exit_code == 0
    refused = runner.invoke(app, ["restore", str(path), "--url", restore_url])
    assert refused.exit_code == 2
    assert "--replace" in refused.output
    replaced = runner.invoke(app, ["restore", str(path), "--url", restore_url, "--replace", "-y"])
    assert replaced.exit_code == 0, replaced.output


# --- whole or refused: the manifest ------------------------------------------------


def test_a_backup_is_renamed_into_place_with_a_manifest_that_describes_it(
    migrated, dialect, tmp_path
):
    folder = tmp_path / "backups"
    folder.mkdir()
    path = folder / "pfd.backup"
    engine = make_engine(migrated)
    try:
        report = backup(engine, path)
        rows = count_rows(engine)
    finally:
        engine.dispose()
    assert report.method == (ONLINE_BACKUP if dialect == "sqlite" else PG_DUMP)
    assert sorted(p.name for p in folder.iterdir()) == ["pfd.backup", "pfd.backup.manifest.json"]
    described = json.loads((folder / "pfd.backup.manifest.json").read_text())
    assert described["revision"] == migrations.head_revision()
    assert described["tables"] == rows and rows["users"] == 0
    assert described["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert verify_backup(path)[1].tables == rows


def test_a_backup_whose_name_is_taken_meanwhile_leaves_that_file_its_manifest_and_no_key(
    migrated, dialect, tmp_path
):
    engine = make_engine(migrated)
    source_key = locate(engine.url).key_path
    if source_key is not None:  # SQLite: the key beside the file goes with its backups
        source_key.write_bytes(b"instance key")
    path = tmp_path / "pfd.backup"

    def theirs_appears(*_args: object) -> None:
        if not path.exists():
            path.write_bytes(b"theirs")
            manifest_path(path).write_text("theirs\n")

    try:
        with pytest.raises(Conflict, match="appeared while the backup was written"):
            backup(engine, path, progress=theirs_appears)
    finally:
        engine.dispose()
    assert path.read_bytes() == b"theirs"
    assert manifest_path(path).read_text() == "theirs\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pfd.backup")) == [
        "pfd.backup",
        "pfd.backup.manifest.json",
    ]  # no key of ours beside their file
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert (source_key is not None) == (dialect == "sqlite")


def test_restore_refuses_a_cut_short_or_undescribed_backup_and_creates_nothing(
    migrated, restore_url, tmp_path
):
    from test_copy import assert_no_database

    path = tmp_path / "pfd.backup"
    engine = make_engine(migrated)
    try:
        backup(engine, path)
    finally:
        engine.dispose()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # what a kill left when it wrote in place
    cut = runner.invoke(app, ["restore", str(path), "--url", restore_url])
    assert_refused(cut, "does not match its manifest")
    assert_no_database(restore_url)

    path.write_bytes(whole)
    manifest_path(path).unlink()
    undescribed = runner.invoke(app, ["restore", str(path), "--url", restore_url])
    assert_refused(undescribed, "no manifest")
    assert_no_database(restore_url)
    with pytest.raises(InvalidInput, match="no manifest"):
        restore(path, make_engine(restore_url))
    assert_no_database(restore_url)


def test_restore_of_a_backup_at_an_unknown_revision_says_so_and_creates_nothing(
    restore_url, tmp_path
):
    from test_copy import assert_no_database

    future = tmp_path / "future.db"
    assert runner.invoke(app, ["init", "--url", f"sqlite:///{future}", "--quiet"]).exit_code == 0
    with sqlite3.connect(future) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff0000'")
    conn.close()
    path = tmp_path / "future.backup"
    engine = make_engine(f"sqlite:///{future}")
    try:
        backup(engine, path)
    finally:
        engine.dispose()
    refused = runner.invoke(app, ["restore", str(path), "--url", restore_url])
    head = migrations.head_revision()
    assert_refused(refused, f"unknown revision ffff0000 (this pfd-db knows up to {head})")
    assert "Can't locate" not in refused.output
    assert_no_database(restore_url)


def test_a_pg_dump_archive_that_cannot_go_into_the_target_creates_nothing(
    pg_server, restore_url, dialect, tmp_path, monkeypatch
):
    from test_copy import assert_no_database

    name = f"pfd_archive_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(name)
    try:
        engine = make_engine(pg_server.url(name))
        migrations.upgrade(engine)
        archive = tmp_path / "pfd.dump"
        try:
            assert backup(engine, archive).method == PG_DUMP
        finally:
            engine.dispose()
    finally:
        pg_server.drop_database(name)
    assert verify_backup(archive)[0] == PG_DUMP  # a whole archive, with its manifest
    into_sqlite = f"sqlite:///{tmp_path / 't.db'}"
    refused = runner.invoke(app, ["restore", str(archive), "--url", into_sqlite])
    assert_refused(refused, "is a pg_dump archive: restore it into PostgreSQL")
    assert_no_database(into_sqlite)

    nowhere = tmp_path / "no-tools"
    nowhere.mkdir()
    monkeypatch.setenv("PATH", str(nowhere))  # no pg_restore
    refused = runner.invoke(app, ["restore", str(archive), "--url", restore_url])
    why = "is a pg_dump archive" if dialect == "sqlite" else "pg_restore is not on the PATH"
    assert_refused(refused, why)
    assert_no_database(restore_url)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "no-tools",
        "pfd.dump",
        "pfd.dump.manifest.json",
    ]
