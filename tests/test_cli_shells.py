"""pfd-db shell (a Python prompt with a session) and pfd-db dbshell (sqlite3 or
psql on the database), run as programs with their input piped in."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

from cli_support import assert_refused, pfd_db, pfd_db_process
from pfd_db.engine import make_engine
from pfd_db.models import User
from pfd_db.target import locate
from pgserver import worker_name


@pytest.fixture
def url(fresh_url):
    assert pfd_db("init", "--quiet", "--url", fresh_url).exit_code == 0
    return fresh_url


def users_in(url: str) -> list[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        names = list(conn.scalars(select(User.username).order_by(User.username)))
    engine.dispose()
    return names


def test_shell_has_a_session_the_models_and_the_store_ready(url):
    typed = (
        "print('users:', session.scalar(select(func.count()).select_from(User)))\n"
        "print('store:', {'users', 'api_keys', 'experiments', 'search'} <= set(dir()))\n"
        "users.create_user(session, 'zoe', 'zoe@example.com', 'a long enough passphrase')\n"
        "session.commit()\n"
    )
    done = pfd_db_process("shell", "--url", url, input=typed)
    assert done.returncode == 0, done.stderr
    assert "users: 1" in done.stdout and "store: True" in done.stdout
    assert "session:" in done.stderr  # the banner says what is there
    assert users_in(url) == ["admin", "zoe"]


def test_shell_commits_nothing_by_itself(url):
    typed = "users.create_user(session, 'zoe', 'zoe@example.com', 'a long enough passphrase')\n"
    assert pfd_db_process("shell", "--url", url, input=typed).returncode == 0
    assert users_in(url) == ["admin"]


def test_dbshell_starts_sqlite3_on_the_file(tmp_path):
    if shutil.which("sqlite3") is None:
        pytest.fail("the sqlite3 client is not installed (apt-get install sqlite3)")
    url = f"sqlite:///{tmp_path / 'pfd.db'}"
    pfd_db("init", "--quiet", "--url", url)
    done = pfd_db_process("dbshell", "--url", url, input="select username from users;\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "admin"


def test_dbshell_starts_psql_with_the_password_in_its_environment(pg_server):
    name = worker_name("pfd_dbshell")
    pg_server.create_database(name)
    try:
        url = pg_server.url(name)
        pfd_db("init", "--quiet", "--url", url)
        given = url.replace("postgres@", "postgres:s3cret-pw@")
        done = pfd_db_process("dbshell", "--url", given, "--", "-tAc", "select username from users")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "admin"
        command = locate(given).client_command("psql", ["-tAc", "select 1"])
        assert command.argv == ["psql", "-tAc", "select 1"]
        assert command.environment["PGPASSWORD"] == "s3cret-pw"
        assert command.environment["PGHOST"] == str(pg_server.sockdir)
        assert command.environment["PGDATABASE"] == name
        assert "s3cret-pw" not in " ".join(command.argv)
    finally:
        pg_server.drop_database(name)


def test_dbshell_says_when_the_client_is_not_installed(tmp_path):
    url = f"sqlite:///{tmp_path / 'pfd.db'}"
    pfd_db("init", "--quiet", "--url", url)
    empty = tmp_path / "bin"
    empty.mkdir()
    done = pfd_db("dbshell", "--url", url, env={"PATH": str(empty)})
    assert_refused(done, "sqlite3 is not installed", "apt-get install sqlite3")


def test_dbshell_never_creates_a_missing_database(tmp_path):
    assert_refused(pfd_db("dbshell", "--url", f"sqlite:///{tmp_path / 'pfd.db'}"), "no pfd-db")
    assert list(tmp_path.iterdir()) == []
