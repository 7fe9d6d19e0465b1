"""Keyset paging of list routes: ``limit``, an opaque ``cursor`` and ``Page[T]``.

A cursor is URL-safe base64 (unpadded) of a JSON value the route chooses (the
last row's sort key); a client only passes it back. A cursor that does not
decode is a 422 problem naming ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import Field

from pfd_db.api.schemas.common import ApiModel
from pfd_db.errors import InvalidInput

T = TypeVar("T")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
CURSOR_MAX = 2000

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1 to 1000; default 100).")
]
Cursor = Annotated[
    str | None,
    Query(max_length=CURSOR_MAX, description="The next_cursor of the previous page."),
]


class Page(ApiModel, Generic[T]):
    """One page of a list: its items, and the cursor of the next page (None: the last)."""

    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class BadCursor(InvalidInput):
    """A cursor that this server did not make (the problem names ``cursor``)."""

    field = "cursor"


def encode_cursor(value: Any) -> str:
    """The opaque cursor for ``value`` (any JSON value)."""
    raw = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Any:
    """The value ``text`` was made from; :class:`InvalidInput` (field ``cursor``) if none."""
    if not isinstance(text, str) or len(text) > CURSOR_MAX:
        raise BadCursor("cursor: not a cursor this server made")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return json.loads(raw, parse_constant=_refuse_constant)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("cursor: not a cursor this server made") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)
