"""Two-factor authentication: TOTP setup and verification, and backup codes.

The TOTP secret is stored encrypted with the instance key. A code is accepted
for the current 30-second step or one step either side, and each step only once:
accepting a code claims its step with one conditional UPDATE of
``users.totp_last_step``, so two concurrent uses of one code cannot both pass.

A backup code is 10 characters from a 32-symbol alphabet without look-alikes
(50 bits), shown once as ``XXXXX-XXXXX``. Only its HMAC under the instance key
is stored, and that HMAC is the lookup key: checking a code costs one hash per
listed instance key, and consuming it is one conditional UPDATE.

TOTP codes and backup codes share one rate limit per user: after
``lockout_threshold`` failures of either within ``lockout_window_seconds``, both
raise :class:`RateLimited` before looking at the code. A refused code raises
:class:`AuthenticationFailed` with the reason ("malformed code", "wrong code",
"code already used", "unknown or used code", "2fa not enabled"); a code that is
not a string, :class:`InvalidInput`. Every attempt is recorded in
``login_history`` so that it outlasts the caller's rollback (see
:mod:`pfd_db.store.own_transaction`); otherwise functions flush and the caller
commits.

During a rotation of the instance key (``new,old``) TOTP secrets open with any
listed key and backup codes are looked up under the hash of each
(:func:`pfd_db.crypto.keyed_hashes`); ``pfd-db key rotate`` re-encrypts the
secrets (:func:`reencrypt_secrets`), while backup codes made under the old key
work only while it stays listed.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import datetime, timedelta
from functools import partial

import pyotp
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.crypto import decrypt, encrypt, keyed_hash, keyed_hashes
from pfd_db.errors import AuthenticationFailed, InvalidInput, RateLimited
from pfd_db.models import BackupCode, User
from pfd_db.models.enums import LoginMethod
from pfd_db.store.identity.credentials import optional_client_text, presented
from pfd_db.store.identity.logins import Attempt, address, recent_failures, record_attempt
from pfd_db.store.ops import audit
from pfd_db.store.ops.rotation import REENCRYPT_BATCH, Reencrypted, reencrypt_batch
from pfd_db.store.own_transaction import in_own_transaction
from pfd_db.store.status import update_if, update_where
from pfd_db.store.validation import require_count
from pfd_db.store.writes import load, take_write_lock
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
RATE_LIMITED_METHODS = (LoginMethod.TWO_FACTOR, LoginMethod.BACKUP_CODE)


def _attempt(
    user: User,
    method: LoginMethod,
    now: datetime | None,
    ip: object = None,
    user_agent: object = None,
) -> Attempt:
    """Who tries which second factor, from where, when (arguments checked)."""
    return Attempt(
        user.id,
        user.username,
        method,
        utc_or_now(now),
        optional_client_text(ip, "ip"),
        optional_client_text(user_agent, "user_agent"),
    )


# --- TOTP setup ----------------------------------------------------------------


def begin_setup(session: Session, user: User | int, now: datetime | None = None) -> tuple[str, str]:
    """Give ``user`` a new TOTP secret, stored encrypted; 2FA stays off until
    :func:`confirm_setup`. Returns ``(secret, otpauth URI)`` for the authenticator
    app, shown this once. :class:`InvalidInput` if 2FA is already on (disable it
    first). ``now`` is accepted for symmetry; setting up does not depend on time.
    """
    user = load(session, User, user, "user")
    if user.totp_enabled:
        raise InvalidInput("two-factor authentication is already on; disable it first")
    secret = str(pyotp.random_base32())
    user.totp_secret = encrypt(secret)
    user.totp_last_step = None
    session.flush()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return secret, str(uri)


def confirm_setup(
    session: Session, user: User | int, code: str, now: datetime | None = None
) -> None:
    """Turn 2FA on for ``user`` if ``code`` is valid for the secret from
    :func:`begin_setup`, under the rules of :func:`verify_totp` (rate limit,
    drift, replay; the attempt is recorded): a refused code raises as there,
    and 2FA stays off. :class:`InvalidInput` if 2FA is on already or no setup
    is pending.
    """
    user = load(session, User, user, "user")
    code = presented(code, "code")
    if user.totp_enabled:
        raise InvalidInput("two-factor authentication is already on")
    if user.totp_secret is None:
        raise InvalidInput("no two-factor setup in progress: call begin_setup first")
    attempt = _attempt(user, LoginMethod.TWO_FACTOR, now)
    _refuse_if_rate_limited(session, attempt)
    _settle(session, attempt, _totp_failure(session, user, code, attempt.now))
    user.totp_enabled = True
    session.flush()
    audit.about(session, user, "twofactor.enabled")


def disable(session: Session, user: User | int) -> None:
    """Turn 2FA off for ``user``: forget the secret and the replay guard, delete
    the backup codes."""
    user = load(session, User, user, "user")
    was_set_up = user.totp_enabled or user.totp_secret is not None
    user.totp_secret = None
    user.totp_enabled = False
    user.totp_last_step = None
    _delete_backup_codes(session, user)
    session.flush()
    if was_set_up:
        audit.about(session, user, "twofactor.disabled")


def reencrypt_secrets(
    session: Session, after_id: int = 0, limit: int = REENCRYPT_BATCH
) -> Reencrypted:
    """Re-encrypt under the first instance key the TOTP secrets of up to ``limit``
    users with an id above ``after_id``, in id order: one batch of ``pfd-db key
    rotate`` (see :func:`pfd_db.store.ops.rotation.reencrypt_batch`, which audits it).
    """
    return reencrypt_batch(session, User.totp_secret, after_id, limit)


# --- TOTP verification ------------------------------------------------------------


def verify_totp(
    session: Session,
    user: User | int,
    code: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> None:
    """Accept ``code`` if it is ``user``'s TOTP code for the step of ``now``
    (±1 step) and that step was not used before; accepting it uses the step up.

    :class:`RateLimited` (checked first) after too many recent failures;
    :class:`AuthenticationFailed` for a refused code (see the module doc). The
    attempt is recorded in ``login_history`` either way.
    """
    user = load(session, User, user, "user")
    code = presented(code, "code")
    attempt = _attempt(user, LoginMethod.TWO_FACTOR, now, ip, user_agent)
    _refuse_if_rate_limited(session, attempt)
    if user.totp_enabled:
        failure = _totp_failure(session, user, code, attempt.now)
    else:
        failure = "2fa not enabled"
    _settle(session, attempt, failure)


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
    if len(code) > MAX_CODE_INPUT:
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
    """Record ``step`` as ``user``'s last used one, if it is later than the last
    (a compare-and-set: of two sessions claiming one step, only the first does)."""
    later = or_(User.totp_last_step.is_(None), User.totp_last_step < step)
    return update_if(session, user, later, totp_last_step=step)


# --- backup codes --------------------------------------------------------------


def generate_backup_codes(session: Session, user: User | int, n: int = 10) -> list[str]:
    """``n`` new backup codes for ``user``, replacing any earlier set. Returns the
    plaintext codes (``XXXXX-XXXXX``) this once; only their keyed hashes are stored.
    """
    user = load(session, User, user, "user")
    codes = _new_codes(require_count(n, "n", 1, MAX_BACKUP_CODES))
    _delete_backup_codes(session, user)
    session.add_all(
        BackupCode(user_id=user.id, code_hash=keyed_hash(BACKUP_HASH_PURPOSE, code))
        for code in codes
    )
    session.flush()
    audit.about(session, user, "twofactor.backup_codes", count=len(codes))
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def use_backup_code(
    session: Session,
    user: User | int,
    code: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> None:
    """Consume ``code`` if it is one of ``user``'s unused backup codes (case,
    dashes and spaces do not matter).

    Same rate limit, refusals and recording as :func:`verify_totp`.
    """
    user = load(session, User, user, "user")
    code = presented(code, "code")
    attempt = _attempt(user, LoginMethod.BACKUP_CODE, now, ip, user_agent)
    _refuse_if_rate_limited(session, attempt)
    _settle(session, attempt, _backup_code_failure(session, code, attempt))


def remaining_backup_codes(session: Session, user: User | int) -> int:
    """How many of ``user``'s backup codes are still unused."""
    user = load(session, User, user, "user")
    unused = (
        select(func.count())
        .select_from(BackupCode)
        .where(BackupCode.user_id == user.id, BackupCode.is_used.is_(False))
    )
    return session.scalar(unused) or 0


def _backup_code_failure(session: Session, code: str, attempt: Attempt) -> str | None:
    """Why ``code`` is refused, or None after consuming it."""
    normalised = _normalised_backup_code(code)
    if normalised is None:
        return "malformed code"
    if not _consume(session, keyed_hashes(BACKUP_HASH_PURPOSE, normalised), attempt):
        return "unknown or used code"
    return None


def _normalised_backup_code(code: str) -> str | None:
    """``code`` upper-cased without dashes and spaces, or None if it cannot be a code."""
    if len(code) > MAX_CODE_INPUT:
        return None
    normalised = "".join(code.replace("-", " ").split()).upper()
    valid = len(normalised) == BACKUP_LENGTH and all(c in BACKUP_ALPHABET for c in normalised)
    return normalised if valid else None


def _consume(session: Session, code_hashes: list[str], attempt: Attempt) -> bool:
    """Mark the unused code of ``attempt``'s user whose hash is one of
    ``code_hashes`` used, if there is one."""
    used = update_where(
        session,
        BackupCode,
        [
            BackupCode.user_id == attempt.user_id,
            BackupCode.code_hash.in_(code_hashes),
            BackupCode.is_used.is_(False),
        ],
        is_used=True,
        used_at=attempt.now,
        ip_address=address(attempt.ip),
    )
    return used == 1


def _new_codes(n: int) -> list[str]:
    codes: set[str] = set()
    while len(codes) < n:
        codes.add("".join(secrets.choice(BACKUP_ALPHABET) for _ in range(BACKUP_LENGTH)))
    return sorted(codes)


def _delete_backup_codes(session: Session, user: User) -> None:
    session.execute(delete(BackupCode).where(BackupCode.user_id == user.id))


# --- shared ----------------------------------------------------------------------


def _refuse_if_rate_limited(session: Session, attempt: Attempt) -> None:
    """Record the attempt and raise :class:`RateLimited` if the user is over the limit."""
    settings = get_settings()
    window = timedelta(seconds=settings.lockout_window_seconds)
    assert attempt.user_id is not None  # second factors are always a known user's
    take_write_lock(session)  # SQLite: concurrent attempts are checked one after another
    failures = recent_failures(session, attempt.user_id, RATE_LIMITED_METHODS, window, attempt.now)
    if failures >= settings.lockout_threshold:
        _record(session, attempt, "rate limited")
        raise RateLimited()


def _settle(session: Session, attempt: Attempt, failure: str | None) -> None:
    """Record the attempt; raise :class:`AuthenticationFailed` if it failed."""
    _record(session, attempt, failure)
    if failure is not None:
        raise AuthenticationFailed(failure)


def _record(session: Session, attempt: Attempt, failure: str | None) -> None:
    """Record the attempt so that it outlasts a rollback of ``session``."""
    in_own_transaction(session, partial(record_attempt, attempt=attempt, reason=failure))
