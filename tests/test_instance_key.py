"""The instance key follows the database: ``session.configure(url=...)`` moves the
key look-up there, ``init`` creates the key where it is configured, and ``check``
fails (exit 4) when no usable key is configured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select

from cli_support import pfd_db, settings_env
from pfd_db import session as sessions
from pfd_db.crypto import key_file_path
from pfd_db.errors import ConfigurationError
from pfd_db.models import User
from pfd_db.store.identity import twofactor

NO_KEY = {"PFD_DB_SECRET_KEY": "", "PFD_DB_SECRET_KEY_FILE": ""}


@pytest.fixture
def no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No key in the environment; PFD_DB_URL names another SQLite file, with a key
    beside it, so a look-up that follows the settings instead of the database finds
    the wrong key. Yields that other database's key file."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    with settings_env({**NO_KEY, "PFD_DB_URL": f"sqlite:///{other / 'other.db'}"}):
        assert pfd_db("init", "--quiet").exit_code == 0
        yield other / "other.db.key"
        sessions.reset()


def enable_and_verify(url: str) -> None:
    """Set up and confirm TOTP for the admin, then verify a code, through sessions
    configured for ``url``."""
    sessions.configure(url=url)
    with sessions.get_db_session() as s:
        admin = s.scalars(select(User)).one()
        secret, _ = twofactor.begin_setup(s, admin)
        twofactor.confirm_setup(s, admin, pyotp.TOTP(secret).now())
    with sessions.get_db_session() as s:
        admin = s.scalars(select(User)).one()
        admin.totp_last_step = None
        s.flush()
        twofactor.verify_totp(s, admin, pyotp.TOTP(secret).now())


def test_configure_moves_the_key_look_up_to_that_database(fresh_url, dialect, no_key):
    init = pfd_db("init", "--quiet", "--url", fresh_url)
    assert init.exit_code == 0, init.output
    if dialect == "sqlite":
        beside = Path(fresh_url.removeprefix("sqlite:///") + ".key")
        assert beside.exists() and beside.read_bytes() != no_key.read_bytes()
        enable_and_verify(fresh_url)
        assert key_file_path() == beside
        with sessions.get_db_session() as s:  # the secret is under the database's own key
            stored = s.scalars(select(User.totp_secret)).one()
        sessions.reset()
        assert key_file_path() == no_key
        from pfd_db.crypto import decrypt

        with pytest.raises(ConfigurationError, match="does not open"):
            decrypt(str(stored))
    else:  # no key file is implied for PostgreSQL: not the one beside PFD_DB_URL either
        with pytest.raises(ConfigurationError, match="no instance key"):
            enable_and_verify(fresh_url)
        assert key_file_path() is None
        with sessions.get_db_session() as s:
            assert s.scalars(select(User.totp_secret)).one() is None


def test_init_creates_the_key_where_it_is_configured_and_check_finds_it(
    fresh_url, tmp_path, no_key
):
    key_file = tmp_path / "keys" / "c.db.key"
    key_file.parent.mkdir()
    env = {"PFD_DB_SECRET_KEY_FILE": str(key_file)}
    init = pfd_db("init", "--url", fresh_url, env=env)
    assert init.exit_code == 0, init.output
    assert f"instance key: created {key_file}" in init.stdout
    assert key_file.stat().st_mode & 0o777 == 0o600
    if fresh_url.startswith("sqlite"):
        assert not Path(fresh_url.removeprefix("sqlite:///") + ".key").exists()
    check = pfd_db("check", "--json", "--url", fresh_url, env=env)
    document = json.loads(check.stdout)
    assert check.exit_code == 0 and document["instance_key"]["usable"] is True
    assert document["instance_key"]["source"] == f"PFD_DB_SECRET_KEY_FILE {key_file}"
    with settings_env(env):
        enable_and_verify(fresh_url)
    again = pfd_db("init", "--url", fresh_url, env=env)  # the key is kept, not replaced
    assert again.exit_code == 0 and "instance key: created" not in again.stdout


def test_init_refuses_a_key_file_in_a_missing_folder_before_writing(fresh_url, tmp_path, no_key):
    key_file = tmp_path / "missing" / "c.db.key"
    result = pfd_db("init", "--url", fresh_url, env={"PFD_DB_SECRET_KEY_FILE": str(key_file)})
    assert result.exit_code == 2
    assert f"its folder {key_file.parent} does not exist" in result.stderr
    assert not key_file.parent.exists()
    if fresh_url.startswith("sqlite"):
        assert not Path(fresh_url.removeprefix("sqlite:///")).exists()
    else:
        current = json.loads(pfd_db("current", "--json", "--url", fresh_url).stdout)
        assert current["revision"] is None


def test_check_fails_with_4_when_no_usable_key_is_configured(fresh_url, tmp_path, no_key):
    key_file = tmp_path / "c.db.key"
    env = {"PFD_DB_SECRET_KEY_FILE": str(key_file)}
    assert pfd_db("init", "--quiet", "--url", fresh_url, env=env).exit_code == 0
    assert pfd_db("check", "--url", fresh_url, env=env).exit_code == 0
    key_file.unlink()
    missing = pfd_db("check", "--url", fresh_url, env=env)
    assert missing.exit_code == 4
    assert "no usable instance key" in missing.stderr and str(key_file) in missing.stderr
    key_file.write_text("not a fernet key\n")
    assert pfd_db("check", "--url", fresh_url, env=env).exit_code == 4
    # no key anywhere: on SQLite none beside the file (init made the configured one)
    nothing = pfd_db("check", "--json", "--url", fresh_url)
    document = json.loads(nothing.stdout)
    assert nothing.exit_code == 4 and document["instance_key"]["usable"] is False
