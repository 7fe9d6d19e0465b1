"""pfd_db.target: URL forms and masking, SQLite file URIs of odd paths and side
files, client programs' arguments, reachability, the instance key's place, what
tells databases apart and the same database on another server, on both dialects."""

from __future__ import annotations

import shlex
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from cli_support import assert_refused, pfd_db
from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.errors import DatabaseUnavailable
from pfd_db.target import (
    SQLITE_MAGIC,
    as_text,
    command_url,
    first_line,
    identity,
    instance_key_path,
    locate,
    mask_password,
    normalise_url,
    on_server,
    parse_url,
    sqlite_side_file,
    sqlite_side_files,
    sqlite_uri,
    verify_reachable,
)
from pgserver import PostgresServer, find_bindir

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


def test_a_socket_directory_is_shown_readable_and_still_parses():
    given = "postgresql://u:topsecret@/db?host=/run/pfd%20pg&password=topsecret"
    shown = mask_password(given)
    assert shown == "postgresql://u:***@/db?host=/run/pfd+pg&password=***"
    assert parse_url(shown).query["host"] == "/run/pfd pg"
    assert mask_password("postgresql://a%2Fb:pw@h/db") == "postgresql://a%2Fb:***@h/db"


def test_the_full_text_of_a_url_parses_back_to_it_password_included():
    url = parse_url("postgresql://u:p%40ss w@h:6/db?sslmode=require")
    assert parse_url(as_text(url)) == url
    assert url.password == "p@ss w"


def test_one_database_has_one_identity_however_its_url_spells_it(tmp_path, monkeypatch):
    path = tmp_path / "what?.db"
    make_sqlite_file(path)
    link = tmp_path / "link.db"
    link.symlink_to(path)
    monkeypatch.chdir(tmp_path)
    spellings = [sqlite_uri(path), f"sqlite:///{link}", "sqlite:///link.db", sqlite_uri(link, "rw")]
    assert {identity(url) for url in spellings} == {str(path)}
    assert identity(f"sqlite:///{tmp_path / 'other.db'}") != str(path)
    first = identity("postgresql://u:topsecret@h/db")
    assert first == identity("postgres://u:other@h/db") == identity("postgresql+psycopg://u@h/db")
    assert "topsecret" not in first
    assert first != identity("postgresql://u@h/db2") != identity("postgresql://u@h2/db")


def test_the_same_database_on_another_server_keeps_the_options_not_the_address():
    given = parse_url("postgresql://app:pw@bouncer:6432/db?sslmode=require&host=x&hostaddr=1.2.3.4")
    moved = on_server(given, database="real", username="app", host="10.0.0.5", port=5433)
    assert (moved.host, moved.port, moved.database, moved.password) == (
        "10.0.0.5",
        5433,
        "real",
        "pw",
    )
    assert dict(moved.query) == {"sslmode": "require"}
    assert moved.drivername == "postgresql+psycopg"
    other = on_server(
        given, database="real", username="owner", socket_directory="/run/pg", port=5433
    )
    assert (other.host, other.port, other.password, other.username) == (None, None, None, "owner")
    assert dict(other.query) == {"sslmode": "require", "host": "/run/pg", "port": "5433"}
    usual = on_server(given, database="real", username="app", socket_directory="/run/pg", port=5432)
    assert dict(usual.query) == {"sslmode": "require", "host": "/run/pg"}


def test_a_url_moved_to_the_real_server_reaches_the_same_database(dialect, db_url, request):
    if dialect == "sqlite":
        assert on_server(parse_url(db_url), database="x", username="u").database == "x"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    given = parse_url("postgresql://postgres:pw@nowhere.invalid:9/wrong?application_name=moved")
    moved = on_server(
        given,
        database=str(parse_url(db_url).database),
        username="postgres",
        socket_directory=str(server.sockdir),
    )
    engine = make_engine(moved)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT current_database(), current_setting('application_name')")
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == (parse_url(db_url).database, "moved")


def test_the_side_files_and_header_are_the_ones_sqlite_writes(tmp_path):
    path = tmp_path / "pfd.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES ('x')")
    conn.commit()
    try:
        assert path.read_bytes()[: len(SQLITE_MAGIC)] == SQLITE_MAGIC
        assert sqlite_side_file(path, "wal").exists()
        assert sqlite_side_file(path, "shm").exists()
    finally:
        conn.close()
    assert sqlite_side_files(path) == (
        tmp_path / "pfd.db-wal",
        tmp_path / "pfd.db-shm",
        tmp_path / "pfd.db-journal",
    )


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_suggested_command_names_the_same_file(tmp_path, name):
    path = tmp_path / name
    given = command_url(sqlite_uri(path, "ro"))
    (unquoted,) = shlex.split(given)
    assert locate(unquoted).path == path


def test_a_suggested_command_never_holds_a_password():
    given = command_url("postgresql://u:topsecret@h:6/db?sslmode=require&password=topsecret")
    assert given == "'postgresql://u@h:6/db?sslmode=require'"


def test_the_first_line_of_a_message_or_the_type_when_it_is_empty():
    assert first_line(ValueError("  first\nsecond")) == "first"
    assert first_line(ValueError()) == "ValueError"


def test_a_database_at_an_unknown_revision_says_which_and_what_to_do(fresh_url, fresh_engine):
    migrations.upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'fffffffffff0'")
    line = assert_refused(
        pfd_db("user", "list", "--url", fresh_url), "unknown revision fffffffffff0"
    )
    assert f"knows up to {migrations.head_revision()}): upgrade pfd-db, or pass --url" in line


def test_a_server_url_holding_a_byte_that_is_not_utf8_is_refused_in_words():
    undecodable = b"postgresql://u:s3cret@127.0.0.1:1/d\xffb".decode("utf-8", "surrogateescape")
    with pytest.raises(DatabaseUnavailable, match="not UTF-8") as refused:
        parse_url(undecodable)
    assert "s3cret" not in str(refused.value)
    file = b"sqlite:////tmp/d\xffb.db".decode("utf-8", "surrogateescape")
    assert parse_url(file).database == "/tmp/d\udcffb.db"  # any bytes name a file
    assert mask_password(file) == "<unparseable URL>"
