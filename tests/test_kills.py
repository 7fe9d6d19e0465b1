"""Copy, backup and restore SIGKILLed at random points, 20 times per mode on each
dialect: nothing half-written is ever taken for whole, and running again recovers.

Bigger loops: ``make stress`` (benchmarks/stress_kills.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kill_harness import backup_kills, fill_kills
from pfd_db.engine import make_engine
from pfd_db.portability.backup import backup
from test_copy import make_demo, table_rows

KILLS = 20  # per mode and dialect: the minimum


@pytest.fixture
def other_demo(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A demo database on the other dialect: the source of a copy into this one."""
    if dialect == "postgresql":
        url = f"sqlite:///{tmp_path / 'demo.db'}"
        make_demo(url)
        yield url
        return
    server = request.getfixturevalue("pg_server")
    name = f"pfd_kill_src_{uuid.uuid4().hex[:8]}"
    server.create_database(name)
    try:
        make_demo(server.url(name))
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def same_demo(fresh_url: str) -> str:
    """A demo database on this dialect."""
    make_demo(fresh_url)
    return fresh_url


def assert_clean(tally) -> None:
    assert tally.kills >= KILLS, tally.line()  # really cut short that many times
    assert tally.lost == 0, tally.problems
    assert tally.duplicated == 0, tally.problems


def test_a_killed_copy_into_the_dialect_is_marked_and_replace_recovers(
    other_demo, fresh_url, dialect
):
    tally = fill_kills(other_demo, fresh_url, KILLS, seed=19, mode="copy")
    assert_clean(tally)
    assert table_rows(fresh_url) == table_rows(other_demo)


def test_a_killed_restore_into_the_dialect_is_marked_and_replace_recovers(
    other_demo, fresh_url, tmp_path
):
    path = tmp_path / "demo.bak"
    engine = make_engine(other_demo)
    try:
        backup(engine, path, tools_path="")
    finally:
        engine.dispose()
    tally = fill_kills(str(path), fresh_url, KILLS, seed=23, mode="restore")
    assert_clean(tally)
    assert table_rows(fresh_url) == table_rows(other_demo)


def test_a_killed_backup_leaves_no_file_at_its_name_or_a_whole_one(same_demo, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    tally = backup_kills(same_demo, folder, KILLS, seed=29)
    assert_clean(tally)
    whole = [p for p in folder.glob("round-*.bak")]
    assert len(whole) < tally.rounds  # some kills came before the rename
