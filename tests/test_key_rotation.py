"""Rotating the instance key (PFD_DB_SECRET_KEY=new,old) and `pfd-db key rotate`,
on both dialects: TOTP, unused backup codes and API keys keep working."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from cli_support import pfd_db, settings_env
from pfd_db import crypto, migrations
from pfd_db.engine import make_engine
from pfd_db.errors import AuthenticationFailed, ConfigurationError
from pfd_db.models import User, WebhookConfiguration
from pfd_db.store.identity import api_keys, twofactor
from pfd_db.store.notify import webhooks

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
OTHER = Fernet.generate_key().decode()
T0 = datetime(2030, 6, 1, 12, 0, 15, tzinfo=UTC)
STEP = timedelta(seconds=30)


def keys(*listed: str) -> dict[str, str]:
    return {"PFD_DB_SECRET_KEY": ",".join(listed)}


@pytest.fixture
def engine_on(fresh_url):
    """A migrated, empty database (the CLI needs one at head) and an engine on it."""
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    yield fresh_url, engine
    engine.dispose()


def enrol(engine, name: str = "ada") -> tuple[pyotp.TOTP, list[str], str]:
    """A user with 2FA on, backup codes and an API key, all made under OLD alone."""
    with settings_env(keys(OLD)), Session(engine, expire_on_commit=False) as session:
        user = User(username=name, email=f"{name}@example.com")
        session.add(user)
        secret, _ = twofactor.begin_setup(session, user)
        earlier = T0 - timedelta(hours=1)
        twofactor.confirm_setup(session, user, pyotp.TOTP(secret).at(earlier), now=earlier)
        codes = twofactor.generate_backup_codes(session, user, 4)
        plaintext, _ = api_keys.issue(session, user, name="ci")
        session.commit()
    return pyotp.TOTP(secret), codes, plaintext


def accepts(engine, check, code: str, at: datetime, name: str = "ada") -> bool:
    """Whether ``check`` (verify_totp or use_backup_code) accepts ``code``; committed."""
    with Session(engine) as session:
        user = session.scalars(select(User).where(User.username == name)).one()
        try:
            check(session, user, code, now=at)
        except AuthenticationFailed:
            return False
        finally:
            session.commit()
        return True


def key_works(engine, plaintext: str) -> bool:
    with Session(engine) as session:
        return api_keys.verify(session, plaintext).user.username == "ada"


def rotate(url: str, *listed: str, batch: int = 500):
    return pfd_db("key", "rotate", "--url", url, "--batch-size", str(batch), env=keys(*listed))


def test_a_rotation_keeps_totp_backup_codes_and_api_keys_working(engine_on):
    url, engine = engine_on
    totp, codes, plaintext = enrol(engine)
    with settings_env(keys(NEW, OLD)):
        assert accepts(engine, twofactor.verify_totp, totp.at(T0), T0)
        assert accepts(engine, twofactor.use_backup_code, codes[0], T0)
        assert not accepts(engine, twofactor.use_backup_code, codes[0], T0)  # used up
        assert key_works(engine, plaintext)

    result = rotate(url, NEW, OLD)
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 of 1 TOTP secrets" in result.output

    with settings_env(keys(NEW)):  # the old key is gone
        later = T0 + 2 * STEP
        assert accepts(engine, twofactor.verify_totp, totp.at(later), later)
        assert key_works(engine, plaintext)
        # a backup code made under the old key cannot be re-hashed: it needs OLD listed
        assert not accepts(engine, twofactor.use_backup_code, codes[1], later)
    with settings_env(keys(NEW, OLD)):
        assert accepts(engine, twofactor.use_backup_code, codes[1], T0 + 3 * STEP)


def test_backup_codes_made_after_the_rotation_need_only_the_new_key(engine_on):
    _, engine = engine_on
    enrol(engine)
    with settings_env(keys(NEW, OLD)), Session(engine) as session:
        user = session.scalars(select(User)).one()
        fresh = twofactor.generate_backup_codes(session, user, 2)
        session.commit()
    with settings_env(keys(NEW)):
        assert accepts(engine, twofactor.use_backup_code, fresh[0], T0)


def test_rotate_works_in_batches_and_again_changes_nothing(engine_on):
    url, engine = engine_on
    names = [f"user{k}" for k in range(5)]
    for name in names:
        enrol(engine, name)
    result = rotate(url, NEW, OLD, batch=2)
    assert result.exit_code == 0, result.output
    assert "re-encrypted 5 of 5 TOTP secrets" in result.output
    with settings_env(keys(NEW)), Session(engine) as session:
        secrets = session.scalars(select(User.totp_secret).order_by(User.id)).all()
        assert len(secrets) == 5 and all(crypto.decrypt(s) for s in secrets)
    again = pfd_db("key", "rotate", "--url", url, "--json", env=keys(NEW, OLD))
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == {
        "totp_secrets": 5,
        "reencrypted": 0,
        "webhook_secrets": 0,
        "webhook_reencrypted": 0,
    }


def test_rotate_moves_webhook_signing_secrets_to_the_new_key(engine_on):
    url, engine = engine_on
    enrol(engine)
    with settings_env(keys(OLD)), Session(engine, expire_on_commit=False) as session:
        user = session.scalars(select(User)).one()
        hook, _ = webhooks.create_webhook(
            session, user, "https://hooks.example.com/pfd", ["training.complete"]
        )
        signed_before = webhooks.signature(hook, b"{}", now=T0)
        session.commit()
    result = pfd_db("key", "rotate", "--url", url, "--json", env=keys(NEW, OLD))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["webhook_reencrypted"] == 1
    with settings_env(keys(NEW)), Session(engine) as session:
        hook = session.get(WebhookConfiguration, hook.id)
        assert hook is not None and webhooks.signature(hook, b"{}", now=T0) == signed_before


def test_rotate_without_the_key_that_opens_a_secret_fails_and_changes_nothing(engine_on):
    url, engine = engine_on
    enrol(engine)
    with Session(engine) as session:
        before = session.scalars(select(User.totp_secret)).one()
    result = rotate(url, NEW, OTHER)
    assert result.exit_code == 2
    assert "does not open with the instance key" in result.output
    with Session(engine) as session:
        assert session.scalars(select(User.totp_secret)).one() == before


def test_keyed_hashes_give_one_hash_per_listed_key_the_first_keys_first():
    with settings_env(keys(NEW, OLD)):
        both = crypto.keyed_hashes("backup-code", "ABCDE23456")
        first = crypto.keyed_hash("backup-code", "ABCDE23456")
    with settings_env(keys(OLD)):
        old = crypto.keyed_hash("backup-code", "ABCDE23456")
    assert both == [first, old] and first != old


def test_reencrypt_moves_a_secret_to_the_first_key_once():
    with settings_env(keys(OLD)):
        token = crypto.encrypt("the secret")
    with settings_env(keys(NEW, OLD)):
        moved = crypto.reencrypt(token)
        assert moved is not None and crypto.reencrypt(moved) is None
    with settings_env(keys(NEW)):
        assert crypto.decrypt(moved) == "the secret"
    with settings_env(keys(NEW, OTHER)), pytest.raises(ConfigurationError):
        crypto.reencrypt(token)
