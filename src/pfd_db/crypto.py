"""The instance key and what it protects; token hashing.

The instance key is a Fernet key. It encrypts TOTP secrets at rest and keys
the HMAC that hashes backup codes. It comes from ``PFD_DB_SECRET_KEY``, else from
the file ``PFD_DB_SECRET_KEY_FILE``, else, for a SQLite database, from the file
``<database>.key`` beside it, which ``pfd-db init`` creates with mode 0600.
"The database" is the one :func:`pfd_db.session.configure` last pointed sessions
at, else the settings' URL: the key follows the database.

Rotation. Several keys, comma-separated (``new,old``), are all in force: the
first encrypts and hashes what is stored from now on, and everything made under
any of them still verifies (:func:`decrypt` tries each, :func:`keyed_hashes`
gives one hash per key). :func:`reencrypt` moves a ciphertext to the first key;
a keyed hash cannot be moved (its input is not stored), so it verifies only
while its key stays listed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from pfd_db.config import get_settings
from pfd_db.errors import ConfigurationError
from pfd_db.target import instance_key_path

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def sha256_hex(value: str) -> str:
    """The SHA-256 of ``value`` in hex: for high-entropy tokens, where a fast hash suffices."""
    return hashlib.sha256(value.encode()).hexdigest()


def random_token(nbytes: int = 32) -> str:
    """``nbytes`` random bytes, URL-safe base64 without padding."""
    return secrets.token_urlsafe(nbytes)


_database_url: str | URL | None = None  # set by session.configure; None: the settings' URL


def follow_database(url: str | URL | None) -> None:
    """Look for the default key file beside ``url``'s database from now on (None:
    beside the settings' database again). Called by :func:`pfd_db.session.configure`."""
    global _database_url
    _database_url = url


@contextmanager
def following_settings() -> Iterator[None]:
    """Within the block, the key file is looked for beside the settings' database
    whatever sessions were pointed at (the CLI's ``--url`` sets the settings)."""
    saved = _database_url
    follow_database(None)
    try:
        yield
    finally:
        follow_database(saved)


def key_file_path() -> Path | None:
    """The key file in force when ``PFD_DB_SECRET_KEY`` is unset: ``PFD_DB_SECRET_KEY_FILE``,
    else ``<database>.key`` beside a SQLite database; None when there is none."""
    settings = get_settings()
    if settings.secret_key_file is not None:
        return settings.secret_key_file
    return instance_key_path(settings.url if _database_url is None else _database_url)


def create_key_file(path: Path) -> bool:
    """Write a new key to ``path`` with mode 0600; False (and nothing written) if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key() + b"\n")
    return True


def _configured_keys() -> tuple[bytes, ...]:
    """The instance keys, primary first. A key file is read again only when it
    changes, so the hot paths (verifying codes) cost no file read."""
    settings = get_settings()
    if settings.secret_key is not None:
        return _parse_keys(settings.secret_key.get_secret_value())
    path = key_file_path()
    if path is None:
        raise ConfigurationError(
            "no instance key: set PFD_DB_SECRET_KEY or PFD_DB_SECRET_KEY_FILE "
            "(`pfd-db init` creates one beside a SQLite database)"
        )
    if not path.exists():
        raise ConfigurationError(
            f"no instance key: the key file {path} does not exist "
            "(`pfd-db init` creates it; or set PFD_DB_SECRET_KEY)"
        )
    return _read_key_file(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _read_key_file(path: Path, _modified_ns: int) -> tuple[bytes, ...]:
    return _parse_keys(path.read_text())


@lru_cache(maxsize=8)
def _parse_keys(text: str) -> tuple[bytes, ...]:
    keys = tuple(part.strip().encode() for part in text.split(",") if part.strip())
    if not keys:
        raise ConfigurationError("the instance key is empty")
    return keys


@lru_cache(maxsize=8)
def _fernet(keys: tuple[bytes, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise ConfigurationError("the instance key is not a valid Fernet key") from None


def _instance() -> MultiFernet:
    return _fernet(_configured_keys())


def encrypt(plaintext: str) -> str:
    """``plaintext`` encrypted with the instance key."""
    return _instance().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The plaintext of ``token``; :class:`ConfigurationError` if no key opens it."""
    try:
        return _instance().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ConfigurationError("a stored secret does not open with the instance key") from None


def reencrypt(token: str) -> str | None:
    """``token``'s plaintext encrypted with the first instance key, or None if the
    first key already opens ``token``; :class:`ConfigurationError` if no key does."""
    keys = _configured_keys()
    try:
        _fernet(keys[:1]).decrypt(token.encode())
    except InvalidToken:
        pass
    else:
        return None
    try:
        return _fernet(keys).rotate(token.encode()).decode()
    except InvalidToken:
        raise ConfigurationError("a stored secret does not open with the instance key") from None


def keyed_hash(purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` under a key derived for ``purpose`` from the first
    instance key: what is stored."""
    return _keyed_hash(_configured_keys()[0], purpose, value)


def keyed_hashes(purpose: str, value: str) -> list[str]:
    """:func:`keyed_hash` of ``value`` under each instance key, the first key's
    first: what a stored hash may be, during a rotation."""
    return [_keyed_hash(key, purpose, value) for key in _configured_keys()]


def _keyed_hash(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(_subkey(key, purpose), value.encode(), "sha256").hexdigest()


@lru_cache(maxsize=16)
def _subkey(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()
