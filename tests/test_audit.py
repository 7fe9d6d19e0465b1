"""The audit log on both dialects: every security-relevant store operation writes
one entry in the caller's transaction (a lockout in the failed login's own), with
no secret in it; ``audit.record`` and ``audit.entries``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cli_support import pfd_db, settings_env
from pfd_db import migrations
from pfd_db.config import get_settings
from pfd_db.engine import make_engine
from pfd_db.errors import AuthenticationFailed, InvalidInput, NotFound
from pfd_db.models import SystemLog, User, WebhookConfiguration
from pfd_db.store.identity import api_keys, sessions, twofactor, users
from pfd_db.store.notify import webhooks
from pfd_db.store.ops import audit

PASSWORD = "correct-horse-battery-staple"
WRONG = "not-the-right-password"
T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)


def logged(db) -> list[tuple[str, str, int | None, dict]]:
    """(action, status, actor, details) of every entry, oldest first."""
    rows = db.scalars(select(SystemLog).order_by(SystemLog.id)).all()
    return [(e.action, e.status, e.user_id, e.details) for e in rows]


def entries_count(db) -> int:
    return db.scalar(select(func.count()).select_from(SystemLog))


@pytest.fixture
def ada(db, plaintexts) -> User:
    plaintexts.append(PASSWORD)
    user = users.create_user(db, "ada", "ada@example.com", PASSWORD)
    db.commit()
    db.execute(SystemLog.__table__.delete())  # the tests below start from no entries
    db.commit()
    return user


def about(user: User, **more) -> dict:
    return {"user_id": user.id, "username": user.username, **more}


# --- each operation, one entry -------------------------------------------------------


def test_creating_a_user_is_audited_in_the_callers_transaction(db, plaintexts):
    plaintexts.append(PASSWORD)
    bob = users.create_user(db, "bob", "bob@example.com", PASSWORD, role="operator")
    assert logged(db) == [("user.created", "success", None, about(bob, role="operator"))]
    db.rollback()
    assert entries_count(db) == 0  # rolled back with the user


def test_role_changes_deactivation_and_password_resets(db, ada, plaintexts):
    token, _ = sessions.start_session(db, ada)
    plaintexts.append(token)
    users.set_role(db, ada, "viewer")  # no change: nothing to audit
    users.set_role(db, ada, "admin")
    new_password = users.reset_password(db, ada)
    plaintexts.append(new_password)
    users.deactivate(db, ada)
    users.deactivate(db, ada)  # already inactive
    db.commit()
    assert logged(db) == [
        ("user.role_changed", "success", None, about(ada, old="viewer", new="admin")),
        ("user.password_reset", "success", None, about(ada, generated=True, sessions_ended=1)),
        ("user.deactivated", "success", None, about(ada, sessions_ended=0)),
    ]


def test_two_factor_changes_are_audited(db, ada, plaintexts):
    secret, _uri = twofactor.begin_setup(db, ada)
    plaintexts.append(secret)
    twofactor.confirm_setup(db, ada, pyotp.TOTP(secret).at(T0), now=T0)
    codes = twofactor.generate_backup_codes(db, ada, 4)
    plaintexts.extend(code.replace("-", "") for code in codes)
    plaintexts.extend(codes)
    twofactor.disable(db, ada)
    twofactor.disable(db, ada)  # off already
    db.commit()
    assert logged(db) == [
        ("twofactor.enabled", "success", None, about(ada)),
        ("twofactor.backup_codes", "success", None, about(ada, count=4)),
        ("twofactor.disabled", "success", None, about(ada)),
    ]


def test_api_keys_issued_and_revoked_are_audited_by_prefix_never_the_key(db, ada, plaintexts):
    plaintext, key = api_keys.issue(db, ada, name="ci")
    plaintexts.append(plaintext)
    api_keys.revoke(db, key)
    api_keys.revoke(db, key)  # revoked already: nothing new happened
    db.commit()
    assert logged(db) == [
        ("api_key.issued", "success", None,
         about(ada, key_id=key.id, prefix=key.prefix, name="ci")),
        ("api_key.revoked", "success", None, about(ada, key_id=key.id, prefix=key.prefix)),
    ]  # fmt: skip


def test_the_actor_is_the_user_the_session_acts_for(db, ada, plaintexts):
    plaintexts.append(PASSWORD)
    admin = users.create_user(db, "root", "root@example.com", PASSWORD, role="admin")
    audit.acting_as(db, admin)
    users.set_role(db, ada, "operator")
    audit.acting_as(db, None)
    users.set_role(db, ada, "viewer")
    changes = audit.entries(db, action="user.role_changed")
    by_whom = [(e.user_id, e.details["new"]) for e in changes]
    assert by_whom == [(None, "viewer"), (admin.id, "operator")]
    assert [e.action for e in audit.entries(db, actor=admin)] == ["user.role_changed"]


# --- lockouts --------------------------------------------------------------------------


@pytest.fixture
def limits(monkeypatch):
    def change(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"PFD_DB_{name.upper()}", str(value))
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


def wrong_login(db, seconds: float, ip: str) -> None:
    with pytest.raises(AuthenticationFailed):
        users.authenticate(db, "ada", WRONG, ip=ip, now=T0 + timedelta(seconds=seconds))


def test_a_lockout_is_audited_once_when_it_starts_and_outlasts_a_rollback(
    db, ada, plaintexts, limits
):
    plaintexts.append(WRONG)
    limits(lockout_threshold=3, account_lockout_threshold=4)
    for n in range(5):  # the 3rd locks the address; the 4th and 5th are refused unchecked
        wrong_login(db, n, "203.0.113.9")
        db.rollback()
    locks = audit.entries(db, action="user.locked")
    assert [(e.status, e.details["scope"], e.details["ip"]) for e in locks] == [
        ("warning", "address", "203.0.113.9")
    ]
    wrong_login(db, 10, "198.51.100.7")  # the 4th wrong password locks the whole account
    db.rollback()
    locks = audit.entries(db, action="user.locked")
    assert [e.details["scope"] for e in locks] == ["account", "address"]
    assert locks[0].details["until"] == (T0 + timedelta(days=1)).isoformat()
    assert all(e.details["user_id"] == ada.id and e.user_id is None for e in locks)


# --- the instance key --------------------------------------------------------------------


def test_rotating_the_instance_key_is_audited_per_batch_that_changed_secrets(fresh_url):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    try:
        with settings_env({"PFD_DB_SECRET_KEY": old}), Session(engine) as session:
            for name in ("ada", "bob", "cy"):
                user = User(username=name, email=f"{name}@example.com")
                session.add(user)
                twofactor.begin_setup(session, user)
            session.commit()
        rotate = ["key", "rotate", "--url", fresh_url, "--batch-size", "2"]
        assert pfd_db(*rotate, env={"PFD_DB_SECRET_KEY": f"{new},{old}"}).exit_code == 0
        assert pfd_db(*rotate, env={"PFD_DB_SECRET_KEY": f"{new},{old}"}).exit_code == 0
        with Session(engine) as session:
            rotated = audit.entries(session, action="instance_key.rotated")
            column = "users.totp_secret"
            assert [e.details for e in reversed(rotated)] == [
                {"column": column, "checked": 2, "reencrypted": 2, "ids": [1, 2]},
                {"column": column, "checked": 1, "reencrypted": 1, "ids": [3, 3]},
            ]  # the second run changed nothing, so it wrote nothing
            assert old not in str(rotated[0].details) and new not in str(rotated[0].details)
    finally:
        engine.dispose()


def test_rotating_only_webhook_secrets_is_audited_with_the_counts(fresh_url, plaintexts):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    try:
        with settings_env({"PFD_DB_SECRET_KEY": old}), Session(engine) as session:
            owner = User(username="ada", email="ada@example.com")
            session.add(owner)
            for n in range(3):
                _hook, secret = webhooks.create_webhook(
                    session, owner, f"https://hooks.example.com/{n}", ["training.complete"]
                )
                plaintexts.append(secret)
            session.commit()
            session.execute(SystemLog.__table__.delete())  # creation entries aside
            session.commit()
        with settings_env({"PFD_DB_SECRET_KEY": f"{new},{old}"}), Session(engine) as session:
            webhooks.reencrypt_secrets(session, limit=2)  # the caller's transaction...
            assert len(audit.entries(session, action="instance_key.rotated")) == 1
            session.rollback()  # ...goes with it
            assert audit.entries(session) == []
        rotate = ["key", "rotate", "--url", fresh_url]
        assert pfd_db(*rotate, env={"PFD_DB_SECRET_KEY": f"{new},{old}"}).exit_code == 0
        with Session(engine) as session:
            [entry] = audit.entries(session, action="instance_key.")
            assert entry.details == {
                "column": "webhook_configurations.signing_secret",
                "checked": 3,
                "reencrypted": 3,
                "ids": [1, 3],
            }
            stored = " ".join(session.scalars(select(WebhookConfiguration.signing_secret)))
            assert not any(part in str(entry.details) for part in (old, new, stored))
    finally:
        engine.dispose()


def test_changing_a_password_is_audited_in_the_callers_transaction(db, ada, plaintexts):
    plaintexts.append("another-long-passphrase")
    users.change_password(db, ada, "another-long-passphrase")
    assert logged(db) == [("user.password_changed", "success", None, about(ada))]
    db.rollback()
    assert entries_count(db) == 0
    users.change_password(db, ada.id, "another-long-passphrase")
    db.commit()
    assert [e.action for e in audit.entries(db)] == ["user.password_changed"]
    with pytest.raises(NotFound):
        users.change_password(db, ada.id + 100, "another-long-passphrase")
    assert entries_count(db) == 1


# --- record and entries --------------------------------------------------------------------


@pytest.mark.parametrize(
    "details",
    [
        {"password": "x"},
        {"new_password": "x"},
        {"token": "x"},
        {"totp_secret": "x"},
        {"key_hash": "x"},
        {"backup_codes": ["x"]},
        {"code": "123456"},
        {"nested": {"api_key_plaintext": "x"}},
        {"list": [{"secret": "x"}]},
    ],
)
def test_details_naming_a_secret_are_refused_and_nothing_is_written(db, details):
    with pytest.raises(InvalidInput, match="names a secret"):
        audit.record(db, None, "user.created", "success", details)
    assert entries_count(db) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"action": "User Created"}, "action"),
        ({"action": ""}, "action"),
        ({"action": "a." * 60}, "action"),
        ({"status": "fine"}, "status"),
        ({"details": ["not", "an", "object"]}, "details"),
        ({"details": {"at": datetime(2030, 1, 1)}}, "details"),
        ({"error": "x" * 1001}, "error"),
        ({"actor": "ada"}, "actor"),
    ],
)
def test_record_refuses_bad_arguments(db, arguments, message):
    given = {"actor": None, "action": "user.created", "status": "success", **arguments}
    with pytest.raises(InvalidInput, match=message):
        audit.record(db, **given)
    assert entries_count(db) == 0


def test_record_takes_counts_and_an_error(db, ada):
    entry = audit.record(db, ada, "report.exported", "error", {"backup_codes_count": 3},
                         error="disk full")  # fmt: skip
    assert (entry.user_id, entry.status, entry.error_message) == (ada.id, "error", "disk full")
    with pytest.raises(NotFound):
        audit.record(db, ada.id + 100, "report.exported")


def test_entries_are_filtered_bounded_and_paged_newest_first(db, ada):
    other = User(username="zed", email="zed@example.com")
    db.add(other)
    db.flush()
    for n in range(12):
        status = "warning" if n % 4 else "success"
        audit.record(db, ada if n % 2 else other, f"thing.step{n % 3}", status, {"n": n})
    db.commit()
    every = audit.entries(db)
    assert [e.details["n"] for e in every] == list(range(11, -1, -1))
    assert [e.details["n"] for e in audit.entries(db, actor=ada)] == [11, 9, 7, 5, 3, 1]
    assert [e.details["n"] for e in audit.entries(db, action="thing.step1")] == [10, 7, 4, 1]
    assert len(audit.entries(db, action="thing.")) == 12
    assert audit.entries(db, action="thing.step") == []  # a prefix ends with a dot
    assert [e.details["n"] for e in audit.entries(db, status="success")] == [8, 4, 0]
    first = audit.entries(db, limit=5)
    second = audit.entries(db, limit=5, before_id=first[-1].id)
    third = audit.entries(db, limit=5, before_id=second[-1].id)
    assert [e.details["n"] for e in first + second + third] == list(range(11, -1, -1))
    later = datetime.now(UTC) + timedelta(hours=1)
    assert audit.entries(db, since=later) == [] and len(audit.entries(db, until=later)) == 12
    for bad in ({"limit": 0}, {"limit": 1001}, {"status": "bad"}, {"action": "Bad"},
                {"since": datetime(2030, 1, 1)}):  # fmt: skip
        with pytest.raises(InvalidInput):
            audit.entries(db, **bad)


def test_a_prefix_matches_only_whole_dotted_words(db):
    for action in ("user.created", "users_x", "user", "userx.y", "user.a.b", "apixkey.made"):
        audit.record(db, None, action)
    db.commit()
    assert [e.action for e in audit.entries(db, action="user.")] == ["user.a.b", "user.created"]
    assert audit.entries(db, action="api_key.") == []  # "_" is no wildcard
    assert [e.action for e in audit.entries(db, action="users_x")] == ["users_x"]


def test_entries_filtered_by_text_in_the_action_or_details(db, ada):
    audit.record(db, None, "report.exported", details={"by": "ADA Lovelace", "n": 1})
    audit.record(db, None, "report.exported", details={"note": "100% done_ok", "n": 2})
    audit.record(db, None, "report.exported", details={"note": "100x done ok", "n": 3})
    audit.record(db, None, "thing.adapted", details={"n": 4})
    audit.record(db, None, "report.exported", details={"who": 'Zoë "z" \\', "n": 5})
    audit.record(db, None, "report.exported", details=None)
    db.commit()

    def found(text: str) -> list[int]:
        return [e.details["n"] for e in audit.entries(db, text=text)]

    assert found("ada") == [4, 1]  # "adapted", "ADA Lovelace": any case
    assert found("lovelace") == [1]
    assert found("% done_") == [2]  # wildcards are plain characters
    assert found("done") == [3, 2]
    assert found('"z" \\') == [5]  # as written, though JSON escapes it
    assert found("Zoë") == [5]
    assert found("nobody") == []
    assert [e.details["n"] for e in audit.entries(db, text="ada", action="report.")] == [1]
    assert len(audit.entries(db, text="EXPORTED")) == 5  # one without details too
    for bad in ("", "   ", "x" * 201, "a\x00b", 42):
        with pytest.raises(InvalidInput, match="text"):
            audit.entries(db, text=bad)
