"""Users: validation, uniqueness, argon2id hashes, login with lockout, roles, on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from pfd_db.config import get_settings
from pfd_db.errors import AuthenticationFailed, Conflict, InvalidInput
from pfd_db.models import LoginHistory, Role, SessionLog, User
from pfd_db.passwords import needs_rehash, verify_password
from pfd_db.store import sessions, users

PASSWORD = "correct-horse-battery-staple"
OTHER_PASSWORD = "tr0ub4dor&3-is-not-it"
WRONG = "not-the-right-password"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LOCKOUT = timedelta(seconds=900)


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


def fail_times(db, *seconds):
    for s in seconds:
        assert refusal(db, WRONG, at=T0 + timedelta(seconds=s)) == "wrong password"


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
    real_check = users._ensure_free
    monkeypatch.setattr(users, "_ensure_free", lambda *a: next(checks, None) or real_check(*a))
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


def test_five_failures_in_the_window_lock_the_account(db, ada):
    fail_times(db, 0, 60, 120, 180)
    assert (ada.failed_login_count, ada.locked_until) == (4, None)
    fail_times(db, 240)
    assert ada.failed_login_count == 5
    assert ada.locked_until == T0 + timedelta(seconds=240) + LOCKOUT


def test_a_locked_account_refuses_the_right_password_and_still_costs_a_hash(db, ada, verify_calls):
    fail_times(db, 0, 1, 2, 3, 4)
    verify_calls.clear()
    assert refusal(db, PASSWORD, at=T0 + timedelta(seconds=60)) == "locked"
    assert refusal(db, WRONG, at=T0 + timedelta(seconds=61)) == "locked"
    assert verify_calls == [ada.password_hash, ada.password_hash]
    assert ada.failed_login_count == 5  # locked attempts do not count
    assert history(db)[-1].failure_reason == "locked"


def test_the_lock_runs_out_and_a_login_then_resets_it(db, ada):
    fail_times(db, 0, 1, 2, 3, 4)
    end_of_lock = T0 + timedelta(seconds=4) + LOCKOUT
    assert refusal(db, at=end_of_lock - timedelta(seconds=1)) == "locked"
    assert login(db, at=end_of_lock) is ada
    assert (ada.failed_login_count, ada.locked_until) == (0, None)


def test_after_a_lock_runs_out_counting_starts_afresh(db, ada):
    fail_times(db, 0, 1, 2, 3, 4)
    after = 4 + LOCKOUT.seconds
    fail_times(db, after)
    assert (ada.failed_login_count, ada.locked_until) == (1, None)
    fail_times(db, after + 1, after + 2, after + 3)
    assert ada.locked_until is None
    fail_times(db, after + 4)
    assert ada.locked_until is not None


def test_failures_spread_over_more_than_the_window_do_not_lock(db, ada):
    fail_times(db, 0, 240, 480, 720, 960)  # the first has left the 900 s window by the fifth
    assert (ada.failed_login_count, ada.locked_until) == (4, None)
    assert login(db, at=T0 + timedelta(seconds=961)) is ada
    fail_times(db, 1000, 1240, 1480, 1720, 1960)
    assert ada.locked_until is None
    fail_times(db, 1970)  # five within the window: 1240..1970
    assert ada.locked_until == T0 + timedelta(seconds=1970) + LOCKOUT


def test_a_success_resets_the_count(db, ada):
    fail_times(db, 0, 1, 2, 3)
    assert login(db, at=T0 + timedelta(seconds=4)) is ada
    assert ada.failed_login_count == 0
    fail_times(db, 5, 6, 7, 8)
    assert (ada.failed_login_count, ada.locked_until) == (4, None)


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
    assert all(sessions.resolve(db, token, now=T0) is None for token in tokens)


def test_get_by_username_and_list_users(db, ada):
    users.create_user(db, "Zed", "zed@example.com", PASSWORD)
    users.create_user(db, "bob", "bob@example.com", PASSWORD)
    assert users.get_by_username(db, "ada") is ada
    assert users.get_by_username(db, "ADA") is None
    assert [u.username for u in users.list_users(db)] == ["Zed", "ada", "bob"]


def test_reset_password_generates_one_unlocks_and_ends_sessions(db, ada, plaintexts):
    token, _ = sessions.start_session(db, ada, now=T0)
    fail_times(db, 0, 1, 2, 3, 4)
    new = users.reset_password(db, ada)
    plaintexts.extend([token, new])
    assert len(new) >= 20 and verify_password(ada.password_hash, new)
    assert (ada.failed_login_count, ada.locked_until) == (0, None)
    assert sessions.resolve(db, token, now=T0) is None
    assert login(db, new, at=T0 + timedelta(seconds=5)) is ada


def test_reset_password_sets_the_password_given_after_checking_it(db, ada):
    with pytest.raises(InvalidInput, match="password"):
        users.reset_password(db, ada, "short")
    assert users.reset_password(db, ada, OTHER_PASSWORD) == OTHER_PASSWORD
    assert login(db, OTHER_PASSWORD) is ada
