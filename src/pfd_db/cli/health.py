"""The instance key's part in a database's health: is a key configured and usable,
and does it open the two-factor data stored (``status`` and ``check``); where ``init``
creates it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine


@dataclass(frozen=True)
class KeyHealth:
    """Whether an instance key is configured, where from, and whether it works."""

    configured: bool
    usable: bool
    source: str | None
    problem: str | None

    def describe(self) -> str:
        if self.usable:
            return f"usable ({self.source})"
        return f"not usable: {self.problem}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TwoFactorHealth:
    """The two-factor data stored, and whether the instance key opens it."""

    totp_secrets: int
    backup_codes: int
    unreadable_totp_secrets: int
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def key_source() -> str | None:
    """Where the instance key comes from under the current settings, or None."""
    from pfd_db.config import get_settings
    from pfd_db.crypto import key_file_path

    settings = get_settings()
    if settings.secret_key is not None:
        return "PFD_DB_SECRET_KEY"
    if settings.secret_key_file is not None:
        return f"PFD_DB_SECRET_KEY_FILE {settings.secret_key_file}"
    path = key_file_path()
    return f"key file {path}" if path is not None and path.exists() else None


def key_health() -> KeyHealth:
    """Whether the configured instance key encrypts and decrypts."""
    from pfd_db.crypto import decrypt, encrypt
    from pfd_db.errors import PfdDbError

    source = key_source()
    try:
        usable = decrypt(encrypt("pfd-db health probe")) == "pfd-db health probe"
    except (PfdDbError, OSError) as exc:
        return KeyHealth(source is not None, False, source, str(exc))
    return KeyHealth(True, usable, source, None if usable else "it does not decrypt")


def two_factor_health(engine: Engine) -> TwoFactorHealth:
    """The stored two-factor data and whether the instance key opens every TOTP
    secret (backup codes are keyed hashes: without a key none can be checked)."""
    from sqlalchemy import func, select

    from pfd_db.crypto import decrypt
    from pfd_db.errors import PfdDbError
    from pfd_db.models import BackupCode, User

    with engine.connect() as conn:
        secrets = list(conn.scalars(select(User.totp_secret).where(User.totp_secret.is_not(None))))
        codes = conn.scalar(select(func.count()).select_from(BackupCode)) or 0
    unreadable = 0
    for secret in secrets:
        try:
            decrypt(str(secret))
        except PfdDbError:
            unreadable += 1
    problem = None
    if unreadable:
        problem = (
            f"{unreadable} of {len(secrets)} TOTP secrets do not open with the instance key: "
            "configure the key they were encrypted with (PFD_DB_SECRET_KEY, several "
            "comma-separated while rotating)"
        )
    elif codes and not key_health().usable:
        problem = (
            f"{codes} backup codes are stored but no instance key is usable: "
            "set PFD_DB_SECRET_KEY or PFD_DB_SECRET_KEY_FILE"
        )
    return TwoFactorHealth(len(secrets), codes, unreadable, problem)


def check_key_file() -> None:
    """Refuse, before anything is written, a PFD_DB_SECRET_KEY_FILE that ``init``
    could neither read nor create."""
    from pfd_db.config import get_settings
    from pfd_db.errors import ConfigurationError

    settings = get_settings()
    path = settings.secret_key_file
    if settings.secret_key is not None or path is None:
        return
    if path.is_dir():
        raise ConfigurationError(f"PFD_DB_SECRET_KEY_FILE {path} is a directory, not a key file")
    if path.exists():
        return
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"PFD_DB_SECRET_KEY_FILE {path}: its folder {path.parent} does not exist; "
            "create it, or point the variable at another file"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"PFD_DB_SECRET_KEY_FILE {path}: its folder {path.parent} is not writable, "
            "so the key cannot be created there"
        )


def ensure_instance_key(*, quiet: bool = False) -> None:
    """Create the key file where it is configured (PFD_DB_SECRET_KEY_FILE, else beside
    a SQLite database) when it is missing and PFD_DB_SECRET_KEY is unset."""
    from pfd_db.cli.common import say, warn
    from pfd_db.config import get_settings
    from pfd_db.crypto import create_key_file, key_file_path

    if get_settings().secret_key is not None:
        return
    path = key_file_path()
    if path is None:
        warn(
            "no instance key configured; set PFD_DB_SECRET_KEY "
            "(2FA secrets and backup codes need it)"
        )
    elif create_key_file(path):
        say(f"instance key: created {path} (mode 0600); back it up with the database", quiet=quiet)
