"""The hourly rate limit of API keys: one atomic UPDATE per request.

Each key holds a fixed window (``rate_window_start``, ``rate_window_count``,
revision 0009). :func:`consume` counts one request with a single
``UPDATE api_keys ... WHERE id = :id AND <the key is usable> RETURNING ...``:
a window an hour old or more starts again at ``now`` with a count of 1,
otherwise the count grows by one. The database serialises concurrent updates
of the row (PostgreSQL re-reads the row a concurrent writer changed; SQLite
has one writer), so however many server processes count, each request gets a
distinct count, and the state survives restarts. No COUNT over ``api_usage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Update, and_, bindparam, case, exists, or_, select, update
from sqlalchemy.orm import Session

from pfd_db.models import APIKey, User
from pfd_db.store.writes import unread_id
from pfd_db.types import utc_or_now

RATE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Allowance:
    """Where a key stands after one request: its hourly ``limit``, the requests
    it may still make in this window (``remaining``), when the window ends
    (``reset_at``), and whether this request was within the limit."""

    limit: int
    remaining: int
    reset_at: datetime
    count: int

    @property
    def allowed(self) -> bool:
        """Whether the request just counted is within the limit."""
        return self.count <= self.limit

    def seconds_to_reset(self, now: datetime) -> int:
        """Whole seconds from ``now`` until the window ends (at least 1)."""
        return max(1, int((self.reset_at - now).total_seconds() + 0.999))


def consume(session: Session, key: APIKey | int, now: datetime | None = None) -> Allowance | None:
    """Count one request of ``key`` (an :class:`APIKey` or its id, not read
    first) at ``now`` and return its :class:`Allowance`; None (and nothing
    written) when the key is no longer usable: unknown, revoked, deactivated,
    expired, or its user deactivated (an id out of the ids' range is
    :class:`NotFound`, anything but a key or an id :class:`InvalidInput`, as for
    every store function that takes a record).

    One statement; it runs in the caller's transaction (commit it promptly:
    it holds the key's row lock on PostgreSQL and the write lock on SQLite).
    """
    key_id = unread_id(session, APIKey, key, "key")
    moment = utc_or_now(now)
    # Core on the session's connection: the ORM's bulk-update path would add a
    # third to the request's cost and has nothing to synchronise here.
    row = (
        session.connection()
        .execute(
            _consume_statement(), {"key_id": key_id, "now": moment, "cutoff": moment - RATE_WINDOW}
        )
        .one_or_none()
    )
    if row is None:
        return None
    limit, start, count = row
    return Allowance(
        limit=limit, remaining=max(0, limit - count), reset_at=start + RATE_WINDOW, count=count
    )


@cache
def _consume_statement() -> Update:
    now = bindparam("now", type_=APIKey.rate_window_start.type)
    cutoff = bindparam("cutoff", type_=APIKey.rate_window_start.type)
    new_window = or_(APIKey.rate_window_start.is_(None), APIKey.rate_window_start <= cutoff)
    usable_user = exists(select(User.id).where(User.id == APIKey.user_id, User.is_active.is_(True)))
    values: dict[Any, Any] = {
        APIKey.rate_window_start: case((new_window, now), else_=APIKey.rate_window_start),
        APIKey.rate_window_count: case((new_window, 1), else_=APIKey.rate_window_count + 1),
    }
    return (
        update(APIKey)
        .where(
            and_(
                APIKey.id == bindparam("key_id"),
                APIKey.revoked_at.is_(None),
                APIKey.is_active.is_(True),
                or_(APIKey.expires_at.is_(None), APIKey.expires_at > now),
                usable_user,
            )
        )
        .values(values)
        .returning(APIKey.rate_limit, APIKey.rate_window_start, APIKey.rate_window_count)
    )
