"""Users: creation, password login with its two limits, roles, deactivation.

Passwords are hashed with argon2id using the settings' parameters; a login with
a hash made under older parameters (or a legacy bcrypt one) stores a new one.

Login limits. Two limits, both over sliding windows, refuse a login before the
password counts (it is still verified, so a refusal costs the same time):

- **Per account and address** ("locked"): an address that tried
  ``lockout_threshold`` (5) wrong passwords on an account within
  ``lockout_window_seconds`` (15 minutes), since its last successful login
  there, is refused on that account until the oldest of them leaves the window.
  An attacker elsewhere cannot lock the owner out. Names that are no account
  are limited alike, so the limit does not tell which names exist. Attempts
  made without an ``ip`` all count as one address: pass it.
- **Per account** ("account locked"): an account that collected
  ``account_lockout_threshold`` (50) wrong passwords within
  ``account_lockout_window_seconds`` (24 hours), from all addresses together,
  refuses every address it has not logged in from in the last
  ``known_address_seconds`` (30 days), until the oldest of them leaves the
  window. Distributed guessing stops; the owner, at an address they use, still
  logs in (within their address's own limit).

``users.failed_login_count`` is the account's wrong passwords that count
towards the account-wide limit now: at each one it becomes ``min(count + 1,
wrong passwords in the 24-hour window)``, so it slides with the window and
starts from 0 after :func:`reset_password`. ``users.locked_until`` is when the
account-wide lock ends (None when there is none). The per-address limit is
read from ``login_history`` and stored nowhere else. Attempts refused as
"locked", "account locked" or "inactive" do not count; a successful login does
not reset the account-wide count (it says nothing about the other addresses).

Every attempt is written to ``login_history`` with its verdict, decided and
counted in a short transaction of its own under the user's row lock (see
:mod:`pfd_db.store.own_transaction`): concurrent attempts lose no count, a
caller's rollback erases no failure, and a refusal commits nothing the caller
has pending. Every function taking ``now`` uses it as the clock.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache, partial

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.errors import AuthenticationFailed, InvalidInput, RateLimited
from pfd_db.models import Role, User
from pfd_db.models.enums import LoginMethod
from pfd_db.passwords import (
    MAX_LENGTH,
    check_policy,
    generate_password,
    hash_password,
    hasher,
    needs_rehash,
    verify_password,
)
from pfd_db.store.identity.credentials import optional_client_text, presented
from pfd_db.store.identity.logins import (
    Attempt,
    address,
    failures_from_address,
    latest_failure_times,
    recent_failures,
    record_attempt,
    succeeded_from,
)
from pfd_db.store.identity.sessions import end_all_sessions
from pfd_db.store.notify.notifications import add_default_preferences
from pfd_db.store.ops import audit
from pfd_db.store.own_transaction import in_own_transaction
from pfd_db.store.status import reread, update_if
from pfd_db.store.validation import require_member
from pfd_db.store.writes import add_unique, load
from pfd_db.types import utc_or_now
from pfd_db.values import text_problem

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{2,99}")
USERNAME_MAX_LENGTH = 100
EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
EMAIL_MAX_LENGTH = 254

UNKNOWN_USER = "unknown user"
WRONG_PASSWORD = "wrong password"  # noqa: S105 - a failure reason, not a password
INACTIVE = "inactive"
LOCKED = "locked"
ACCOUNT_LOCKED = "account locked"
GUESSES = (WRONG_PASSWORD, UNKNOWN_USER)  # the refusals the per-address limit counts
LOCK_FIELDS = ["is_active", "failed_login_count", "locked_until"]


def create_user(
    session: Session, username: str, email: str, password: str, role: Role | str = Role.VIEWER
) -> User:
    """Create a user with an argon2id hash of ``password``.

    Usernames are case-sensitive for login, but one differing from an existing
    name only in case is refused (no "Admin" beside "admin"); so is an e-mail
    address differing only in case (stored lowercased; the database's
    ``lower()`` unique indexes hold both rules for every writer). Raises
    :class:`InvalidInput` naming the bad field, or :class:`Conflict` naming the
    field already taken.
    """
    username, email, role = _valid_username(username), _valid_email(email), _valid_role(role)
    check_policy(password)
    user = User(username=username, email=email, role=role, password_hash=hash_password(password))
    add_unique(
        session,
        user,
        func.lower(User.username) == username.lower(),
        conflict=f"username {username!r} is already taken",
        other_keys=[(func.lower(User.email) == email, f"email {email!r} is already registered")],
    )
    add_default_preferences(session, user)
    audit.about(session, user, "user.created", role=user.role.value)
    return user


def authenticate(
    session: Session,
    username: str,
    password: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> User:
    """The user ``username`` if ``password`` is theirs and they may log in now.

    Otherwise :class:`AuthenticationFailed` whose ``reason`` is "unknown user",
    "inactive" or "wrong password", or :class:`RateLimited` (an
    AuthenticationFailed too) whose reason is "locked" or "account locked"
    (see the module doc for both limits). ``ip`` is the client's address the
    per-address limit counts by. Every attempt costs one argon2 verification,
    unknown names and refusals included, and is written to ``login_history``.
    A name or password of the wrong shape is refused the same way;
    :class:`InvalidInput` only for arguments that are not strings.

    A success flushes (a renewed hash) and the caller commits; the attempt is
    recorded either way.
    """
    username, password = presented(username, "username"), presented(password, "password")
    ip, user_agent = optional_client_text(ip, "ip"), optional_client_text(user_agent, "user_agent")
    now = utc_or_now(now)
    user = _find(session, username)
    password_ok = _password_matches(user, password)
    attempt = Attempt(
        user.id if user else None, username, LoginMethod.PASSWORD, now, ip, user_agent
    )
    reason = in_own_transaction(session, partial(_judge, attempt=attempt, password_ok=password_ok))
    if user is not None:
        _show_counts(session, user, reason)
    if reason in (LOCKED, ACCOUNT_LOCKED):
        raise RateLimited(reason)
    if user is None or reason is not None:
        raise AuthenticationFailed(reason or UNKNOWN_USER)
    _log_in(session, user, password)
    return user


def change_password(session: Session, user: User | int, new_password: str) -> None:
    """Replace the user's password (policy checked first). Sessions are left open.
    Audited (``user.password_changed``) in the caller's transaction."""
    found = _set_password(session, user, new_password)
    audit.about(session, found, "user.password_changed")


def _set_password(session: Session, user: User | int, new_password: str) -> User:
    found = load(session, User, user, "user")
    found.password_hash = hash_password(new_password)
    session.flush()
    return found


def reset_password(session: Session, user: User | int, new_password: str | None = None) -> str:
    """Set a new password (generated when None) and return it; lifts the
    account-wide lock and restarts its count (the per-address limits run out by
    themselves), and ends all of the user's sessions, as after a suspected
    compromise."""
    found = load(session, User, user, "user")
    password = generate_password() if new_password is None else new_password
    _set_password(session, found, password)
    found.failed_login_count = 0
    found.locked_until = None
    ended = end_all_sessions(session, found)
    session.flush()
    audit.about(
        session, found, "user.password_reset", generated=new_password is None, sessions_ended=ended
    )
    return password


def set_role(session: Session, user: User | int, role: Role | str) -> User:
    """Give the user the role ``role`` (a Role or its value, e.g. "admin")."""
    found = load(session, User, user, "user")
    before, found.role = found.role, _valid_role(role)
    session.flush()
    if found.role != before:
        audit.about(session, found, "user.role_changed", old=before.value, new=found.role.value)
    return found


def deactivate(session: Session, user: User | int) -> User:
    """Stop the user from logging in and end all their sessions."""
    found = load(session, User, user, "user")
    was_active = update_if(session, found, User.is_active.is_(True), is_active=False)
    if not was_active:
        reread(session, found)  # as stored: deactivated earlier, perhaps by another session
    ended = end_all_sessions(session, found)
    if was_active:
        audit.about(session, found, "user.deactivated", sessions_ended=ended)
    return found


def get_by_username(session: Session, username: str) -> User | None:
    """The user named exactly ``username``, or None."""
    return _find(session, presented(username, "username"))


def list_users(session: Session) -> list[User]:
    """Every user, by username."""
    return list(session.scalars(select(User).order_by(User.username)))


# --- validation ----------------------------------------------------------------


def _valid_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise InvalidInput(
            "username must be 3 to 100 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return username


def _valid_email(email: object) -> str:
    if not isinstance(email, str) or len(email) > EMAIL_MAX_LENGTH or not EMAIL.fullmatch(email):
        raise InvalidInput("email must be an address like name@example.com")
    return email.lower()


def _valid_role(role: object) -> Role:
    return require_member(role, Role, "role")


# --- authentication --------------------------------------------------------------


def _find(session: Session, username: str) -> User | None:
    """The user named exactly ``username``; None, without a query, for a name no
    user can have."""
    if len(username) > USERNAME_MAX_LENGTH or text_problem(username) is not None:
        return None
    return session.scalar(select(User).where(User.username == username))


def _password_matches(user: User | None, password: str) -> bool:
    """Whether ``password`` is ``user``'s, at the cost of one argon2 verification
    whoever the user is (a dummy hash for none). One longer than any password can
    be is wrong without hashing: its length is no secret."""
    if len(password) > MAX_LENGTH:
        return False
    matches = verify_password(_stored_hash(user), password)
    return matches and user is not None and bool(user.password_hash)


def _stored_hash(user: User | None) -> str:
    """The hash to verify against: the user's, or a dummy one costing the same work."""
    if user is not None and user.password_hash:
        return user.password_hash
    s = get_settings()
    return _dummy_hash(s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism)


@lru_cache(maxsize=4)
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int) -> str:
    """An argon2id hash of a random password, made once per set of parameters
    (the arguments are the cache key: new settings make a new dummy)."""
    return hasher().hash(generate_password())


def _judge(session: Session, attempt: Attempt, password_ok: bool) -> str | None:
    """Why the attempt is refused (None: it is not), once it is recorded and a
    wrong password counted, under the user's row lock (run by
    :func:`in_own_transaction`, in whichever session it gives)."""
    account = None if attempt.user_id is None else session.get(User, attempt.user_id)
    if account is not None:
        # FOR NO KEY UPDATE: serialises attempts on this account (and, on SQLite,
        # takes the write lock) without blocking rows that merely reference it.
        session.refresh(account, LOCK_FIELDS, with_for_update={"key_share": True})
    reason = _refusal(session, account, attempt, password_ok)
    record_attempt(session, attempt if account else _as_unknown(attempt), reason)
    if account is None:
        return reason or UNKNOWN_USER
    if reason == WRONG_PASSWORD:
        account_was_locked = _account_locked(account, attempt.now)
        _count_failure(session, account, attempt.now)
        _audit_new_locks(session, account, attempt, account_was_locked)
    return reason


def _as_unknown(attempt: Attempt) -> Attempt:
    return Attempt(
        None, attempt.username, attempt.method, attempt.now, attempt.ip, attempt.user_agent
    )


def _refusal(
    session: Session, account: User | None, attempt: Attempt, password_ok: bool
) -> str | None:
    """Why this login is refused, or None if it is not."""
    settings = get_settings()
    window = timedelta(seconds=settings.lockout_window_seconds)
    address_guesses = failures_from_address(
        session, attempt if account else _as_unknown(attempt), GUESSES, window
    )
    if account is None:
        return LOCKED if address_guesses >= settings.lockout_threshold else UNKNOWN_USER
    if not account.is_active:
        return INACTIVE
    if address_guesses >= settings.lockout_threshold:
        return LOCKED
    if _account_locked(account, attempt.now) and not _known_address(session, attempt):
        return ACCOUNT_LOCKED
    if not password_ok:
        return WRONG_PASSWORD
    return None


def _account_locked(user: User, now: datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def _known_address(session: Session, attempt: Attempt) -> bool:
    known = timedelta(seconds=get_settings().known_address_seconds)
    return succeeded_from(session, attempt, known)


def _count_failure(session: Session, user: User, now: datetime) -> None:
    """Count a wrong password towards the account-wide limit (see the module doc);
    lock the account while the limit is reached."""
    settings = get_settings()
    window = timedelta(seconds=settings.account_lockout_window_seconds)
    threshold = settings.account_lockout_threshold
    method = LoginMethod.PASSWORD
    wrong_in_window = recent_failures(session, user.id, [method], window, now, WRONG_PASSWORD)
    user.failed_login_count = min(user.failed_login_count + 1, wrong_in_window)
    if user.failed_login_count >= threshold:
        times = latest_failure_times(
            session, user.id, method, WRONG_PASSWORD, window, now, threshold
        )
        user.locked_until = times[-1] + window  # when the oldest of them leaves the window
    else:
        user.locked_until = None
    session.flush()


def _audit_new_locks(
    session: Session, user: User, attempt: Attempt, account_was_locked: bool
) -> None:
    """Write ``user.locked`` to the audit log, in the attempt's own transaction, when
    this wrong password locked the account for its address (the per-address limit
    was just reached) or for every address it is not known at (the account-wide one)."""
    settings = get_settings()
    window = timedelta(seconds=settings.lockout_window_seconds)
    if failures_from_address(session, attempt, GUESSES, window) == settings.lockout_threshold:
        audit.about(
            session, user, "user.locked", "warning", scope="address", ip=address(attempt.ip)
        )
    if not account_was_locked and _account_locked(user, attempt.now):
        assert user.locked_until is not None  # _account_locked says so
        until = user.locked_until.isoformat()
        audit.about(session, user, "user.locked", "warning", scope="account", until=until)


def _show_counts(session: Session, user: User, reason: str | None) -> None:
    """Give the caller's copy of ``user`` the counts just committed, read again."""
    if reason is None or reason == UNKNOWN_USER:
        return
    session.refresh(user, ["failed_login_count", "locked_until"])


def _log_in(session: Session, user: User, password: str) -> None:
    """What a successful login changes: an outdated hash is renewed."""
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hasher().hash(password)  # no policy check: it was accepted before
        session.flush()
