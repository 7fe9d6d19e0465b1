"""One LSTM_PFD row made into a pfd-db row: what ``import-legacy`` converts.

The legacy format is described in ``shared/legacy/README.md`` of the project
(and in ``docs/coming-from-lstm-pfd.md``). Every column of the pfd-db table is
filled from the legacy column of the same name:

- timestamps: naive, taken as UTC, except in ``api_keys`` and ``api_usage``,
  which the legacy server stamped in its own zone (``source_timezone``);
- enumerations and other constrained text: the legacy enum NAME (``'COMPLETED'``)
  or any spelling of a value becomes the value; an unknown one empties a
  nullable column and skips the row otherwise;
- a NULL where pfd-db needs a value takes the column's default;
- a login method pfd-db has no name for (``'saml'``) becomes ``'other'``, the
  source's name kept in ``login_method_detail``;
- secrets: bcrypt password hashes are kept (accepted once at login, then
  replaced with argon2id), TOTP secrets encrypted, session tokens hashed; API
  keys come in revoked with a fresh prefix and an unusable hash, and backup
  codes are dropped (bcrypt cannot be turned into pfd-db's keyed hash).

A conversion returns the row, or :class:`Skip` with the reason; the notes it
collects say what was changed (counted per table in the report).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import CheckConstraint, Column, Enum

from pfd_db import crypto
from pfd_db.config import get_settings
from pfd_db.models.enums import LoginMethod, Role
from pfd_db.passwords import LEGACY_BCRYPT_PREFIXES
from pfd_db.portability.rows import Kind, Layout, Row

LOCAL_TIME_TABLES = frozenset({"api_keys", "api_usage"})
"""Tables whose legacy timestamps are the legacy server's local time."""
LEGACY_KEY_NAME = "legacy: {name} (reissue)"
NAME_MAX = 100
DETAIL_MAX = 50  # login_history.login_method_detail
HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")  # what the CHECK on tags.color takes
_ONE_OF = re.compile(r"^\s*(\w+) IN \((.*)\)\s*$", re.DOTALL)


class Skip(Exception):
    """The row cannot be imported; the message says why."""


@dataclass(frozen=True)
class Context:
    """What every conversion needs to know."""

    source_timezone: tzinfo
    default_role: Role
    now: datetime


@dataclass
class Converted:
    """A converted row and the notes saying what was changed in it."""

    values: dict[str, Any]
    notes: list[str] = field(default_factory=list)


Hook = Callable[[dict[str, Any], Context, list[str]], None]


def convert(layout: Layout, raw: Mapping[str, Any], context: Context) -> Converted:
    """The pfd-db row for the legacy row ``raw`` of the same table; :class:`Skip`
    when it cannot be imported."""
    legacy = dict(raw)
    notes: list[str] = []
    hook = HOOKS.get(layout.table.name)
    if hook is not None:
        hook(legacy, context, notes)
    zone = context.source_timezone if layout.table.name in LOCAL_TIME_TABLES else UTC
    values = {}
    for column, kind in zip(layout.columns, layout.kinds, strict=True):
        value = _value(column, kind, legacy.get(column.name), zone, notes)
        if value is None and not column.nullable:
            value = _default(column)
            if value is None:
                raise Skip(f"{column.name} is missing")
            if column.name in legacy:  # a column pfd-db added takes its default silently
                notes.append(f"{column.name}: NULL -> default")
        values[column.name] = value
    if zone is not UTC and context.source_timezone.utcoffset(context.now) != timedelta(0):
        notes.append(f"times read as {context.source_timezone}")
    return Converted(values, notes)


def as_row(layout: Layout, converted: Converted) -> Row:
    return tuple(converted.values[name] for name in layout.names)


# --- columns -----------------------------------------------------------------------


def _value(column: Column[Any], kind: Kind, value: Any, zone: tzinfo, notes: list[str]) -> Any:
    if value is None:
        return None
    try:
        if kind is Kind.TIME:
            return utc_time(value, zone)
        if kind is Kind.BOOL:
            return _flag(value)
        if kind is Kind.JSON:
            return value if _is_json_text(value) else json.dumps(value)
        if kind is Kind.LIST:
            return _string_list(value)
    except (TypeError, ValueError):
        if column.nullable:
            notes.append(f"{column.name}: unreadable value emptied")
            return None
        raise Skip(f"{column.name}: unreadable value {str(value)[:40]!r}") from None
    allowed = allowed_values(column)
    if allowed is None:
        return value
    return _choice(column, value, allowed, notes)


def utc_time(value: Any, zone: tzinfo) -> datetime:
    """A legacy timestamp (a datetime, or text as SQLite keeps it) as aware UTC;
    a naive one is taken to be in ``zone``."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "t", "true", "yes", "y", "on"):
        return True
    if text in ("0", "f", "false", "no", "n", "off"):
        return False
    raise ValueError(value)


def _is_json_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    json.loads(value)  # ValueError if it is not JSON
    return True


def _string_list(value: Any) -> list[str]:
    items = json.loads(value) if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(value)
    return [str(item) for item in items]


def allowed_values(column: Column[Any]) -> frozenset[str] | None:
    """The values ``column`` may hold, when an enumeration or a ``col IN (...)``
    CHECK limits them; None otherwise."""
    if isinstance(column.type, Enum):
        return frozenset(column.type.enums)
    for constraint in column.table.constraints:
        if isinstance(constraint, CheckConstraint):
            found = _ONE_OF.match(str(constraint.sqltext))
            if found and found.group(1) == column.name:
                return frozenset(re.findall(r"'([^']*)'", found.group(2)))
    return None


def _choice(column: Column[Any], value: Any, allowed: frozenset[str], notes: list[str]) -> Any:
    if value in allowed:
        return value
    spelled = str(value).strip().lower()
    if spelled in allowed:
        notes.append(f"{column.name}: {value!r} -> {spelled!r}")
        return spelled
    if column.nullable:
        notes.append(f"{column.name}: unknown {value!r} emptied")
        return None
    raise Skip(f"{column.name}: {str(value)[:40]!r} is not one of {', '.join(sorted(allowed))}")


def _default(column: Column[Any]) -> Any:
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        value = default.arg  # type: ignore[attr-defined]
    elif default.is_callable:
        value = default.arg(None)  # type: ignore[attr-defined]
    else:
        return None
    return getattr(value, "value", value)


# --- tables ------------------------------------------------------------------------


def _users(row: dict[str, Any], context: Context, notes: list[str]) -> None:
    email = row.get("email")
    if isinstance(email, str) and email != email.lower():
        row["email"] = email.lower()
        notes.append("email lowercased")
    role = str(row.get("role") or "").strip().lower()
    if role not in {r.value for r in Role}:
        notes.append(f"role {role or 'NULL'!r} -> {context.default_role.value!r}")
        role = context.default_role.value
    row["role"] = role
    password_hash = row.get("password_hash")
    if not password_hash:
        notes.append("no password: must be reset")
    elif str(password_hash).startswith(LEGACY_BCRYPT_PREFIXES):
        notes.append("bcrypt password hash kept until the next login")
    if row.get("totp_secret"):
        row["totp_secret"] = crypto.encrypt(str(row["totp_secret"]))
        notes.append("TOTP secret encrypted")


def _session_logs(row: dict[str, Any], context: Context, notes: list[str]) -> None:
    row["session_token"] = crypto.sha256_hex(str(row["session_token"]))
    notes.append("token hashed")
    if row.get("expires_at") is None:
        last = row.get("last_active") or row.get("created_at")
        if last is not None:
            lifetime = timedelta(seconds=get_settings().session_ttl_seconds)
            row["expires_at"] = utc_time(last, UTC) + lifetime
            notes.append("expiry set to last activity + session lifetime")


def _api_keys(row: dict[str, Any], context: Context, notes: list[str]) -> None:
    name = str(row.get("name") or "key")
    room = NAME_MAX - len(LEGACY_KEY_NAME.format(name=""))
    row["name"] = LEGACY_KEY_NAME.format(name=name[:room])
    # A fresh public prefix and the hash of a secret nobody knows: it never verifies.
    row["prefix"] = secrets.token_hex(8)
    row["key_hash"] = crypto.sha256_hex(crypto.random_token(32))
    row["is_active"] = False
    row["revoked_at"] = context.now
    if row.get("created_at") is None:
        row["created_at"] = row.get("updated_at") or context.now
    if row.get("updated_at") is None:
        row["updated_at"] = row["created_at"]
    notes.append("revoked: legacy keys cannot be converted, to be reissued")


def _api_usage(row: dict[str, Any], context: Context, notes: list[str]) -> None:
    if row.get("timestamp") is None:
        raise Skip("timestamp is missing")
    row["created_at"] = row["updated_at"] = row["timestamp"]


def _backup_codes(row: dict[str, Any], context: Context, notes: list[str]) -> None:
    raise Skip("bcrypt backup codes cannot be converted: 2FA stays on, users make new codes")


def _login_history(row: dict[str, Any], context: Context, notes: list[str]) -> None:
    if row.get("success") is None:
        row["success"] = False
        notes.append("success unknown: recorded as a failure")
    method = row.get("login_method")
    if method is not None and login_method(method) is None:
        row["login_method"] = LoginMethod.OTHER.value
        row["login_method_detail"] = str(method)[:DETAIL_MAX]
        notes.append(f"login_method: {str(method)[:40]!r} kept as 'other' with its name")
    elif method is not None:
        row["login_method"] = login_method(method)


def login_method(value: object) -> str | None:
    """The pfd-db login method ``value`` names (its value in any case, or the enum
    NAME), or None."""
    spelled = str(value).strip()
    for method in LoginMethod:
        if spelled.lower() == method.value or spelled.upper() == method.name:
            return method.value
    return None


def _tags(row: dict[str, Any], context: Context, notes: list[str]) -> None:
    color = row.get("color")
    if color is not None and not HEX_COLOR.fullmatch(str(color)):
        row["color"] = None
        notes.append("color not #rrggbb: emptied")


def _jobs(row: dict[str, Any], context: Context, notes: list[str]) -> None:
    progress = row.get("progress")
    if isinstance(progress, int) and not 0 <= progress <= 100:
        row["progress"] = min(max(progress, 0), 100)
        notes.append("progress clamped to 0-100")


HOOKS: dict[str, Hook] = {
    "users": _users,
    "session_logs": _session_logs,
    "api_keys": _api_keys,
    "api_usage": _api_usage,
    "backup_codes": _backup_codes,
    "login_history": _login_history,
    "tags": _tags,
    "dataset_generations": _jobs,
    "dataset_imports": _jobs,
}
