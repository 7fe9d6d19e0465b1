"""pfd_db.target: URL forms and masking, SQLite file URIs of odd paths, client
programs' arguments, reachability and the instance key's place, on both dialects."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from pfd_db.engine import make_engine
from pfd_db.errors import DatabaseUnavailable
from pfd_db.target import (
    instance_key_path,
    locate,
    mask_password,
    normalise_url,
    parse_url,
    sqlite_uri,
    verify_reachable,
)
from pgserver import find_bindir

ODD_NAMES = [
    "with space.db",
    "what?.db",
    "hash#tag.db",
    "percent%41 %.db",
    "ünïcødé-数据.db",
    "semi;colon&amp=.db",
]


@pytest.mark.parametrize(
    ("given", "drivername"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg"),
        ("postgresql://u:p@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg"),
        ("sqlite:///pfd.db", "sqlite"),
        ("sqlite+pysqlite:///pfd.db", "sqlite+pysqlite"),
    ],
)
def test_supported_urls_are_parsed_and_point_postgresql_at_psycopg_3(given, drivername):
    assert parse_url(given).drivername == drivername
    assert normalise_url("postgres://h/db") == "postgresql+psycopg://h/db"


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("not a url", "not a database URL"),
        ("mysql://u:topsecret@h/db", "unsupported database URL scheme mysql://"),
        ("postgresql+psycopg2://u:topsecret@h/db", "psycopg 3"),
    ],
)
def test_unusable_urls_are_refused_naming_the_problem_without_the_password(given, words):
    with pytest.raises(DatabaseUnavailable, match=words) as refused:
        parse_url(given)
    assert "topsecret" not in str(refused.value)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("postgresql://u:topsecret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db?password=topsecret", "postgresql://u@h/db?password=***"),
        ("sqlite:////tmp/pfd.db", "sqlite:////tmp/pfd.db"),
    ],
)
def test_passwords_are_masked_in_the_user_info_and_in_the_query(given, shown):
    assert mask_password(given) == shown
    assert locate(given).shown == shown.replace("postgresql://", "postgresql+psycopg://")


def test_an_unparseable_url_is_masked_whole():
    assert mask_password("::::") == "<unparseable URL>"


def make_sqlite_file(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES ('kept')")
    conn.close()


@pytest.mark.parametrize("name", ODD_NAMES)
def test_the_read_only_uri_of_an_odd_path_opens_that_file_and_never_writes(tmp_path, name):
    path = tmp_path / name
    make_sqlite_file(path)
    uri = sqlite_uri(path, "ro")
    assert locate(uri).path == path
    assert locate(uri.render_as_string()).path == path  # the text form names it too
    engine = make_engine(uri)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT v FROM t")) == "kept"
            with pytest.raises(DBAPIError, match="readonly"):
                conn.execute(text("INSERT INTO t VALUES ('no')"))
    finally:
        engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_read_only_uri_never_creates_a_missing_file(tmp_path, name):
    engine = make_engine(sqlite_uri(tmp_path / name, "ro"))
    try:
        with pytest.raises(DatabaseUnavailable, match="cannot open the database"):
            verify_reachable(engine)
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_creating_uri_creates_exactly_the_named_file(tmp_path, name):
    engine = make_engine(sqlite_uri(tmp_path / name, "rwc"))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (v TEXT)"))
    finally:
        engine.dispose()
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_an_immutable_uri_reads_a_file_nothing_may_write(tmp_path):
    path = tmp_path / "frozen db.db"
    make_sqlite_file(path)
    path.chmod(0o444)
    engine = make_engine(sqlite_uri(path, "ro-immutable"))
    try:
        assert "immutable=1" in str(engine.url)
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM t")) == 1
    finally:
        engine.dispose()
        path.chmod(0o644)


def test_the_instance_key_lives_beside_a_sqlite_file_only(tmp_path):
    assert instance_key_path("sqlite:///data/pfd.db") == Path("data/pfd.db.key")
    odd = tmp_path / "what?.db"
    assert instance_key_path(sqlite_uri(odd)) == Path(f"{odd}.key")
    assert instance_key_path("sqlite://") is None
    assert instance_key_path("postgresql://u:p@h/db") is None


def test_a_database_that_answers_is_reachable(engine):
    verify_reachable(engine)  # raises if not
    assert locate(engine.url).sqlite == (engine.dialect.name == "sqlite")


def test_an_unreachable_database_is_named_with_what_to_check(dialect, tmp_path):
    if dialect == "sqlite":
        junk = tmp_path / "notes.db"
        junk.write_text("these are not the pages of a database\n" * 200)
        url = str(sqlite_uri(junk, "ro"))
        words = [f"{junk} is not a SQLite database", "pass --url"]
    else:
        url = "postgresql://pfd:topsecret@127.0.0.1:9/pfd?connect_timeout=2"
        words = ["cannot reach postgresql+psycopg://pfd:***@127.0.0.1:9/pfd", "server is running"]
    engine = make_engine(url)
    try:
        with pytest.raises(DatabaseUnavailable) as refused:
            verify_reachable(engine)
    finally:
        engine.dispose()
    message = str(refused.value)
    assert all(word in message for word in words), message
    assert "topsecret" not in message


def test_client_programs_reach_the_database_with_the_password_only_in_the_environment(
    engine, db_url
):
    given = db_url.replace("postgres@", "postgres:s3cret pw'@")
    target = locate(given)
    if target.sqlite:
        program = shutil.which("sqlite3")
        if program is None:
            pytest.fail("the sqlite3 client is not installed (apt-get install sqlite3)")
        query = ["SELECT 'in ' || (SELECT file FROM pragma_database_list WHERE name = 'main');"]
        expected = str(target.path)
    else:
        program = str(find_bindir() / "psql")
        query = ["-tAc", "SELECT current_database()"]
        expected = str(target.url.database)
    command = target.client_command(program, query, name_database=not target.sqlite)
    if not target.sqlite:
        assert command.environment["PGPASSWORD"] == "s3cret pw'"
        assert command.environment["PGDATABASE"] == expected
        assert "s3cret" not in " ".join(command.argv)
    else:
        assert command.argv[:2] == [program, expected]
    done = subprocess.run(command.argv, env=command.environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (expected if not target.sqlite else f"in {expected}")
