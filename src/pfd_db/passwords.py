"""Password hashing (argon2id, parameters from the settings) and policy."""

from __future__ import annotations

import secrets
from functools import lru_cache

import bcrypt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from pfd_db.config import get_settings
from pfd_db.errors import InvalidInput
from pfd_db.values import text_problem

MIN_LENGTH = 12
MAX_LENGTH = 1024
# Hashes an LSTM_PFD database holds (see docs/coming-from-lstm-pfd.md).
LEGACY_BCRYPT_PREFIXES = ("$2b$", "$2a$", "$2y$")


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
    )


def hasher() -> PasswordHasher:
    """The argon2id hasher with the settings' parameters."""
    s = get_settings()
    return _hasher(s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism)


def check_policy(password: str) -> None:
    """Raise :class:`InvalidInput` unless ``password`` is 12 to 1024 characters of
    text (no NUL, no lone surrogate). The message never quotes the password."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"password must be at most {MAX_LENGTH} characters long")
    if text_problem(password) is not None:
        raise InvalidInput("password must be Unicode text without NUL characters")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` after checking the policy."""
    check_policy(password)
    return hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (constant time; False for a bad hash).

    A comparison of a password with a hash, not a login: it records and counts
    nothing, so it answers yes or no. Logins go through
    :func:`pfd_db.store.identity.users.authenticate`, which raises on a refusal.

    A bcrypt hash imported from an LSTM_PFD database is checked too, so that its
    owner can log in once; :func:`needs_rehash` then has it replaced with argon2id.
    """
    secret = password.encode("utf-8", "surrogatepass")  # text no password can hold never matches
    if password_hash.startswith(LEGACY_BCRYPT_PREFIXES):
        return _verify_legacy_bcrypt(password_hash, secret)
    try:
        return hasher().verify(password_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def _verify_legacy_bcrypt(password_hash: str, secret: bytes) -> bool:
    try:
        return bcrypt.checkpw(secret, password_hash.encode())
    except ValueError:  # a malformed hash, or a password bcrypt cannot take (over 72 bytes)
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the settings' ones
    (or is a legacy bcrypt hash)."""
    if password_hash.startswith(LEGACY_BCRYPT_PREFIXES):
        return True
    return hasher().check_needs_rehash(password_hash)


def generate_password(length: int = 24) -> str:
    """A random URL-safe password of ``length`` (at least 20) characters."""
    return secrets.token_urlsafe(max(length, 20))[: max(length, 20)]
