"""Users: creation, password login with lockout, roles, deactivation.

Passwords are hashed with argon2id using the settings' parameters; a login with
a hash made under older parameters stores a new one.

Lockout. ``failed_login_count`` is the number of wrong passwords that count
towards a lockout *now*: those since the last reset (a successful login, an
administrator's password reset, or the end of a lockout) that are still inside
the ``lockout_window_seconds`` window. At each wrong password it becomes
``min(count + 1, wrong passwords in the window)`` (the window count comes from
``login_history``), so it slides with the window: five failures spread over more
than the window never lock. When it reaches ``lockout_threshold`` the account is
locked until ``now + lockout_seconds``; the count stays at the threshold while
locked (so ``user list`` shows why) and starts afresh at the first wrong
password after the lock has run out. Attempts refused as "locked" or "inactive"
do not count. Every function taking ``now`` uses it as the clock.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.errors import AuthenticationFailed, Conflict, InvalidInput
from pfd_db.models import Role, User
from pfd_db.models.enums import LoginMethod
from pfd_db.passwords import (
    check_policy,
    generate_password,
    hash_password,
    hasher,
    needs_rehash,
    verify_password,
)
from pfd_db.store.logins import recent_failures, record_attempt
from pfd_db.store.sessions import end_all_sessions
from pfd_db.store.validation import require_member
from pfd_db.types import utc_or_now

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{2,99}")
EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
EMAIL_MAX_LENGTH = 254

UNKNOWN_USER = "unknown user"
WRONG_PASSWORD = "wrong password"  # noqa: S105 - a failure reason, not a password
INACTIVE = "inactive"
LOCKED = "locked"


def create_user(
    session: Session, username: str, email: str, password: str, role: Role | str = Role.VIEWER
) -> User:
    """Create a user with an argon2id hash of ``password``.

    Usernames are case-sensitive for login, but one differing from an existing
    name only in case is refused (no "Admin" beside "admin"). E-mail addresses
    are stored lowercased. Raises :class:`InvalidInput` naming the bad field, or
    :class:`Conflict` naming the field already taken.
    """
    username, email, role = _valid_username(username), _valid_email(email), _valid_role(role)
    check_policy(password)
    _ensure_free(session, username, email)
    user = User(username=username, email=email, role=role, password_hash=hash_password(password))
    try:
        with session.begin_nested():  # a concurrent insert of the same name rolls back only this
            session.add(user)
            session.flush()
    except IntegrityError:
        _ensure_free(session, username, email)
        raise Conflict("username or email is already taken") from None
    return user


def authenticate(
    session: Session,
    username: str,
    password: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> User:
    """The user ``username`` if ``password`` is theirs and they may log in.

    Otherwise raises :class:`AuthenticationFailed` whose ``reason`` (for logs,
    not for the person logging in) is "unknown user", "inactive", "locked" or
    "wrong password". Every attempt costs one argon2 verification, unknown
    names included, and is written to ``login_history``. See the module doc
    for the lockout.

    A refusal is atomic on its own: the attempt and the failure count are
    committed before the error is raised, so that rolling back on the error
    cannot undo a lockout (anything else pending in ``session`` is committed
    with them). A success only flushes; the caller commits.
    """
    now = utc_or_now(now)
    user = get_by_username(session, username)
    password_ok = verify_password(_stored_hash(user), password)
    reason = _refusal(user, password_ok, now)
    record_attempt(
        session,
        user=user,
        username=username,
        success=reason is None,
        method=LoginMethod.PASSWORD,
        reason=reason,
        ip=ip,
        user_agent=user_agent,
        now=now,
    )
    if reason == WRONG_PASSWORD and user is not None:
        _count_failure(session, user, now)
    if user is None or reason is not None:
        # Committed before raising: a caller that rolls back on the error (as
        # get_db_session does) must not erase the attempt and the lockout count.
        session.commit()
        raise AuthenticationFailed(reason or UNKNOWN_USER)
    _log_in(session, user, password)
    return user


def change_password(session: Session, user: User, new_password: str) -> None:
    """Replace ``user``'s password (policy checked first). Sessions are left open."""
    user.password_hash = hash_password(new_password)
    session.flush()


def reset_password(session: Session, user: User, new_password: str | None = None) -> str:
    """Set a new password (generated when None) and return it; unlocks the account
    and ends all of the user's sessions, as after a suspected compromise."""
    password = generate_password() if new_password is None else new_password
    change_password(session, user, password)
    _clear_failures(user)
    end_all_sessions(session, user)
    session.flush()
    return password


def set_role(session: Session, user: User, role: Role | str) -> User:
    """Give ``user`` the role ``role`` (a Role or its value, e.g. "admin")."""
    user.role = _valid_role(role)
    session.flush()
    return user


def deactivate(session: Session, user: User) -> User:
    """Stop ``user`` from logging in and end all their sessions."""
    user.is_active = False
    end_all_sessions(session, user)
    session.flush()
    return user


def get_by_username(session: Session, username: str) -> User | None:
    """The user named exactly ``username``, or None."""
    return session.scalar(select(User).where(User.username == username))


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


def _ensure_free(session: Session, username: str, email: str) -> None:
    """Raise :class:`Conflict` naming the field if ``username`` or ``email`` is taken."""
    taken = session.execute(
        select(User.username, User.email).where(
            or_(func.lower(User.username) == username.lower(), User.email == email)
        )
    ).all()
    if any(row.username.lower() == username.lower() for row in taken):
        raise Conflict(f"username {username!r} is already taken")
    if taken:
        raise Conflict(f"email {email!r} is already registered")


# --- authentication --------------------------------------------------------------


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


def _refusal(user: User | None, password_ok: bool, now: datetime) -> str | None:
    """Why this login is refused, or None if it is not."""
    if user is None:
        return UNKNOWN_USER
    if not user.is_active:
        return INACTIVE
    if _is_locked(user, now):
        return LOCKED
    if not password_ok:
        return WRONG_PASSWORD
    return None


def _is_locked(user: User, now: datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def _count_failure(session: Session, user: User, now: datetime) -> None:
    """Count a wrong password (see the module doc); lock the account at the threshold."""
    session.refresh(user, with_for_update=True)  # concurrent failures must not lose a count
    if _is_locked(user, now):  # a concurrent attempt locked it meanwhile
        return
    if user.locked_until is not None:  # a lock that has run out: start afresh
        _clear_failures(user)
    settings = get_settings()
    window = timedelta(seconds=settings.lockout_window_seconds)
    wrong_in_window = recent_failures(
        session, user, [LoginMethod.PASSWORD], window, now, reason=WRONG_PASSWORD
    )
    user.failed_login_count = min(user.failed_login_count + 1, wrong_in_window)
    if user.failed_login_count >= settings.lockout_threshold:
        user.locked_until = now + timedelta(seconds=settings.lockout_seconds)
    session.flush()


def _log_in(session: Session, user: User, password: str) -> None:
    """What a successful login changes: failures forgotten, an outdated hash renewed."""
    if user.failed_login_count or user.locked_until is not None:
        _clear_failures(user)
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hasher().hash(password)  # no policy check: it was accepted before
    session.flush()


def _clear_failures(user: User) -> None:
    user.failed_login_count = 0
    user.locked_until = None
