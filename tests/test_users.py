"""Users: validation, uniqueness, argon2id hashes, login with lockout, roles, on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from pfd_db.config import get_settings
from pfd_db.errors import AuthenticationFailed, Conflict, InvalidInput, RateLimited
from pfd_db.models import LoginHistory, Role, SessionLog, User
from pfd_db.passwords import needs_rehash, verify_password
from pfd_db.store import writes
from pfd_db.store.identity import sessions, users

PASSWORD = "correct-horse-battery-staple"
OTHER_PASSWORD = "tr0ub4dor&3-is-not-it"
WRONG = "not-the-right-password"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ada(db, plaintexts):
    plaintexts.extend([PASSWORD, OTHER_PASSWORD, WRONG])
    user = users.create_user(db, "ada", "Ada.Lovelace@Example.com", PASSWORD)
    db.commit()
    return user


@pytest.fixture
def argon2_settings(monkeypatch):
    """Change argon2 settings for one test: ``argon2_settings(time_cost=2)``."""

    def change(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"PFD_DB_ARGON2_{name.upper()}", str(value))
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def verify_calls(monkeypatch):
    """The hashes argon2's verify was asked to check, in order."""
    calls = []
    original = PasswordHasher.verify

    def spy(self, hash, password):
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    return calls


def login(db, password=PASSWORD, username="ada", at=T0):
    return users.authenticate(db, username, password, ip="203.0.113.7", user_agent="curl/8", now=at)


def refusal(db, password=PASSWORD, username="ada", at=T0):
    with pytest.raises(AuthenticationFailed) as refused:
        login(db, password, username, at)
    assert str(refused.value) == "authentication failed"
    return refused.value.reason


def history(db):
    return db.scalars(select(LoginHistory).order_by(LoginHistory.id)).all()


# --- creating users ----------------------------------------------------------------


def test_create_user_stores_an_argon2id_hash_and_a_lowercased_email(db, ada):
    stored = db.scalars(select(User)).one()
    assert (stored.username, stored.email) == ("ada", "ada.lovelace@example.com")
    assert stored.role is Role.VIEWER and stored.is_active and stored.failed_login_count == 0
    assert stored.password_hash.startswith("$argon2id$")
    assert verify_password(stored.password_hash, PASSWORD)


def test_create_user_takes_a_role_or_its_name(db, plaintexts):
    plaintexts.append(PASSWORD)
    assert (
        users.create_user(db, "oper", "op@example.com", PASSWORD, Role.OPERATOR).role
        is Role.OPERATOR
    )
    assert users.create_user(db, "boss", "boss@example.com", PASSWORD, "admin").role is Role.ADMIN


@pytest.mark.parametrize("email", ["admin@localhost", "a.b+tag@sub.example.co.uk", "x_y@h-1.io"])
def test_sane_addresses_are_accepted(db, plaintexts, email):
    plaintexts.append(PASSWORD)
    assert users.create_user(db, "someone", email, PASSWORD).email == email


@pytest.mark.parametrize(
    ("field", "username", "email", "password", "role"),
    [
        ("username", "ab", "ada@example.com", PASSWORD, Role.VIEWER),
        ("username", "-ada", "ada@example.com", PASSWORD, Role.VIEWER),
        ("username", "ada lovelace", "ada@example.com", PASSWORD, Role.VIEWER),
        ("username", "ada\n", "ada@example.com", PASSWORD, Role.VIEWER),
        ("username", "a" * 101, "ada@example.com", PASSWORD, Role.VIEWER),
        ("username", None, "ada@example.com", PASSWORD, Role.VIEWER),
        ("email", "ada", "not-an-address", PASSWORD, Role.VIEWER),
        ("email", "ada", "ada@", PASSWORD, Role.VIEWER),
        ("email", "ada", "@example.com", PASSWORD, Role.VIEWER),
        ("email", "ada", "ada@exa mple.com", PASSWORD, Role.VIEWER),
        ("email", "ada", "ada@@example.com", PASSWORD, Role.VIEWER),
        ("email", "ada", "ada@example.com\n", PASSWORD, Role.VIEWER),
        ("email", "ada", "a" * 250 + "@example.com", PASSWORD, Role.VIEWER),
        ("password", "ada", "ada@example.com", "too-short", Role.VIEWER),
        ("role", "ada", "ada@example.com", PASSWORD, "emperor"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(db, field, username, email, password, role):
    with pytest.raises(InvalidInput, match=field):
        users.create_user(db, username, email, password, role)
    assert db.scalar(select(func.count()).select_from(User)) == 0


def test_a_taken_username_or_email_is_a_conflict_naming_it(db, ada):
    with pytest.raises(Conflict, match="username 'ada'"):
        users.create_user(db, "ada", "other@example.com", PASSWORD)
    with pytest.raises(Conflict, match="username 'Ada'"):
        users.create_user(db, "Ada", "other@example.com", PASSWORD)
    with pytest.raises(Conflict, match="email"):
        users.create_user(db, "ada2", "ADA.LOVELACE@example.com", PASSWORD)


def test_a_concurrent_duplicate_is_a_conflict_and_the_transaction_survives(db, ada, monkeypatch):
    checks = iter([None])  # the first check misses the row, as if it were inserted meanwhile
    real_check = writes._refuse_taken
    monkeypatch.setattr(
        writes, "_refuse_taken", lambda *a, **k: next(checks, None) or real_check(*a, **k)
    )
    with pytest.raises(Conflict, match="username 'ada'"):
        users.create_user(db, "ada", "other@example.com", PASSWORD)
    users.create_user(db, "grace", "grace@example.com", PASSWORD)
    db.commit()
    assert [u.username for u in users.list_users(db)] == ["ada", "grace"]


# --- authenticating ------------------------------------------------------------------


def test_the_right_password_logs_in_and_is_recorded(db, ada):
    assert login(db) is ada
    (entry,) = history(db)
    assert (entry.user_id, entry.username_attempted, entry.success) == (ada.id, "ada", True)
    assert (entry.login_method, entry.failure_reason, entry.timestamp) == ("password", None, T0)
    assert (entry.ip_address, entry.user_agent) == ("203.0.113.7", "curl/8")


def test_each_refusal_has_its_reason_and_is_recorded(db, ada):
    assert refusal(db, username="nobody") == "unknown user"
    assert refusal(db, WRONG) == "wrong password"
    users.deactivate(db, ada)
    assert refusal(db) == "inactive"
    rows = [(e.user_id, e.username_attempted, e.success, e.failure_reason) for e in history(db)]
    assert rows == [
        (None, "nobody", False, "unknown user"),
        (ada.id, "ada", False, "wrong password"),
        (ada.id, "ada", False, "inactive"),
    ]
    assert all(e.login_method == "password" for e in history(db))


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [
        ("ada\x00", PASSWORD, "unknown user"),
        ("a" * 10_000, PASSWORD, "unknown user"),
        ("\ud800ada", PASSWORD, "unknown user"),
        ("", PASSWORD, "unknown user"),
        ("ada", "", "wrong password"),
        ("ada", PASSWORD + "\x00", "wrong password"),
        ("ada", "\udc80" * 20, "wrong password"),
        ("ada", "x" * 100_000, "wrong password"),
    ],
    ids=[
        "nul-name",
        "huge-name",
        "surrogate-name",
        "empty-name",
        "empty-password",
        "nul-password",
        "surrogate-password",
        "huge-password",
    ],
)
def test_credentials_of_the_wrong_shape_are_refused_and_recorded(
    db, ada, username, password, reason
):
    assert refusal(db, password, username=username) == reason
    (entry,) = history(db)
    assert (entry.success, entry.failure_reason) == (False, reason)
    assert entry.username_attempted is None or "\x00" not in entry.username_attempted


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"username": None}, "username"),
        ({"username": b"ada"}, "username"),
        ({"password": None}, "password"),
        ({"password": 12345678901234}, "password"),
        ({"ip": 203}, "ip"),
        ({"user_agent": ["curl"]}, "user_agent"),
    ],
)
def test_arguments_of_the_wrong_type_are_invalid_input_and_write_nothing(
    engine, db, ada, arguments, field
):
    call = {"username": "ada", "password": PASSWORD} | arguments
    with pytest.raises(InvalidInput, match=rf"^{field} must be a string"):
        users.authenticate(db, **call)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(LoginHistory)) == 0


def test_a_user_without_a_password_never_logs_in(db, plaintexts):
    plaintexts.append(PASSWORD)
    db.add(User(username="nopass", email="nopass@example.com"))
    db.commit()
    assert refusal(db, PASSWORD, username="nopass") == "wrong password"


def test_a_rate_limit_is_an_authentication_failure_too():
    assert issubclass(RateLimited, AuthenticationFailed)
    error = RateLimited("locked")
    assert (error.reason, str(error)) == ("locked", "too many failed attempts; try again later")


def test_unknown_users_cost_one_verification_against_a_current_dummy_hash(db, ada, verify_calls):
    login(db)
    assert verify_calls == [ada.password_hash]
    refusal(db, username="nobody")
    assert len(verify_calls) == 2
    dummy = verify_calls[1]
    assert dummy.startswith("$argon2id$") and not needs_rehash(dummy)


def test_the_dummy_hash_is_made_once_per_set_of_parameters(
    db, ada, plaintexts, verify_calls, argon2_settings, monkeypatch
):
    made = []
    original = PasswordHasher.hash

    def spy(self, password, **kwargs):
        made.append(password)
        return original(self, password, **kwargs)

    monkeypatch.setattr(PasswordHasher, "hash", spy)
    users._dummy_hash.cache_clear()
    refusal(db, username="nobody")
    refusal(db, username="nobody", at=T0 + timedelta(seconds=1))
    assert len(made) == 1 and verify_calls[0] == verify_calls[1]
    argon2_settings(time_cost=2)
    refusal(db, username="nobody", at=T0 + timedelta(seconds=2))
    assert len(made) == 2
    assert "t=2" in verify_calls[2] and not needs_rehash(verify_calls[2])
    plaintexts.extend(made)  # the dummies' random passwords are stored nowhere either


def test_a_login_rehashes_a_password_hashed_with_old_parameters(db, ada, argon2_settings):
    old = ada.password_hash
    argon2_settings(time_cost=2)
    assert needs_rehash(old)
    login(db)
    assert ada.password_hash != old and "t=2" in ada.password_hash
    assert not needs_rehash(ada.password_hash)
    assert verify_password(ada.password_hash, PASSWORD)
    current = ada.password_hash
    login(db, at=T0 + timedelta(seconds=1))
    assert ada.password_hash == current


def test_a_naive_clock_is_refused(db, ada):
    with pytest.raises(InvalidInput, match="naive"):
        users.authenticate(db, "ada", PASSWORD, now=datetime(2030, 1, 1))


# --- managing users ------------------------------------------------------------------


def test_change_password_checks_the_policy_and_replaces_the_hash(db, ada):
    with pytest.raises(InvalidInput, match="password"):
        users.change_password(db, ada, "short")
    users.change_password(db, ada, OTHER_PASSWORD)
    assert refusal(db, PASSWORD) == "wrong password"
    assert login(db, OTHER_PASSWORD, at=T0 + timedelta(seconds=1)) is ada


def test_set_role_takes_a_role_or_its_name(db, ada):
    assert users.set_role(db, ada, Role.OPERATOR).role is Role.OPERATOR
    assert users.set_role(db, ada, "super_admin").role is Role.SUPER_ADMIN
    with pytest.raises(InvalidInput, match="role"):
        users.set_role(db, ada, "emperor")
    db.commit()
    db.expire_all()
    assert users.get_by_username(db, "ada").role is Role.SUPER_ADMIN


def test_deactivate_ends_every_session_of_the_user(db, ada, plaintexts):
    tokens = [sessions.start_session(db, ada, now=T0)[0] for _ in range(2)]
    plaintexts.extend(tokens)
    assert users.deactivate(db, ada).is_active is False
    db.commit()
    assert db.scalar(select(func.count()).where(SessionLog.is_active.is_(True))) == 0
    for token in tokens:
        with pytest.raises(AuthenticationFailed) as refused:
            sessions.resolve(db, token, now=T0)
        assert refused.value.reason == "ended"


def test_get_by_username_and_list_users(db, ada):
    users.create_user(db, "Zed", "zed@example.com", PASSWORD)
    users.create_user(db, "bob", "bob@example.com", PASSWORD)
    assert users.get_by_username(db, "ada") is ada
    assert users.get_by_username(db, "ADA") is None
    assert [u.username for u in users.list_users(db)] == ["Zed", "ada", "bob"]


def test_reset_password_generates_one_and_ends_sessions(db, ada, plaintexts):
    token, _ = sessions.start_session(db, ada, now=T0)
    new = users.reset_password(db, ada)
    plaintexts.extend([token, new])
    assert len(new) >= 20 and verify_password(ada.password_hash, new)
    with pytest.raises(AuthenticationFailed, match="authentication failed") as refused:
        sessions.resolve(db, token, now=T0)
    assert refused.value.reason == "ended"
    assert login(db, new, at=T0 + timedelta(seconds=5)) is ada


def test_reset_password_sets_the_password_given_after_checking_it(db, ada):
    with pytest.raises(InvalidInput, match="password"):
        users.reset_password(db, ada, "short")
    assert users.reset_password(db, ada, OTHER_PASSWORD) == OTHER_PASSWORD
    assert login(db, OTHER_PASSWORD) is ada


def test_a_user_deactivated_twice_or_by_a_stale_copy_is_deactivated_and_audited_once(
    db, engine, ada
):
    """deactivate is one conditional UPDATE (store.status.update_if): a second
    deactivation, even from a session still showing the user active, audits
    nothing and leaves the user inactive with no live session."""
    from sqlalchemy.orm import Session

    from pfd_db.store.ops import audit

    sessions.start_session(db, ada)
    db.commit()
    with Session(engine) as other:
        stale = other.get(User, ada.id)
        assert stale.is_active
        users.deactivate(db, ada)
        db.commit()
        assert users.deactivate(other, stale) is stale
        other.commit()
        assert stale.is_active is False
    db.expire_all()
    assert db.get(User, ada.id).is_active is False
    assert sessions.active_sessions(db, ada) == []
    assert len(audit.entries(db, action="user.deactivated")) == 1
