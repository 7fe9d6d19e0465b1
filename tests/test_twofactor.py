"""Two-factor authentication: TOTP setup and verification, backup codes, rate limit
and concurrent use, on both dialects."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from pfd_db import crypto
from pfd_db.errors import AuthenticationFailed, InvalidInput, RateLimited
from pfd_db.models import BackupCode, LoginHistory, User
from pfd_db.store.identity import twofactor
from pfd_db.store.identity.twofactor import (
    begin_setup,
    confirm_setup,
    disable,
    generate_backup_codes,
    remaining_backup_codes,
    use_backup_code,
    verify_totp,
)

T0 = datetime(2030, 6, 1, 12, 0, 15, tzinfo=UTC)  # 15 s into a 30 s step
STEP = timedelta(seconds=30)
WINDOW = timedelta(minutes=15)


# --- helpers ---------------------------------------------------------------------


def make_user(db: Session, name: str = "alice") -> User:
    user = User(username=name, email=f"{name}@example.com")
    db.add(user)
    db.commit()
    return user


def start_setup(db: Session, user: User, plaintexts: list[str]) -> pyotp.TOTP:
    secret, uri = begin_setup(db, user)
    plaintexts.extend([secret, parse_qs(urlsplit(uri).query)["secret"][0]])
    return pyotp.TOTP(secret)


def enable_totp(db: Session, user: User, plaintexts: list[str]) -> pyotp.TOTP:
    """2FA on, confirmed an hour before T0 (so T0's steps are still unused)."""
    totp = start_setup(db, user, plaintexts)
    confirm_setup(db, user, totp.at(T0 - timedelta(hours=1)), now=T0 - timedelta(hours=1))
    db.commit()
    return totp


def wrong_code(totp: pyotp.TOTP, at: datetime) -> str:
    valid = {totp.at(at + k * STEP) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def new_codes(db: Session, user: User, plaintexts: list[str], n: int = 10) -> list[str]:
    codes = generate_backup_codes(db, user, n)
    plaintexts.extend(codes + [c.replace("-", "") for c in codes])
    db.commit()
    return codes


def history(db: Session) -> list[LoginHistory]:
    return list(db.scalars(select(LoginHistory).order_by(LoginHistory.id)))


def refusal(check: Callable[..., None], *args: object, **kwargs: object) -> str:
    """Why ``check(*args, **kwargs)`` refuses the code (it must)."""
    with pytest.raises(AuthenticationFailed, match=r"^authentication failed$") as refused:
        check(*args, **kwargs)
    assert not isinstance(refused.value, RateLimited)
    return refused.value.reason


def accepted(
    check: Callable[..., None], session: Session, user: User, code: str, at: datetime
) -> bool:
    """Whether ``check`` accepts ``code`` (for the races: a refusal is an answer too)."""
    try:
        check(session, user, code, now=at)
    except AuthenticationFailed:
        return False
    return True


# --- setup -----------------------------------------------------------------------


def test_begin_setup_stores_the_secret_encrypted(db, plaintexts):
    user = make_user(db)
    secret, _ = begin_setup(db, user)
    plaintexts.append(secret)
    db.commit()
    db.refresh(user)
    assert user.totp_secret is not None and user.totp_secret != secret
    assert crypto.decrypt(user.totp_secret) == secret
    assert len(secret) >= 32 and not user.totp_enabled


def test_provisioning_uri_names_issuer_account_and_secret(db, plaintexts):
    user = make_user(db)
    secret, uri = begin_setup(db, user)
    plaintexts.append(secret)
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/PFD Dashboard:alice@example.com"
    assert query["secret"] == [secret]
    assert query["issuer"] == ["PFD Dashboard"]


def test_confirm_with_a_valid_code_turns_2fa_on(db, plaintexts):
    user = make_user(db)
    totp = start_setup(db, user, plaintexts)
    confirm_setup(db, user, totp.at(T0), now=T0)
    db.commit()
    db.refresh(user)
    assert user.totp_enabled


@pytest.mark.parametrize(
    ("code", "reason"),
    [("wrong", "wrong code"), ("12345", "malformed code"), ("malformed", "malformed code")],
)
def test_confirm_with_a_wrong_code_keeps_2fa_off(db, plaintexts, code, reason):
    user = make_user(db)
    totp = start_setup(db, user, plaintexts)
    presented = wrong_code(totp, T0) if code == "wrong" else code
    assert refusal(confirm_setup, db, user, presented, now=T0) == reason
    db.rollback()  # the caller gives up; the failure stays recorded
    assert [(r.success, r.failure_reason) for r in history(db)] == [(False, reason)]
    db.refresh(user)
    assert not user.totp_enabled


def test_confirm_without_setup_and_setup_while_on_are_refused(db, plaintexts):
    user = make_user(db)
    with pytest.raises(InvalidInput):
        confirm_setup(db, user, "123456", now=T0)
    enable_totp(db, user, plaintexts)
    with pytest.raises(InvalidInput):
        begin_setup(db, user)
    with pytest.raises(InvalidInput):
        confirm_setup(db, user, "123456", now=T0)


def test_disable_clears_the_secret_flags_and_backup_codes(db, plaintexts):
    user = make_user(db)
    enable_totp(db, user, plaintexts)
    new_codes(db, user, plaintexts)
    disable(db, user)
    db.commit()
    db.refresh(user)
    assert (user.totp_secret, user.totp_enabled, user.totp_last_step) == (None, False, None)
    assert db.scalar(select(BackupCode.id)) is None


# --- TOTP verification -------------------------------------------------------------


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_codes_of_the_current_step_and_one_either_side_are_accepted(db, plaintexts, offset):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    verify_totp(db, user, totp.at(T0 + offset * STEP), now=T0)


@pytest.mark.parametrize("offset", [-2, 2])
def test_codes_two_steps_away_are_rejected(db, plaintexts, offset):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    assert refusal(verify_totp, db, user, totp.at(T0 + offset * STEP), now=T0)


def test_a_code_with_spaces_is_accepted(db, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    code = totp.at(T0)
    verify_totp(db, user, f" {code[:3]} {code[3:]} ", now=T0)


MALFORMED = {
    "empty": "",
    "five-digits": "12345",
    "seven-digits": "1234567",
    "letters": "abcdef",
    "digit-and-letter": "12345a",
    "arabic-indic-digits": "\u0661\u0662\u0663\u0664\u0665\u0666",
    "huge": "1" * 10_000,
}


@pytest.mark.parametrize("code", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_codes_are_rejected(db, plaintexts, code):
    user = make_user(db)
    enable_totp(db, user, plaintexts)
    assert refusal(verify_totp, db, user, code, now=T0)
    assert history(db)[-1].failure_reason == "malformed code"


def test_a_used_step_is_not_accepted_again(db, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    code = totp.at(T0)
    verify_totp(db, user, code, now=T0)
    assert refusal(verify_totp, db, user, code, now=T0) == "code already used"
    # still in the window, but used:
    assert refusal(verify_totp, db, user, code, now=T0 + STEP) == "code already used"
    assert history(db)[-1].failure_reason == "code already used"


def test_an_older_step_after_a_newer_one_is_rejected(db, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    verify_totp(db, user, totp.at(T0 + STEP), now=T0)
    assert refusal(verify_totp, db, user, totp.at(T0), now=T0)
    assert refusal(verify_totp, db, user, totp.at(T0 - STEP), now=T0)
    db.commit()
    db.refresh(user)
    assert user.totp_last_step == int((T0 + STEP).timestamp()) // 30


def test_verify_without_2fa_enabled_fails(db, plaintexts):
    user = make_user(db)
    totp = start_setup(db, user, plaintexts)
    assert refusal(verify_totp, db, user, totp.at(T0), now=T0)
    assert history(db)[-1].failure_reason == "2fa not enabled"


def test_every_attempt_is_recorded_in_login_history(db, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    refusal(verify_totp, db, user, wrong_code(totp, T0), ip="10.0.0.1", user_agent="pytest", now=T0)
    verify_totp(db, user, totp.at(T0), ip="10.0.0.1", user_agent="pytest", now=T0)
    db.commit()
    rows = [r for r in history(db) if r.timestamp == T0]
    assert [(r.login_method, r.success, r.failure_reason) for r in rows] == [
        ("2fa", False, "wrong code"),
        ("2fa", True, None),
    ]
    assert all((r.user_id, r.username_attempted) == (user.id, "alice") for r in rows)
    assert all((r.ip_address, r.user_agent) == ("10.0.0.1", "pytest") for r in rows)


# --- rate limit ---------------------------------------------------------------------


def fail_five_times(db: Session, user: User, totp: pyotp.TOTP, at: datetime) -> None:
    for _ in range(5):
        assert refusal(verify_totp, db, user, wrong_code(totp, at), now=at)
    db.commit()


def test_five_failures_in_15_minutes_rate_limit_even_a_right_code(db, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    fail_five_times(db, user, totp, T0)
    later = T0 + timedelta(minutes=14)
    with pytest.raises(RateLimited):
        verify_totp(db, user, totp.at(later), now=later)
    assert history(db)[-1].failure_reason == "rate limited"
    db.refresh(user)
    assert user.totp_last_step != int(later.timestamp()) // 30  # the code was never checked


def test_the_rate_limit_expires_after_the_window(db, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    fail_five_times(db, user, totp, T0)
    after = T0 + WINDOW + timedelta(seconds=1)
    verify_totp(db, user, totp.at(after), now=after)


def test_failures_older_than_the_window_do_not_count(db, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    for k in range(4):
        long_ago = T0 - WINDOW - timedelta(minutes=k + 1)
        refusal(verify_totp, db, user, wrong_code(totp, T0), now=long_ago)
    fail_five_times(db, user, totp, T0)
    later = T0 + WINDOW + timedelta(seconds=1)
    assert refusal(verify_totp, db, user, wrong_code(totp, later), now=later) == "wrong code"


def test_backup_code_and_totp_failures_share_the_limit(db, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    codes = new_codes(db, user, plaintexts)
    for _ in range(3):
        assert refusal(use_backup_code, db, user, "AAAAA-AAAAA", now=T0)
    for _ in range(2):
        assert refusal(verify_totp, db, user, wrong_code(totp, T0), now=T0)
    with pytest.raises(RateLimited):
        use_backup_code(db, user, codes[0], now=T0)
    with pytest.raises(RateLimited):
        verify_totp(db, user, totp.at(T0), now=T0)
    assert remaining_backup_codes(db, user) == 10


# --- backup codes ---------------------------------------------------------------------


def test_backup_codes_are_distinct_typable_and_n_of_them(db, plaintexts):
    user = make_user(db)
    codes = new_codes(db, user, plaintexts, n=12)
    assert len(codes) == len(set(codes)) == 12
    for code in codes:
        head, tail = code.split("-")
        assert len(head) == len(tail) == 5
        assert set(head + tail) <= set(twofactor.BACKUP_ALPHABET)
    assert remaining_backup_codes(db, user) == 12


def test_backup_codes_are_stored_as_keyed_hashes(db, plaintexts):
    user = make_user(db)
    codes = new_codes(db, user, plaintexts)
    stored = set(db.scalars(select(BackupCode.code_hash).where(BackupCode.user_id == user.id)))
    expected = {crypto.keyed_hash("backup-code", c.replace("-", "")) for c in codes}
    assert stored == expected


def test_a_new_set_replaces_the_old_one(db, plaintexts):
    user = make_user(db)
    old = new_codes(db, user, plaintexts)
    new = new_codes(db, user, plaintexts, n=5)
    assert not set(old) & set(new)
    assert remaining_backup_codes(db, user) == 5
    assert refusal(use_backup_code, db, user, old[0], now=T0)
    use_backup_code(db, user, new[0], now=T0)


def test_a_code_works_once(db, plaintexts):
    user = make_user(db)
    codes = new_codes(db, user, plaintexts)
    use_backup_code(db, user, codes[3], ip="192.0.2.7", user_agent="pytest", now=T0)
    assert refusal(use_backup_code, db, user, codes[3], now=T0)
    db.commit()
    assert remaining_backup_codes(db, user) == 9
    used = db.scalars(select(BackupCode).where(BackupCode.is_used.is_(True))).one()
    assert (used.used_at, used.ip_address) == (T0, "192.0.2.7")
    rows = history(db)
    assert [(r.login_method, r.success, r.failure_reason) for r in rows] == [
        ("backup_code", True, None),
        ("backup_code", False, "unknown or used code"),
    ]


def test_loaded_backup_code_objects_see_the_use(db, plaintexts):
    user = make_user(db)
    code = generate_backup_codes(db, user, n=1)[0]  # its BackupCode stays in the session
    plaintexts.append(code)
    loaded = db.scalars(select(BackupCode)).one()
    use_backup_code(db, user, code, now=T0)
    assert loaded.is_used and loaded.used_at == T0


@pytest.mark.parametrize("code", ["AAAAA-AAAAA", "AAAAAAAAAA", "short", "00000-00000", ""])
def test_wrong_and_malformed_codes_fail(db, plaintexts, code):
    user = make_user(db)
    new_codes(db, user, plaintexts)
    assert refusal(use_backup_code, db, user, code, now=T0)
    assert remaining_backup_codes(db, user) == 10


def test_another_users_code_fails(db, plaintexts):
    alice, bob = make_user(db, "alice"), make_user(db, "bob")
    codes = new_codes(db, alice, plaintexts)
    new_codes(db, bob, plaintexts)
    assert refusal(use_backup_code, db, bob, codes[0], now=T0)
    use_backup_code(db, alice, codes[0], now=T0)


@pytest.mark.parametrize(
    "variant",
    [str.lower, lambda c: c.replace("-", ""), lambda c: f" {c[:3]} {c[3:].lower()} "],
    ids=["lower", "no-dash", "spaces"],
)
def test_codes_are_case_dash_and_space_insensitive(db, plaintexts, variant):
    user = make_user(db)
    code = new_codes(db, user, plaintexts)[0]
    use_backup_code(db, user, variant(code), now=T0)
    assert refusal(use_backup_code, db, user, code, now=T0)


def test_checking_a_code_costs_one_hash(db, plaintexts, monkeypatch):
    user = make_user(db)
    codes = new_codes(db, user, plaintexts)
    calls: list[str] = []

    def counting(purpose: str, value: str) -> list[str]:
        calls.append(purpose)
        return crypto.keyed_hashes(purpose, value)

    monkeypatch.setattr(twofactor, "keyed_hashes", counting)  # one HMAC per listed key (one here)
    use_backup_code(db, user, codes[0], now=T0)
    assert len(calls) == 1
    assert refusal(use_backup_code, db, user, "ZZZZZ-ZZZZZ", now=T0)
    assert len(calls) == 2
    assert refusal(use_backup_code, db, user, "not a code", now=T0)
    assert len(calls) == 2  # malformed: no hash at all


@pytest.mark.parametrize("n", [0, -1, 101, True])
def test_a_bad_count_is_refused(db, n):
    user = make_user(db)
    with pytest.raises(InvalidInput):
        generate_backup_codes(db, user, n)


# --- concurrency ---------------------------------------------------------------------

ROUNDS = 20
APART = WINDOW + timedelta(minutes=1)  # between rounds: one loss a round never rate-limits


def race(engine: Engine, user_id: int, attempt: Callable[[Session, User], bool]) -> list[bool]:
    """Run ``attempt`` in two threads at once, each in its own committed session."""
    barrier = threading.Barrier(2, timeout=30)

    def contender() -> bool:
        barrier.wait()
        with Session(bind=engine) as session:
            user = session.get(User, user_id)
            assert user is not None
            outcome = attempt(session, user)
            session.commit()
            return outcome

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(contender) for _ in range(2)]
        return [future.result() for future in futures]


def test_a_backup_code_used_twice_at_once_succeeds_once(db, engine, plaintexts):
    user = make_user(db)
    codes = new_codes(db, user, plaintexts, n=ROUNDS)
    for k, code in enumerate(codes):
        at = T0 + k * APART
        outcomes = race(engine, user.id, partial(accepted, use_backup_code, code=code, at=at))
        assert sorted(outcomes) == [False, True]
    assert remaining_backup_codes(db, user) == 0
    failures = db.scalars(select(LoginHistory).where(LoginHistory.success.is_(False))).all()
    assert len(failures) == ROUNDS


def test_a_totp_code_verified_twice_at_once_succeeds_once(db, engine, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    for k in range(ROUNDS):
        at = T0 + k * APART
        code = totp.at(at)
        outcomes = race(engine, user.id, partial(accepted, verify_totp, code=code, at=at))
        assert sorted(outcomes) == [False, True]
    reasons = db.scalars(
        select(LoginHistory.failure_reason).where(LoginHistory.success.is_(False))
    ).all()
    assert reasons == ["code already used"] * ROUNDS


@pytest.mark.parametrize("check", [verify_totp, use_backup_code, confirm_setup])
@pytest.mark.parametrize("code", [None, 123456, b"123456"])
def test_a_code_that_is_no_string_is_invalid_input_and_writes_nothing(
    engine, db, plaintexts, check, code
):
    user = make_user(db)
    start_setup(db, user, plaintexts)
    db.commit()
    with pytest.raises(InvalidInput, match=r"^code must be a string"):
        check(db, user, code, now=T0)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(LoginHistory)) == 0


def test_a_rate_limited_attempt_is_refused_as_such_and_recorded(db, plaintexts):
    user = make_user(db)
    totp = enable_totp(db, user, plaintexts)
    fail_five_times(db, user, totp, T0)
    with pytest.raises(RateLimited) as limited:
        use_backup_code(db, user, "AAAAA-AAAAA", now=T0)
    assert isinstance(limited.value, AuthenticationFailed)
    assert limited.value.reason == "rate limited"
    assert history(db)[-1].login_method == "backup_code"
