"""pfd-db user ... and pfd-db apikey ..., on both dialects."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from conftest import find_plaintexts
from pfd_db import migrations
from pfd_db.cli import app
from pfd_db.engine import make_engine
from pfd_db.errors import AuthenticationFailed
from pfd_db.models import APIKey, Base, Role, User
from pfd_db.passwords import verify_password
from pfd_db.store import api_keys

runner = CliRunner()
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def url(fresh_url):
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    engine.dispose()
    return fresh_url


@pytest.fixture
def session_on(url):
    """A session on the CLI's database. Tests commit it before running the CLI: on
    SQLite an open transaction holds the write lock the CLI needs."""
    from sqlalchemy.orm import Session

    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        yield session
    engine.dispose()


def pfd_db(url: str, *args: str, input: str | None = None):
    return runner.invoke(app, [*args, "--url", url], input=input)


def create(url, name="ada", role="operator"):
    typed = f"{PASSWORD}\n{PASSWORD}\n"
    return pfd_db(url, "user", "create", name, "--email", f"{name}@example.com", "--role", role,
                  input=typed)  # fmt: skip


def test_user_create_asks_for_the_password_twice_and_hashes_it(url, session_on):
    result = create(url)
    assert result.exit_code == 0, result.output
    assert "created user 'ada' (operator)" in result.output
    assert PASSWORD not in result.output
    user = session_on.scalars(select(User)).one()
    assert user.role is Role.OPERATOR
    assert verify_password(user.password_hash, PASSWORD)


def test_user_create_can_generate_and_show_the_password_once(url, session_on):
    result = pfd_db(url, "user", "create", "bob", "--email", "bob@example.com",
                    "--generate-password")  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = re.search(r"│ (\S{20,}) +│", result.output).group(1)
    user = session_on.scalars(select(User)).one()
    assert verify_password(user.password_hash, shown)


def test_user_errors_are_one_line_and_exit_2(url):
    create(url)
    duplicate = create(url)
    assert duplicate.exit_code == 2 and duplicate.stderr.count("\n") == 1
    missing = pfd_db(url, "user", "set-role", "nobody", "admin")
    assert missing.exit_code == 2 and "no user named 'nobody'" in missing.stderr


def test_user_list_set_role_deactivate_and_reset_password(url, session_on):
    create(url)
    assert pfd_db(url, "user", "set-role", "ada", "admin").exit_code == 0
    listing = pfd_db(url, "user", "list")
    assert "ada" in listing.output and "admin" in listing.output
    assert pfd_db(url, "user", "deactivate", "ada").exit_code == 0
    reset = pfd_db(url, "user", "reset-password", "ada", "--generate-password")
    assert reset.exit_code == 0
    new = re.search(r"│ (\S{20,}) +│", reset.output).group(1)
    user = session_on.scalars(select(User)).one()
    assert (user.role, user.is_active) == (Role.ADMIN, False)
    assert verify_password(user.password_hash, new)


def test_apikey_create_shows_the_key_once_and_it_verifies(url, session_on):
    create(url)
    result = pfd_db(url, "apikey", "create", "ada", "--name", "ci", "--scope", "read",
                    "--scope", "write", "--expires-days", "30")  # fmt: skip
    assert result.exit_code == 0, result.output
    key_text = re.search(r"(pfd_\S+)", result.output).group(1)
    key = api_keys.verify(session_on, key_text)
    session_on.commit()  # verify stamped last_used_at: end the write before the CLI writes
    assert key is not None and sorted(key.scopes) == ["read", "write"]
    listing = pfd_db(url, "apikey", "list")
    assert key.prefix in listing.output and key_text not in listing.output
    assert find_plaintexts(session_on.get_bind(), Base.metadata, [key_text]) == []


def test_apikey_revoke_by_prefix(url, session_on):
    create(url)
    result = pfd_db(url, "apikey", "create", "ada", "--name", "ci")
    key_text = re.search(r"(pfd_\S+)", result.output).group(1)
    prefix = session_on.scalars(select(APIKey.prefix)).one()
    session_on.commit()
    revoked = pfd_db(url, "apikey", "revoke", prefix)
    assert revoked.exit_code == 0, revoked.output
    session_on.expire_all()
    with pytest.raises(AuthenticationFailed, match="authentication failed"):
        api_keys.verify(session_on, key_text)
    session_on.commit()
    assert pfd_db(url, "apikey", "revoke", "nosuchprefix").exit_code == 2
