"""Checks on values given to the store, each raising InvalidInput naming the field."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any, TypeVar

from pfd_db.errors import InvalidInput, InvalidTransition
from pfd_db.values import (
    INT32_MAX,
    check_document,
    check_flag,
    check_real,
    check_text,
    check_whole,
    shown,
)

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
E = TypeVar("E", bound=Enum)
T = TypeVar("T")


def require_text(value: object, field: str, max_length: int) -> str:
    """``value`` stripped, or InvalidInput if it is not a non-empty string of at most
    ``max_length`` characters that can be stored (see :mod:`pfd_db.values`)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field} must be a non-empty string")
    return check_text(value.strip(), field, max_length)


def require_str(value: object, field: str, max_length: int | None = None) -> str:
    """``value`` as given (empty allowed), if it is a string that can be stored or
    looked up: no NUL, no lone surrogate, at most ``max_length`` characters when
    given. For names to look up, passwords, codes: text taken verbatim."""
    return check_text(value, field, max_length)


def optional_str(value: object, field: str, max_length: int | None = None) -> str | None:
    """None, or ``value`` checked as :func:`require_str`."""
    return None if value is None else check_text(value, field, max_length)


def require_object(value: object, field: str) -> dict[str, Any]:
    """``value`` (a shallow copy) if it is a JSON object: a dict with string keys
    whose whole document can be stored (finite numbers, storable text, plain
    JSON types; see :mod:`pfd_db.values`)."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInput(f"{field} must be a JSON object (a dict with string keys)")
    check_document(value, field)
    return dict(value)


def require_json(value: object, field: str) -> Any:
    """``value`` if it is a JSON document that can be stored (any JSON value:
    object, list, string, number, bool or None; see :mod:`pfd_db.values`)."""
    return check_document(value, field)


def require_flag(value: object, field: str) -> bool:
    """``value`` if it is a bool (not 0/1, not a string)."""
    return check_flag(value, field)


def require_items(values: object, field: str) -> list[Any]:
    """``values`` as a list, if it is a list, tuple or other iterable of items (not
    a string, bytes or a mapping, which would iterate as characters or keys)."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidInput(f"{field} must be a list (got {type(values).__name__})")
    return list(values)


def require_identifiers(values: object, field: str) -> list[str]:
    """``values`` as a list, if it is a non-empty list of distinct lowercase identifiers
    (``^[a-z][a-z0-9_]*$``, at most 50 characters)."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInput(f"{field} must be a list of names")
    items = list(values)
    if not items:
        raise InvalidInput(f"{field} must not be empty")
    bad = [v for v in items if not isinstance(v, str) or not IDENTIFIER.match(v)]
    if bad:
        raise InvalidInput(
            f"{field} has malformed names {shown(bad[:5])} (expected e.g. 'oil_whirl')"
        )
    if len(set(items)) != len(items):
        raise InvalidInput(f"{field} has duplicates")
    return items


def require_member(value: object, enum: type[E], field: str) -> E:
    """``value`` as a member of ``enum`` (a member or its string value)."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)
        raise InvalidInput(f"{field} must be one of {allowed} (got {shown(value)})") from None


def check_transition(what: str, current: E, new: E, allowed: Mapping[E, frozenset[E]]) -> None:
    """Raise InvalidTransition unless ``allowed`` lets ``what`` go from ``current`` to ``new``."""
    if new not in allowed.get(current, frozenset()):
        raise InvalidTransition(f"{what} cannot go from {current.value} to {new.value}")


def optional_text(value: object, field: str, max_length: int) -> str | None:
    """None, or ``value`` checked as :func:`require_text`."""
    return None if value is None else require_text(value, field, max_length)


def optional_object(value: object, field: str) -> dict[str, Any] | None:
    """None, or ``value`` checked as :func:`require_object`."""
    return None if value is None else require_object(value, field)


def require_finite(value: object, field: str) -> float:
    """``value`` as a float, if it is a finite real number (not a bool)."""
    return check_real(value, field)


def optional_finite(value: object, field: str) -> float | None:
    """None, or ``value`` checked as :func:`require_finite`."""
    return None if value is None else require_finite(value, field)


def require_non_negative(value: object, field: str) -> float:
    """``value`` checked as :func:`require_finite`, and at least 0."""
    number = require_finite(value, field)
    if number < 0:
        raise InvalidInput(f"{field} must be at least 0 (got {number})")
    return number


def require_count(value: object, field: str, minimum: int = 0, maximum: int = INT32_MAX) -> int:
    """``value`` if it is a whole number (not a bool) from ``minimum`` to ``maximum``
    (by default the range of an integer column; pass
    :data:`pfd_db.values.INT64_MAX` for a big-integer one)."""
    return check_whole(value, field, minimum, maximum)


def each_row(rows: object, check: Callable[[object], T]) -> list[T]:
    """``check`` applied to every item of the list ``rows``; its InvalidInput names the row."""
    checked: list[T] = []
    for index, row in enumerate(require_items(rows, "rows")):
        try:
            checked.append(check(row))
        except InvalidInput as exc:
            raise InvalidInput(f"row {index}: {exc}") from None
    return checked


def require_row(
    row: object, keys: frozenset[str], required: frozenset[str] = frozenset()
) -> Mapping[str, Any]:
    """``row`` if it is a mapping whose keys are among ``keys`` and include ``required``."""
    if not isinstance(row, Mapping):
        raise InvalidInput(
            f"must be a mapping of column names to values (got {type(row).__name__})"
        )
    if not keys.issuperset(row):
        unknown = sorted(str(key) for key in set(row) - keys)
        raise InvalidInput(f"unknown fields {unknown} (expected some of {sorted(keys)})")
    missing = sorted(required - set(row))
    if missing:
        raise InvalidInput(f"missing fields {missing}")
    return row
