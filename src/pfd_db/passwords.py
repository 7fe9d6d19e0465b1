"""Password hashing (argon2id, parameters from the settings) and policy."""

from __future__ import annotations

import secrets
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from pfd_db.config import get_settings
from pfd_db.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 1024


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
    """Raise :class:`InvalidInput` unless ``password`` is 12 to 1024 characters."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"password must be at most {MAX_LENGTH} characters long")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` after checking the policy."""
    check_policy(password)
    return hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (constant time; False for a bad hash)."""
    try:
        return hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the settings' ones."""
    return hasher().check_needs_rehash(password_hash)


def generate_password(length: int = 24) -> str:
    """A random URL-safe password of ``length`` (at least 20) characters."""
    return secrets.token_urlsafe(max(length, 20))[: max(length, 20)]
