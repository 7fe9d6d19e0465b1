"""The two login limits, on both dialects: per account and address (an attacker
elsewhere cannot lock the owner out), and per account over a longer window (which
still stops guessing spread over many addresses)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.config import Settings, get_settings
from pfd_db.errors import AuthenticationFailed, RateLimited
from pfd_db.models import LoginHistory, User
from pfd_db.passwords import verify_password
from pfd_db.store.identity import users
from probes import run_together

PASSWORD = "correct-horse-battery-staple"
WRONG = "not-the-right-password"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=900)
OWNER = "198.51.100.1"
ATTACKER = "203.0.113.66"
ACCOUNT_LIMIT = 12  # the account-wide limit in most tests here (the default, 50, is tested too)
DAY = timedelta(hours=24)


@pytest.fixture
def limits(monkeypatch):
    """Change the limits' settings for one test: ``limits(account_lockout_threshold=3)``."""

    def change(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"PFD_DB_{name.upper()}", str(value))
        get_settings.cache_clear()

    change(account_lockout_threshold=ACCOUNT_LIMIT)
    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def ada(db, plaintexts, limits):
    plaintexts.extend([PASSWORD, WRONG])
    user = users.create_user(db, "ada", "ada@example.com", PASSWORD)
    db.commit()
    return user


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def login(db, ip=OWNER, seconds=0, password=PASSWORD, username="ada"):
    return users.authenticate(db, username, password, ip=ip, now=at(seconds))


def refusal(db, ip=OWNER, seconds=0, password=PASSWORD, username="ada"):
    with pytest.raises(AuthenticationFailed) as refused:
        login(db, ip, seconds, password, username)
    return refused.value


def guess(db, ip, *seconds, username="ada"):
    """Wrong passwords from ``ip`` at each of ``seconds``; their refusal reasons."""
    return [refusal(db, ip, s, WRONG, username).reason for s in seconds]


def stored(engine, user):
    """The user's failure count and account-wide lock, as committed."""
    with Session(engine) as fresh:
        row = fresh.get(User, user.id)
        return row.failed_login_count, row.locked_until


# --- per account and address --------------------------------------------------------


def test_the_defaults_are_5_per_address_in_15_minutes_and_50_per_account_in_24_hours():
    defaults = Settings()
    assert (defaults.lockout_threshold, defaults.lockout_window_seconds) == (5, 900)
    assert (defaults.account_lockout_threshold, defaults.account_lockout_window_seconds) == (
        50,
        86_400,
    )
    assert defaults.known_address_seconds == 30 * 86_400


def test_five_wrong_passwords_lock_that_address_out_of_the_account(db, ada):
    assert guess(db, ATTACKER, 0, 60, 120, 180, 240) == ["wrong password"] * 5
    refused = refusal(db, ATTACKER, 300)  # the right password, from the locked address
    assert isinstance(refused, RateLimited) and refused.reason == "locked"
    assert history(db)[-1].failure_reason == "locked"


def test_the_owner_logs_in_from_elsewhere_while_an_attacker_is_locked_out(db, ada):
    guess(db, ATTACKER, 0, 1, 2, 3, 4, 5)  # the sixth is already refused as "locked"
    assert login(db, OWNER, seconds=10) is ada
    assert refusal(db, ATTACKER, 11).reason == "locked"


def test_the_address_lock_ends_when_the_oldest_failure_leaves_the_window(db, ada):
    guess(db, ATTACKER, 0, 60, 120, 180, 240)
    assert refusal(db, ATTACKER, 899).reason == "locked"
    assert login(db, ATTACKER, seconds=900) is ada  # the failure at 0 has left the window


def test_locked_refusals_do_not_extend_the_address_lock(db, ada):
    guess(db, ATTACKER, 0, 1, 2, 3, 4)
    assert [refusal(db, ATTACKER, s, WRONG).reason for s in (100, 500, 899)] == ["locked"] * 3
    assert guess(db, ATTACKER, 901) == ["wrong password"]


def test_a_login_from_the_address_restarts_its_count(db, ada):
    guess(db, OWNER, 0, 1, 2, 3)
    assert login(db, OWNER, seconds=4) is ada
    assert guess(db, OWNER, 5, 6, 7, 8) == ["wrong password"] * 4
    assert login(db, OWNER, seconds=9) is ada


def test_failures_spread_over_more_than_the_window_do_not_lock(db, ada):
    assert guess(db, OWNER, 0, 240, 480, 720, 960, 1200) == ["wrong password"] * 6
    assert login(db, OWNER, seconds=1201) is ada


def test_names_that_are_no_account_are_limited_alike(db, ada):
    assert guess(db, ATTACKER, 0, 1, 2, 3, 4, username="nobody") == ["unknown user"] * 5
    assert guess(db, ATTACKER, 5, username="nobody") == ["locked"]
    assert guess(db, OWNER, 6, username="nobody") == ["unknown user"]
    assert login(db, ATTACKER, seconds=7) is ada  # another name from that address is not


def test_attempts_without_an_address_share_one(db, ada):
    guess(db, None, 0, 1, 2, 3, 4)
    assert refusal(db, None, 5).reason == "locked"
    assert login(db, OWNER, seconds=6) is ada


def test_the_address_limit_follows_the_settings(db, ada, limits):
    limits(lockout_threshold=2, lockout_window_seconds=60)
    guess(db, ATTACKER, 0, 1)
    assert refusal(db, ATTACKER, 59).reason == "locked"
    assert login(db, ATTACKER, seconds=61) is ada  # both have left the minute


# --- per account ------------------------------------------------------------------


def test_the_account_wide_limit_counts_failures_from_every_address(engine, db, ada):
    for k in range(ACCOUNT_LIMIT - 1):
        guess(db, f"192.0.2.{k}", k)
    assert stored(engine, ada) == (ACCOUNT_LIMIT - 1, None)
    guess(db, "192.0.2.200", 100)
    assert stored(engine, ada) == (ACCOUNT_LIMIT, T0 + DAY)  # until the one at 0 leaves
    assert (ada.failed_login_count, ada.locked_until) == (ACCOUNT_LIMIT, T0 + DAY)
    refused = refusal(db, "192.0.2.250", 200)  # a new address, the right password
    assert isinstance(refused, RateLimited) and refused.reason == "account locked"


def test_an_address_the_owner_logged_in_from_is_not_refused_by_the_account_lock(db, ada):
    assert login(db, OWNER, seconds=0) is ada
    for k in range(ACCOUNT_LIMIT):
        guess(db, f"192.0.2.{k}", 10 + k)
    assert refusal(db, "192.0.2.250", 100).reason == "account locked"
    assert login(db, OWNER, seconds=101) is ada
    assert guess(db, OWNER, 102) == ["wrong password"]  # still under its own limit


def test_an_address_known_only_from_long_ago_is_refused(db, ada, limits):
    limits(known_address_seconds=3600)
    assert login(db, OWNER, seconds=0) is ada
    for k in range(ACCOUNT_LIMIT):
        guess(db, f"192.0.2.{k}", 7200 + k)
    assert refusal(db, OWNER, 7300).reason == "account locked"


def test_the_account_lock_slides_with_its_window(engine, db, ada):
    for k in range(ACCOUNT_LIMIT):
        guess(db, f"192.0.2.{k}", k)
    ends = T0 + DAY
    assert stored(engine, ada) == (ACCOUNT_LIMIT, ends)
    assert refusal(db, "192.0.2.250", (ends - T0).total_seconds() - 1).reason == "account locked"
    after = (ends - T0).total_seconds()
    assert guess(db, "192.0.2.251", after) == ["wrong password"]  # one more guess, then locked
    assert stored(engine, ada) == (ACCOUNT_LIMIT, at(1) + DAY)
    assert refusal(db, "192.0.2.252", after + 0.5).reason == "account locked"


def test_the_default_account_limit_is_50(engine, db, ada, limits):
    limits(account_lockout_threshold=50)
    for k in range(49):
        guess(db, f"10.0.{k // 4}.{k % 4}", k)
    assert stored(engine, ada) == (49, None)
    guess(db, "10.0.99.1", 49)
    assert stored(engine, ada) == (50, T0 + DAY)


def test_reset_password_lifts_the_account_lock_and_restarts_the_count(engine, db, ada, plaintexts):
    for k in range(ACCOUNT_LIMIT):
        guess(db, f"192.0.2.{k}", k)
    new = users.reset_password(db, ada)
    plaintexts.append(new)
    db.commit()
    assert stored(engine, ada) == (0, None)
    assert login(db, "192.0.2.250", seconds=100, password=new) is ada
    guess(db, "192.0.2.251", 101)
    assert stored(engine, ada) == (1, None)


def test_refusals_for_a_lock_or_an_inactive_account_do_not_count(engine, db, ada):
    guess(db, ATTACKER, 0, 1, 2, 3, 4)
    assert [refusal(db, ATTACKER, s, WRONG).reason for s in (5, 6, 7)] == ["locked"] * 3
    users.deactivate(db, ada)
    db.commit()
    assert guess(db, OWNER, 8) == ["inactive"]
    assert stored(engine, ada) == (5, None)


def test_a_success_does_not_reset_the_account_count(engine, db, ada):
    guess(db, ATTACKER, 0, 1, 2)
    assert login(db, OWNER, seconds=3) is ada
    assert stored(engine, ada) == (3, None)


def test_concurrent_wrong_passwords_lose_no_count(engine, db, ada):
    attempts = 8

    def attempt(k: int) -> str:
        with Session(engine) as session:
            try:
                users.authenticate(session, "ada", WRONG, ip=f"192.0.2.{k}", now=at(k))
            except AuthenticationFailed as refused:
                return refused.reason
            return "logged in"

    reasons, errors = run_together(attempts, attempt)
    assert errors == []
    assert reasons == ["wrong password"] * attempts
    assert stored(engine, ada)[0] == attempts
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(LoginHistory)) == attempts


def test_a_refusal_still_costs_one_verification(db, ada, monkeypatch):
    calls = []
    monkeypatch.setattr(
        users, "verify_password", lambda h, p: calls.append(h) or verify_password(h, p)
    )
    guess(db, ATTACKER, 0, 1, 2, 3, 4)
    refusal(db, ATTACKER, 5)
    for k in range(ACCOUNT_LIMIT):
        guess(db, f"192.0.2.{k}", 10 + k)
    refusal(db, "192.0.2.250", 100)
    assert len(calls) == 5 + 1 + ACCOUNT_LIMIT + 1
    assert set(calls) == {ada.password_hash}


def history(db) -> list[LoginHistory]:
    return list(db.scalars(select(LoginHistory).order_by(LoginHistory.id)))
