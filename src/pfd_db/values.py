"""The values pfd-db stores, one set of rules for SQLite and PostgreSQL alike.

Where the two databases differ, the stricter one sets the rule, so that a value
refused on one is refused on both (and before anything is written):

- **text**: a ``str`` without NUL characters and without lone surrogates
  (PostgreSQL cannot store either: the first is refused by its text types, the
  second cannot be encoded as UTF-8), at most the column's length;
- **whole numbers**: an ``int`` (not a ``bool``) in the column's range,
  PostgreSQL's: ``INTEGER`` from -2**31 to 2**31-1, ``BIGINT`` from -2**63 to
  2**63-1 (SQLite would take more);
- **real numbers**: finite (no NaN, no infinity, which neither JSON nor the
  search can compare);
- **JSON documents**: dicts with ``str`` keys, lists (or tuples), ``str``,
  ``int``, finite ``float``, ``bool`` and ``None``, nested at most
  :data:`MAX_JSON_DEPTH` levels, every key and string following the text rule.

Each check raises :class:`~pfd_db.errors.InvalidInput` naming the field (and,
inside a document, the path to the bad value). The store's argument checks
(:mod:`pfd_db.store.validation`) and the last check before every ORM flush
(:mod:`pfd_db.models.column_values`) both use them.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Mapping
from typing import Any

from pfd_db.errors import InvalidInput

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 3, 60, 60, 60

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 100


def shown(value: object) -> str:
    """``value`` for a message: its repr, shortened, however long or deep it is."""
    return _SHOWN.repr(value)


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None if it can."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains {text[exc.start]!r} at position {exc.start}, which is not valid Unicode"
    return None


def check_text(value: object, field: str, max_length: int | None = None) -> str:
    """``value`` if it is a string that can be stored, of at most ``max_length``
    characters (when given)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string (got {type(value).__name__})")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{field} {problem}")
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters (got {len(value)})")
    return value


def check_whole(
    value: object, field: str, minimum: int = INT32_MIN, maximum: int = INT32_MAX
) -> int:
    """``value`` as an int, if it is a whole number (not a bool) from ``minimum``
    to ``maximum``."""
    number = value if type(value) is int else _integral(value)  # the hot path skips the ABC
    if number is not None and minimum <= number <= maximum:
        return number
    raise InvalidInput(
        f"{field} must be a whole number from {minimum} to {maximum} (got {shown(value)})"
    )


def _integral(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def check_real(value: object, field: str) -> float:
    """``value`` as a float, if it is a finite real number (not a bool)."""
    if type(value) is float and math.isfinite(value):  # the hot path of bulk inserts
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"{field} must be a finite number (got {type(value).__name__})")
    try:
        number = float(value)
    except (OverflowError, ValueError):  # an int or fraction beyond float's range
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInput(f"{field} must be a finite number (got {shown(value)})")
    return number


def check_flag(value: object, field: str) -> bool:
    """``value`` if it is a bool (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{field} must be True or False (got {shown(value)})")
    return value


def check_document(value: object, field: str) -> Any:
    """``value`` if it is a JSON document both databases store and read back
    as given (see the module doc); the first bad part is named by its path,
    e.g. ``config['layers'][2]``."""
    pending: list[tuple[object, str, int]] = [(value, field, 0)]
    while pending:
        item, path, depth = pending.pop()
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, str):
            check_text(item, path)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(f"{path} must be a finite number (got {shown(item)})")
        elif isinstance(item, Mapping | list | tuple):
            if depth >= MAX_JSON_DEPTH:
                raise InvalidInput(f"{field} is nested deeper than {MAX_JSON_DEPTH} levels")
            pending.extend(_children(item, path, depth + 1))
        else:
            raise InvalidInput(
                f"{path} is a {type(item).__name__}, which a JSON document cannot hold"
            )
    return value


def _children(
    container: Mapping[Any, Any] | list[Any] | tuple[Any, ...], path: str, depth: int
) -> list[tuple[object, str, int]]:
    if not isinstance(container, Mapping):
        return [(item, f"{path}[{index}]", depth) for index, item in enumerate(container)]
    children: list[tuple[object, str, int]] = []
    for key, item in container.items():
        if not isinstance(key, str):
            raise InvalidInput(f"{path} has the key {shown(key)}: JSON object keys must be strings")
        check_text(key, f"{path} key {shown(key)}")
        children.append((item, f"{path}[{shown(key)}]", depth))
    return children
