"""What the account and admin routes share: whose resources a list shows, and
the keyset pages of logs (by ``before_id``) and of a user's short lists.

Logs (login history, notifications, request logs, audit entries) are paged by
the store (:mod:`pfd_db.store.paging`): the cursor is the last row's id. A
user's keys, webhooks and sessions are a handful each: the store returns them
all, and the page is cut here by the same kind of cursor, the last item's id,
so a page never shifts when rows are added or removed meanwhile.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Query

from pfd_db.api.access import Caller
from pfd_db.api.paging import BadCursor, Page, decode_cursor, encode_cursor
from pfd_db.api.problems import ApiProblem
from pfd_db.errors import InvalidInput
from pfd_db.values import INT64_MAX

T = TypeVar("T")

UserParam = Annotated[
    int | None,
    Query(
        ge=1,
        le=INT64_MAX,
        description=(
            "Admins only: the id of the user whose resources to list "
            "(default: yours; 404 for no such user)."
        ),
    ),
]


class HasId(Protocol):
    """A row with an integer id."""

    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=HasId)
_FIRST_WORD = re.compile(r"[a-z_]+")


def subject(caller: Caller, user: int | None) -> int:
    """The id of the user whose resources the caller lists: their own, or with
    ``?user=`` another's, for an admin only (403 otherwise)."""
    if user is None or user == caller.user_id:
        return caller.user_id
    if not caller.is_admin:
        raise ApiProblem(403, "only an admin may list another user's resources", title="Forbidden")
    return user


def before_id(cursor: str | None) -> int | None:
    """The row id a log page's cursor holds (None for the first page)."""
    if cursor is None:
        return None
    value = decode_cursor(cursor)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= INT64_MAX:
        raise BadCursor("cursor: not a cursor of this list")
    return value


def log_page(rows: Sequence[R], limit: int, item: Callable[[R], T]) -> Page[T]:
    """A page of a store log page (newest first): a full page has a next cursor,
    its last row's id (the page after may be empty)."""
    cursor = encode_cursor(rows[-1].id) if rows and len(rows) >= limit else None
    return Page[Any](items=[item(row) for row in rows], next_cursor=cursor)


def short_list_page(
    rows: Sequence[R],
    cursor: str | None,
    limit: int,
    item: Callable[[R], T],
    *,
    newest_first: bool,
) -> Page[T]:
    """A page of a whole list ordered by id (``newest_first``: descending): the
    rows after the cursor's id, at most ``limit``."""
    after = before_id(cursor)
    ordered = sorted(rows, key=lambda row: row.id, reverse=newest_first)
    if after is not None:
        ordered = [row for row in ordered if (row.id < after if newest_first else row.id > after)]
    page = ordered[:limit]
    more = len(ordered) > limit
    return Page[Any](
        items=[item(row) for row in page],
        next_cursor=encode_cursor(page[-1].id) if more else None,
    )


@contextmanager
def naming(*fields: str) -> Iterator[None]:
    """Name the field of an :class:`InvalidInput` raised inside whose message
    starts with one of ``fields`` without the ``field:`` form the problem
    document reads (``"username must be ..."``): the 422 then names it too."""
    try:
        yield
    except InvalidInput as exc:
        word = _FIRST_WORD.match(str(exc))
        if getattr(exc, "field", None) is None and word is not None and word[0] in fields:
            exc.field = word[0]  # type: ignore[attr-defined]
        raise
