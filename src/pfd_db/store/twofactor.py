"""Two-factor authentication: TOTP setup and verification, and backup codes.

The TOTP secret is stored encrypted with the instance key. A code is accepted
for the current 30-second step or one step either side, and each step only once:
accepting a code claims its step with one conditional UPDATE of
``users.totp_last_step``, so two concurrent uses of one code cannot both pass.

A backup code is 10 characters from a 32-symbol alphabet without look-alikes
(50 bits), shown once as ``XXXXX-XXXXX``. Only its HMAC under the instance key
is stored, and that HMAC is the lookup key: checking a code costs one hash, and
consuming it is one conditional UPDATE.

TOTP codes and backup codes share one rate limit: after ``lockout_threshold``
failures of either within ``lockout_window_seconds``, both raise
:class:`RateLimited` before looking at the code. Every attempt is recorded in
``login_history``. Functions flush and the caller commits, except that a
failed attempt is committed at once (with anything else pending in the
session): a caller that rolls back on a refused code must not undo the limit.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import pyotp
from sqlalchemy import CursorResult, Executable, delete, func, inspect, or_, select, update
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.crypto import decrypt, encrypt, keyed_hash
from pfd_db.errors import InvalidInput, RateLimited
from pfd_db.models import BackupCode, User
from pfd_db.models.enums import LoginMethod
from pfd_db.store.logins import recent_failures, record_attempt
from pfd_db.store.validation import require_count
from pfd_db.types import utc_or_now

ISSUER = "PFD Dashboard"
STEP_SECONDS = 30
DRIFT_STEPS = 1
TOTP_SHAPE = re.compile(r"[0-9]{6}")
BACKUP_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, no 1/I
BACKUP_LENGTH = 10
BACKUP_HASH_PURPOSE = "backup-code"
MAX_BACKUP_CODES = 100
MAX_CODE_INPUT = 64
IP_LENGTH = 45
RATE_LIMITED_METHODS = (LoginMethod.TWO_FACTOR, LoginMethod.BACKUP_CODE)


@dataclass(frozen=True)
class _Attempt:
    """Who tries which second factor, from where, when."""

    user: User
    method: LoginMethod
    now: datetime
    ip: str | None = None
    user_agent: str | None = None


# --- TOTP setup ----------------------------------------------------------------


def begin_setup(session: Session, user: User, now: datetime | None = None) -> tuple[str, str]:
    """Give ``user`` a new TOTP secret, stored encrypted; 2FA stays off until
    :func:`confirm_setup`. Returns ``(secret, otpauth URI)`` for the authenticator
    app, shown this once. :class:`InvalidInput` if 2FA is already on (disable it
    first). ``now`` is accepted for symmetry; setting up does not depend on time.
    """
    if user.totp_enabled:
        raise InvalidInput("two-factor authentication is already on; disable it first")
    secret = str(pyotp.random_base32())
    user.totp_secret = encrypt(secret)
    user.totp_last_step = None
    session.flush()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return secret, str(uri)


def confirm_setup(session: Session, user: User, code: str, now: datetime | None = None) -> None:
    """Turn 2FA on for ``user`` if ``code`` is valid for the secret from
    :func:`begin_setup`, under the rules of :func:`verify_totp` (rate limit,
    drift, replay; the attempt is recorded). :class:`InvalidInput` if there is
    no pending setup or the code is refused; 2FA then stays off.
    """
    if user.totp_enabled:
        raise InvalidInput("two-factor authentication is already on")
    if user.totp_secret is None:
        raise InvalidInput("no two-factor setup in progress: call begin_setup first")
    attempt = _Attempt(user, LoginMethod.TWO_FACTOR, utc_or_now(now))
    _enforce_rate_limit(session, attempt)
    failure = _totp_failure(session, user, code, attempt.now)
    _record(session, attempt, failure)
    if failure is not None:
        raise InvalidInput(f"two-factor code refused ({failure}); 2FA stays off")
    user.totp_enabled = True
    session.flush()


def disable(session: Session, user: User) -> None:
    """Turn 2FA off for ``user``: forget the secret and the replay guard, delete
    the backup codes."""
    user.totp_secret = None
    user.totp_enabled = False
    user.totp_last_step = None
    _delete_backup_codes(session, user)
    session.flush()


# --- TOTP verification ------------------------------------------------------------


def verify_totp(
    session: Session,
    user: User,
    code: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Whether ``code`` is ``user``'s TOTP code for the step of ``now`` (±1 step)
    and that step was not used before; accepting it uses the step up.

    :class:`RateLimited` (checked first) after too many recent failures. The
    attempt is recorded in ``login_history`` either way; a failure is committed
    at once.
    """
    attempt = _Attempt(user, LoginMethod.TWO_FACTOR, utc_or_now(now), ip, user_agent)
    _enforce_rate_limit(session, attempt)
    if user.totp_enabled:
        failure = _totp_failure(session, user, code, attempt.now)
    else:
        failure = "2fa not enabled"
    _record(session, attempt, failure)
    return failure is None


def _totp_failure(session: Session, user: User, code: str, now: datetime) -> str | None:
    """Why ``code`` is refused for ``user`` at ``now``, or None after claiming its step."""
    digits = _normalised_totp(code)
    if digits is None:
        return "malformed code"
    if user.totp_secret is None:
        return "2fa not set up"
    step = _matching_step(decrypt(user.totp_secret), digits, now)
    if step is None:
        return "wrong code"
    if not _claim_step(session, user, step):
        return "code already used"
    return None


def _normalised_totp(code: str) -> str | None:
    """The six digits of ``code`` (spaces allowed between them), or None if malformed."""
    if not isinstance(code, str) or len(code) > MAX_CODE_INPUT:
        return None
    digits = "".join(code.split())
    return digits if TOTP_SHAPE.fullmatch(digits) else None


def _matching_step(secret: str, digits: str, now: datetime) -> int | None:
    """The latest step within the drift window whose code is ``digits``, or None.

    Every candidate is compared in constant time, matching or not.
    """
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    candidates = range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1)
    matches = [s for s in candidates if hmac.compare_digest(str(totp.generate_otp(s)), digits)]
    return max(matches, default=None)


def _claim_step(session: Session, user: User, step: int) -> bool:
    """Record ``step`` as ``user``'s last used one, if it is later than the last."""
    claim = (
        update(User)
        .where(User.id == user.id)
        .where(or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
    )
    claimed = _rows_changed(session, claim) == 1
    session.expire(user, ["totp_last_step"])
    return claimed


# --- backup codes --------------------------------------------------------------


def generate_backup_codes(session: Session, user: User, n: int = 10) -> list[str]:
    """``n`` new backup codes for ``user``, replacing any earlier set. Returns the
    plaintext codes (``XXXXX-XXXXX``) this once; only their keyed hashes are stored.
    """
    codes = _new_codes(require_count(n, "n", 1, MAX_BACKUP_CODES))
    _delete_backup_codes(session, user)
    session.add_all(BackupCode(user_id=user.id, code_hash=_backup_hash(code)) for code in codes)
    session.flush()
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def use_backup_code(
    session: Session,
    user: User,
    code: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Consume one of ``user``'s unused backup codes; True if ``code`` was one.
    Case, dashes and spaces in ``code`` do not matter.

    Same rate limit and recording as :func:`verify_totp`.
    """
    attempt = _Attempt(user, LoginMethod.BACKUP_CODE, utc_or_now(now), ip, user_agent)
    _enforce_rate_limit(session, attempt)
    failure = _backup_code_failure(session, code, attempt)
    _record(session, attempt, failure)
    return failure is None


def remaining_backup_codes(session: Session, user: User) -> int:
    """How many of ``user``'s backup codes are still unused."""
    unused = (
        select(func.count())
        .select_from(BackupCode)
        .where(BackupCode.user_id == user.id, BackupCode.is_used.is_(False))
    )
    return session.scalar(unused) or 0


def _backup_code_failure(session: Session, code: str, attempt: _Attempt) -> str | None:
    """Why ``code`` is refused, or None after consuming it."""
    normalised = _normalised_backup_code(code)
    if normalised is None:
        return "malformed code"
    if not _consume(session, _backup_hash(normalised), attempt):
        return "unknown or used code"
    return None


def _normalised_backup_code(code: str) -> str | None:
    """``code`` upper-cased without dashes and spaces, or None if it cannot be a code."""
    if not isinstance(code, str) or len(code) > MAX_CODE_INPUT:
        return None
    normalised = "".join(code.replace("-", " ").split()).upper()
    valid = len(normalised) == BACKUP_LENGTH and all(c in BACKUP_ALPHABET for c in normalised)
    return normalised if valid else None


def _consume(session: Session, code_hash: str, attempt: _Attempt) -> bool:
    """Mark the unused code with ``code_hash`` used, if ``attempt.user`` has one."""
    user_id = attempt.user.id
    consume = (
        update(BackupCode)
        .where(BackupCode.user_id == user_id, BackupCode.code_hash == code_hash)
        .where(BackupCode.is_used.is_(False))
        .values(is_used=True, used_at=attempt.now, ip_address=_clip(attempt.ip, IP_LENGTH))
    )
    consumed = _rows_changed(session, consume) == 1
    if consumed:
        _expire_loaded_codes(session, user_id)
    return consumed


def _new_codes(n: int) -> list[str]:
    codes: set[str] = set()
    while len(codes) < n:
        codes.add("".join(secrets.choice(BACKUP_ALPHABET) for _ in range(BACKUP_LENGTH)))
    return sorted(codes)


def _backup_hash(normalised: str) -> str:
    return keyed_hash(BACKUP_HASH_PURPOSE, normalised)


def _delete_backup_codes(session: Session, user: User) -> None:
    session.execute(delete(BackupCode).where(BackupCode.user_id == user.id))


def _expire_loaded_codes(session: Session, user_id: int) -> None:
    """Make loaded backup codes of ``user_id`` re-read their row on next access."""
    for obj in list(session.identity_map.values()):
        # inspect().dict reads the loaded state without loading an expired object
        if isinstance(obj, BackupCode) and inspect(obj).dict.get("user_id") == user_id:
            session.expire(obj)


# --- shared ----------------------------------------------------------------------


def _enforce_rate_limit(session: Session, attempt: _Attempt) -> None:
    """Record the attempt and raise :class:`RateLimited` if the user is over the limit."""
    settings = get_settings()
    window = timedelta(seconds=settings.lockout_window_seconds)
    failures = recent_failures(session, attempt.user, RATE_LIMITED_METHODS, window, attempt.now)
    if failures >= settings.lockout_threshold:
        _record(session, attempt, "rate limited")
        raise RateLimited("too many failed two-factor attempts; try again later")


def _record(session: Session, attempt: _Attempt, failure: str | None) -> None:
    """Record the attempt; a failure is committed at once, so that a caller who
    rolls back after a refused code cannot undo the rate limit."""
    record_attempt(
        session,
        user=attempt.user,
        username=None,
        success=failure is None,
        method=attempt.method,
        reason=failure,
        ip=attempt.ip,
        user_agent=attempt.user_agent,
        now=attempt.now,
    )
    if failure is not None:
        session.commit()


def _clip(value: str | None, length: int) -> str | None:
    return value[:length] if value else None


def _rows_changed(session: Session, statement: Executable) -> int:
    """Run a conditional UPDATE; the number of rows it changed."""
    result = session.execute(statement, execution_options={"synchronize_session": False})
    return cast("CursorResult[Any]", result).rowcount
