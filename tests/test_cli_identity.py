"""pfd-db user ... and pfd-db apikey ..., on both dialects."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from cli_support import assert_refused, pfd_db, pfd_db_process
from conftest import find_plaintexts
from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.errors import AuthenticationFailed
from pfd_db.models import APIKey, Base, Role, User
from pfd_db.passwords import verify_password
from pfd_db.store.identity import api_keys

PASSWORD = "correct-horse-battery-staple"
SHOWN_ONCE = "(shown once, store it now):"


@pytest.fixture
def url(fresh_url):
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    engine.dispose()
    return fresh_url


@pytest.fixture
def session_on(url):
    """A session on the CLI's database. Tests commit it before running the CLI: on
    SQLite an open write transaction holds the lock the CLI needs."""
    from sqlalchemy.orm import Session

    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        yield session
    engine.dispose()


def cli(url: str, *args: str, input: str | None = None):
    return pfd_db(*args, "--url", url, input=input)


def create(url, name="ada", role="operator"):
    typed = f"{PASSWORD}\n{PASSWORD}\n"
    return cli(url, "user", "create", name, "--email", f"{name}@example.com", "--role", role,
               input=typed)  # fmt: skip


def secret_after_label(output: str) -> str:
    """The line after the 'shown once' label: the secret, on a line of its own."""
    lines = output.splitlines()
    label = next(i for i, line in enumerate(lines) if line.endswith(SHOWN_ONCE))
    return lines[label + 1]


def verifies(session, key: str) -> bool:
    """Whether ``key`` is accepted (a refusal raises AuthenticationFailed, or gave None)."""
    try:
        return api_keys.verify(session, key) is not None
    except AuthenticationFailed:
        return False


def issue_key(url: str, *extra: str) -> str:
    result = cli(url, "apikey", "create", "ada", "--name", "ci", "--quiet", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


# --- users ---------------------------------------------------------------------------


def test_user_create_asks_for_the_password_twice_and_hashes_it(url, session_on):
    result = create(url)
    assert result.exit_code == 0, result.output
    assert "created user 'ada' (operator)" in result.output
    assert PASSWORD not in result.output
    user = session_on.scalars(select(User)).one()
    assert user.role is Role.OPERATOR
    assert verify_password(user.password_hash, PASSWORD)


def test_user_create_can_generate_and_show_the_password_once(url, session_on):
    result = cli(url, "user", "create", "bob", "--email", "bob@example.com",
                 "--generate-password")  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = secret_after_label(result.stdout)
    user = session_on.scalars(select(User)).one()
    assert verify_password(user.password_hash, shown)


def test_user_create_quiet_prints_only_the_password(url, session_on):
    result = cli(url, "user", "create", "bob", "--email", "bob@example.com",
                 "--generate-password", "--quiet")  # fmt: skip
    (shown,) = result.stdout.splitlines()
    assert verify_password(session_on.scalars(select(User)).one().password_hash, shown)


def test_a_bad_role_is_refused_before_the_password_is_asked(url, session_on):
    result = cli(url, "user", "create", "ada", "--email", "ada@example.com", "--role", "boss")
    assert_refused(result, "role must be one of viewer, operator, admin, super_admin")
    assert "Password" not in result.output
    assert session_on.scalars(select(User)).all() == []


def test_the_role_help_names_every_role():
    result = pfd_db("user", "create", "--help")
    assert all(role.value in result.output for role in Role)


def test_user_errors_are_one_line_and_exit_2(url):
    create(url)
    assert_refused(create(url), "already taken")
    assert_refused(cli(url, "user", "set-role", "nobody", "admin"), "no user named 'nobody'")
    no_input = cli(url, "user", "create", "eve", "--email", "eve@example.com")
    assert_refused(no_input, "aborted")


def test_user_list_set_role_deactivate_and_reset_password(url, session_on):
    create(url)
    assert cli(url, "user", "set-role", "ada", "admin").exit_code == 0
    listing = cli(url, "user", "list")
    assert "ada" in listing.output and "admin" in listing.output
    assert cli(url, "user", "deactivate", "ada").exit_code == 0
    reset = cli(url, "user", "reset-password", "ada", "--generate-password")
    assert reset.exit_code == 0
    new = secret_after_label(reset.stdout)
    user = session_on.scalars(select(User)).one()
    assert (user.role, user.is_active) == (Role.ADMIN, False)
    assert verify_password(user.password_hash, new)


def test_user_list_json(url):
    create(url)
    document = json.loads(cli(url, "user", "list", "--json").stdout)
    (ada,) = document["users"]
    assert set(ada) == {"id", "username", "email", "role", "active", "two_factor",
                        "locked_until", "created_at"}  # fmt: skip
    assert (ada["username"], ada["role"], ada["active"]) == ("ada", "operator", True)
    assert PASSWORD not in json.dumps(document)


# --- API keys ---------------------------------------------------------------------------


def test_apikey_create_prints_the_key_on_a_line_of_its_own_and_it_verifies(url, session_on):
    create(url)
    result = cli(url, "apikey", "create", "ada", "--name", "ci", "--scope", "read",
                 "--scope", "write", "--expires-days", "30")  # fmt: skip
    assert result.exit_code == 0, result.output
    key_text = secret_after_label(result.stdout)
    key = api_keys.verify(session_on, key_text)
    session_on.commit()  # verify stamped last_used_at: end the write before the CLI writes
    assert sorted(key.scopes) == ["read", "write"]
    listing = cli(url, "apikey", "list")
    assert key.prefix in listing.output and key_text not in listing.output
    assert find_plaintexts(session_on.get_bind(), Base.metadata, [key_text]) == []


def test_apikey_create_quiet_into_a_file_writes_only_the_key(url, session_on, tmp_path):
    create(url)
    result = pfd_db_process("apikey", "create", "ada", "--name", "ci", "--quiet", "--url", url)
    assert result.returncode == 0, result.stderr
    key_text = result.stdout
    assert key_text.endswith("\n") and key_text.count("\n") == 1
    assert key_text.isascii() and verifies(session_on, key_text.strip())


def test_apikey_list_json_and_wide_tables_when_piped(url):
    create(url)
    long_name = "nightly export of every vibration signal to the cold archive, kept a year"
    issue_key(url, "--name", long_name)
    document = json.loads(cli(url, "apikey", "list", "--json").stdout)
    (key,) = document["api_keys"]
    assert set(key) == {"id", "prefix", "user", "name", "scopes", "active", "rate_limit",
                        "created_at", "expires_at", "last_used_at", "revoked_at"}  # fmt: skip
    assert key["name"] == long_name and key["active"] is True
    piped = pfd_db_process("apikey", "list", "--url", url, env={"COLUMNS": "80"})
    assert long_name in piped.stdout and key["prefix"] in piped.stdout


def test_apikey_revoke_by_id_whole_key_or_prefix_start(url, session_on):
    create(url)
    by_id, whole, start = (issue_key(url) for _ in range(3))
    ids = dict(session_on.execute(select(APIKey.prefix, APIKey.id)).all())
    session_on.commit()

    def prefix(key: str) -> str:
        return key.split("_")[1]

    assert cli(url, "apikey", "revoke", str(ids[prefix(by_id)])).exit_code == 0
    assert cli(url, "apikey", "revoke", whole).exit_code == 0
    revoked = cli(url, "apikey", "revoke", f"pfd_{prefix(start)[:8]}")
    assert revoked.exit_code == 0 and "revoked key" in revoked.output
    session_on.expire_all()
    assert not any(verifies(session_on, key) for key in (by_id, whole, start))
    session_on.commit()
    again = cli(url, "apikey", "revoke", whole)
    assert again.exit_code == 0 and "was already revoked" in again.output


def test_apikey_revoke_refuses_what_names_no_single_key(url, session_on):
    create(url)
    key = issue_key(url)
    prefix = key.split("_")[1]
    # seven digits name an id (the store reads short digit strings as ids), so keep a letter in
    short = prefix[:7] if not prefix[:7].isdigit() else prefix[:6] + "f"
    assert_refused(cli(url, "apikey", "revoke", short), "at least 8 characters")
    assert_refused(cli(url, "apikey", "revoke", "9999999"), "no API key")
    assert_refused(cli(url, "apikey", "revoke", "0123456789abcdef"), "no API key")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert_refused(cli(url, "apikey", "revoke", forged), "no API key")
    assert verifies(session_on, key)


def test_an_ambiguous_prefix_start_is_refused(url, session_on):
    create(url)
    for _ in range(2):
        issue_key(url)
    keys = session_on.scalars(select(APIKey).order_by(APIKey.id)).all()
    ninth = "0" if keys[0].prefix[8] != "0" else "1"  # same 8 first characters, not 9
    keys[1].prefix = keys[0].prefix[:8] + ninth + keys[1].prefix[9:]
    session_on.commit()
    assert_refused(cli(url, "apikey", "revoke", keys[0].prefix[:8]), "several keys")
    assert cli(url, "apikey", "revoke", keys[0].prefix[:9]).exit_code == 0
