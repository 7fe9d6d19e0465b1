"""API keys: issue, verify, revoke, scopes, usage records and the hourly rate limit.

A key reads ``pfd_<prefix>_<secret>``. The prefix (16 lowercase hex characters)
is public and unique: it finds the row with one indexed lookup. The secret is 32
random bytes, URL-safe base64 (43 characters, which may contain ``_`` and ``-``).
Only the SHA-256 of the whole key is stored: a fast hash is enough for a secret
with 256 bits of entropy, and keeps :func:`verify` on the hot path cheap.

:func:`verify` takes the same path for a prefix that no key has as for a known
one with a wrong secret: one indexed lookup that returns one plain row either
way (the stored hash, or NULL), then one SHA-256 and one constant-time
comparison, against that hash or a dummy; so its timing does not tell which
prefixes exist. Only a matching key is then loaded, with its user, by its
primary key.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session, contains_eager

from pfd_db.crypto import random_token, sha256_hex
from pfd_db.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from pfd_db.models import APIKey, APIUsage, User
from pfd_db.store.identity.credentials import presented
from pfd_db.store.ops import audit
from pfd_db.store.status import reread, update_if
from pfd_db.store.validation import require_count, require_items, require_str, require_text
from pfd_db.store.writes import ID_MAX, add_unique, load, one_of_kinds
from pfd_db.types import as_utc, utc_or_now, utcnow

KEY_TAG = "pfd"
PREFIX_BYTES = 8
SECRET_BYTES = 32
PREFIX_LENGTH = 2 * PREFIX_BYTES
SECRET_LENGTH = 43  # len(random_token(32)): base64 of 32 bytes, unpadded
KEY_LENGTH = len(KEY_TAG) + 1 + PREFIX_LENGTH + 1 + SECRET_LENGTH
KEY_SHAPE = re.compile(
    rf"{KEY_TAG}_(?P<prefix>[0-9a-f]{{{PREFIX_LENGTH}}})_[A-Za-z0-9_-]{{{SECRET_LENGTH}}}"
)

SCOPE_LEVELS = {"read": 1, "write": 2, "admin": 3}
NAME_MAX = 100
TOUCH_INTERVAL = timedelta(minutes=1)
DUMMY_HASH = sha256_hex(random_token(SECRET_BYTES))  # compared with when no key has the prefix
RATE_WINDOW = timedelta(hours=1)
PREFIX_ATTEMPTS = 5


# --- issuing -------------------------------------------------------------------


def issue(
    session: Session,
    user: User | int,
    name: str,
    scopes: Iterable[str] = ("read",),
    expires_at: datetime | None = None,
    rate_limit: int = 1000,
) -> tuple[str, APIKey]:
    """A new key for ``user``: returns ``(plaintext, record)``; the plaintext is
    shown this once and never stored. :class:`InvalidInput` naming the field,
    before anything is written, for a bad name, scopes, rate limit or expiry.

    The prefix has 64 random bits; the vanishingly rare prefix another key
    already has is drawn again (up to ``PREFIX_ATTEMPTS`` times, then
    :class:`Conflict`), whether seen before inserting or from the unique
    constraint when a concurrent writer took it first.
    """
    user = load(session, User, user, "user")
    fields = {
        "name": require_text(name, "name", NAME_MAX),
        "scopes": _valid_scopes(scopes),
        "rate_limit": require_count(rate_limit, "rate_limit", minimum=1),
        "expires_at": _valid_expiry(expires_at),
    }
    if user.id is None:
        session.flush()
    for _attempt in range(PREFIX_ATTEMPTS):
        prefix = secrets.token_hex(PREFIX_BYTES)
        plaintext = f"{KEY_TAG}_{prefix}_{random_token(SECRET_BYTES)}"
        record = APIKey(user_id=user.id, prefix=prefix, key_hash=sha256_hex(plaintext), **fields)
        try:
            add_unique(session, record, {APIKey.prefix: prefix}, conflict="prefix taken")
        except Conflict:
            continue
        break
    else:
        raise Conflict(f"no free API-key prefix after {PREFIX_ATTEMPTS} draws; try again")
    record.user = user
    audit.about(
        session, user, "api_key.issued", key_id=record.id, prefix=record.prefix, name=record.name
    )
    return plaintext, record


def _valid_scopes(scopes: Iterable[str]) -> list[str]:
    if isinstance(scopes, str):
        raise InvalidInput("scopes: give a list of scopes, not one string")
    given = require_items(scopes, "scopes")
    unknown = [scope for scope in given if not isinstance(scope, str) or scope not in SCOPE_LEVELS]
    if not given or unknown:
        raise InvalidInput(f"scopes: give one or more of {', '.join(SCOPE_LEVELS)}")
    return list(dict.fromkeys(given))


def _valid_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime):
        raise InvalidInput("expires_at: give a timezone-aware datetime")
    try:
        expiry = as_utc(expires_at)
    except InvalidInput:
        raise InvalidInput("expires_at: give a timezone-aware datetime, not a naive one") from None
    if expiry <= utcnow():
        raise InvalidInput("expires_at: must be in the future")
    return expiry


# --- verifying -----------------------------------------------------------------


def verify(session: Session, key: str, now: datetime | None = None) -> APIKey:
    """The key record of the presented ``key``, if it is usable.

    :class:`AuthenticationFailed` otherwise, whose ``reason`` is "malformed
    key" (refused without touching the database), "unknown key", "wrong
    secret", "revoked", "inactive key", "expired" or "inactive user";
    :class:`InvalidInput` if ``key`` is not a string.

    One SELECT finds the stored hash by the prefix; the SHA-256 of the
    presented key is compared with it in constant time, or with a dummy when no
    key has the prefix (see the module doc). A match is loaded with its user by
    a second SELECT, by primary key; it must be active, not revoked, not
    expired, and its user active. ``last_used_at`` is written at most once a
    minute; otherwise nothing is.
    """
    key = presented(key, "key")
    moment = utc_or_now(now)
    prefix = _prefix_of(key)
    if prefix is None:
        raise AuthenticationFailed("malformed key")
    key_id, stored_hash = session.execute(_stored_hash_by_prefix(), {"prefix": prefix}).one()
    matches = hmac.compare_digest(sha256_hex(key), stored_hash or DUMMY_HASH)
    if key_id is None:
        raise AuthenticationFailed("unknown key")
    if not matches:
        raise AuthenticationFailed("wrong secret")
    record = session.scalars(_key_with_user_by_id(), {"id": key_id}).one_or_none()
    reason = _unusable(record, moment)
    if reason is not None:
        raise AuthenticationFailed(reason)
    assert record is not None  # _unusable refuses a missing one
    _touch(session, record, moment)
    return record


def _prefix_of(key: str) -> str | None:
    if len(key) != KEY_LENGTH:
        return None
    shape = KEY_SHAPE.fullmatch(key)
    return shape["prefix"] if shape else None


# The statements are built once: building them on every call took about a fifth
# of verify's time.


@cache
def _stored_hash_by_prefix() -> Select[int | None, str | None]:
    # An aggregate returns one row whether a key has the prefix or not (NULLs
    # then): the same rows for the same work, found or not.
    return select(func.max(APIKey.id), func.max(APIKey.key_hash)).where(
        APIKey.prefix == bindparam("prefix")
    )


@cache
def _key_with_user_by_id() -> Select[APIKey]:
    # populate_existing: a copy already in the session must not hide a revocation.
    return (
        select(APIKey)
        .join(APIKey.user)
        .options(contains_eager(APIKey.user))
        .where(APIKey.id == bindparam("id"))
        .execution_options(populate_existing=True)
    )


def _unusable(record: APIKey | None, now: datetime) -> str | None:
    """Why the key whose secret matched is refused, or None if it is usable."""
    if record is None:
        return "unknown key"  # deleted since the lookup
    if record.revoked_at is not None:
        return "revoked"
    if not record.is_active:
        return "inactive key"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    if not record.user.is_active:
        return "inactive user"
    return None


def _touch(session: Session, record: APIKey, now: datetime) -> None:
    if record.last_used_at is None or now - record.last_used_at >= TOUCH_INTERVAL:
        record.last_used_at = now
        session.flush()


# --- managing ------------------------------------------------------------------


def revoke(session: Session, key: APIKey | int) -> APIKey:
    """Turn ``key`` off for good. Revoking twice keeps the first ``revoked_at``."""
    key = load(session, APIKey, key, "key")
    # One conditional UPDATE (store.status): of concurrent revocations only the first is one.
    if update_if(session, key, APIKey.revoked_at.is_(None), is_active=False, revoked_at=utcnow()):
        audit.about(session, key.user, "api_key.revoked", key_id=key.id, prefix=key.prefix)
    else:
        reread(session, key)  # as stored: revoked earlier, perhaps by another session
    return key


def get_key(session: Session, id_or_prefix: int | str) -> APIKey:
    """The key named by its id (an int or digits), its whole key (checked against
    the stored hash), its prefix, or any start of its prefix of at least
    ``PREFIX_START_MIN`` characters (``pfd_`` in front is accepted).

    :class:`NotFound` naming it when no key matches, :class:`Conflict` when a
    start of a prefix matches several keys, :class:`InvalidInput` for a text that
    can name no key.
    """
    if isinstance(id_or_prefix, int) and not isinstance(id_or_prefix, bool):
        return load(session, APIKey, id_or_prefix, "id_or_prefix")
    found = _find_by_text(session, id_or_prefix)
    if found is None:
        raise NotFound(f"no API key {id_or_prefix!r}")
    return found


PREFIX_START_MIN = 8
_PREFIX_START = re.compile(rf"[0-9a-f]{{{PREFIX_START_MIN},{PREFIX_LENGTH}}}")


def _find_by_text(session: Session, text: object) -> APIKey | None:
    if not isinstance(text, str):
        raise InvalidInput("give a key's id, its whole key or the start of its prefix")
    text = text.strip()
    if text.isdigit() and len(text) < PREFIX_LENGTH:
        by_id = session.get(APIKey, int(text)) if int(text) <= ID_MAX else None
        if by_id is not None or len(text) < PREFIX_START_MIN:
            return by_id
    if (whole := KEY_SHAPE.fullmatch(text)) is not None:
        record = _by_prefix_start(session, whole["prefix"])
        matches = record is not None and hmac.compare_digest(sha256_hex(text), record.key_hash)
        return record if matches else None
    start = text.removeprefix(f"{KEY_TAG}_").removesuffix("_")
    if not _PREFIX_START.fullmatch(start):
        raise InvalidInput(
            f"give a key's id, its whole key or at least {PREFIX_START_MIN} characters "
            f"of its prefix (got {text[:40]!r})"
        )
    return _by_prefix_start(session, start)


def _by_prefix_start(session: Session, start: str) -> APIKey | None:
    found = list(
        session.scalars(
            select(APIKey).where(APIKey.prefix.startswith(start, autoescape=True)).limit(2)
        )
    )
    if len(found) > 1:
        raise Conflict(f"{start!r} starts the prefix of several keys: give more characters")
    return found[0] if found else None


def list_keys(session: Session, user: User | int) -> list[APIKey]:
    """Every key of ``user``, revoked ones included, newest first."""
    user = load(session, User, user, "user")
    return list(
        session.scalars(
            select(APIKey)
            .where(APIKey.user_id == user.id)
            .order_by(APIKey.created_at.desc(), APIKey.id.desc())
        )
    )


def has_scope(key: APIKey, scope: str) -> bool:
    """Whether ``key`` grants ``scope``: admin implies write implies read.
    An unknown scope is never granted."""
    one_of_kinds(key, (APIKey,), "key")
    needed = SCOPE_LEVELS.get(require_str(scope, "scope"))
    if needed is None:
        return False
    return any(SCOPE_LEVELS.get(held, 0) >= needed for held in key.scopes)


# --- usage and rate limit ------------------------------------------------------


def record_usage(
    session: Session,
    key: APIKey | int,
    endpoint: str,
    method: str,
    status_code: int,
    ms: int | None,
    now: datetime | None = None,
) -> APIUsage:
    """Record one request made with ``key`` (``ms``: response time in milliseconds)."""
    key = load(session, APIKey, key, "key")
    usage = APIUsage(
        api_key_id=key.id,
        endpoint=require_text(endpoint, "endpoint", 255),
        method=_valid_method(method),
        status_code=_valid_status(status_code),
        response_time_ms=None if ms is None else require_count(ms, "ms"),
        timestamp=utc_or_now(now),
    )
    session.add(usage)
    session.flush()
    return usage


def _valid_method(method: str) -> str:
    if not isinstance(method, str) or not 1 <= len(method) <= 10:
        raise InvalidInput("method: give an HTTP method of 1 to 10 characters")
    return method.upper()


def _valid_status(status_code: int) -> int:
    if require_count(status_code, "status_code", minimum=100) > 599:
        raise InvalidInput("status_code must be an HTTP status code from 100 to 599")
    return status_code


def check_rate_limit(session: Session, key: APIKey | int, now: datetime | None = None) -> int:
    """Requests ``key`` may still make in the sliding hour before ``now``:
    its ``rate_limit`` less its ``api_usage`` rows of the last hour, never below 0.

    Cost: one COUNT over the ``ix_api_usage_key_time`` index (migration 0006),
    reading only the key's rows of the last hour. On SQLite, a caller that must
    not let two concurrent requests both take the last slot takes the write lock
    first (:func:`pfd_db.store.writes.take_write_lock`).
    """
    key = load(session, APIKey, key, "key")
    since = utc_or_now(now) - RATE_WINDOW
    used = session.scalar(
        select(func.count())
        .select_from(APIUsage)
        .where(APIUsage.api_key_id == key.id, APIUsage.timestamp > since)
    )
    return max(0, key.rate_limit - (used or 0))
