"""Checks on values given to the store, each raising InvalidInput naming the field."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, TypeVar

from pfd_db.errors import InvalidInput, InvalidTransition

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
E = TypeVar("E", bound=Enum)


def require_text(value: object, field: str, max_length: int) -> str:
    """``value`` stripped, or InvalidInput if it is not a non-empty string of at most
    ``max_length`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field} must be a non-empty string")
    text = value.strip()
    if len(text) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters (got {len(text)})")
    return text


def require_object(value: object, field: str) -> dict[str, Any]:
    """``value`` if it is a JSON object (a dict with string keys)."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInput(f"{field} must be a JSON object (a dict with string keys)")
    return dict(value)


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
        raise InvalidInput(f"{field} has malformed names {bad[:5]!r} (expected e.g. 'oil_whirl')")
    if len(set(items)) != len(items):
        raise InvalidInput(f"{field} has duplicates")
    return items


def require_member(value: object, enum: type[E], field: str) -> E:
    """``value`` as a member of ``enum`` (a member or its string value)."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)
        raise InvalidInput(f"{field} must be one of {allowed} (got {value!r})") from None


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
    if type(value) is float and math.isfinite(value):  # the hot path of bulk inserts
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidInput(f"{field} must be a finite number (got {value!r})")
    return float(value)


def optional_finite(value: object, field: str) -> float | None:
    """None, or ``value`` checked as :func:`require_finite`."""
    return None if value is None else require_finite(value, field)


def require_count(value: object, field: str, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` if it is a whole number (not a bool) from ``minimum`` to ``maximum``."""
    number = value if type(value) is int else _integral(value)  # the hot path skips the ABC
    if number is not None and minimum <= number and (maximum is None or number <= maximum):
        return number
    bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    raise InvalidInput(f"{field} must be a whole number {bounds} (got {value!r})")


def _integral(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)
