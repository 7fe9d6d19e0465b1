"""The caller's own account (``/api/v1/me``): notifications and preferences.

A caller sees only their own notifications; an admin may list another user's
with ``?user=``. Changes (marking read, preferences) need a key with the write
scope, whatever the caller's role: they change nothing but the caller's account.
The caller's webhooks are :mod:`pfd_db.api.routes.account_webhooks`, their keys
and security page :mod:`pfd_db.api.routes.account_security`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from pfd_db.api.access import Caller, own_account_access, read_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.paging import DEFAULT_LIMIT, Cursor, Limit, Page
from pfd_db.api.routes.listing import UserParam, before_id, log_page, naming, subject
from pfd_db.api.schemas.account import (
    MarkedRead,
    Notification,
    Preference,
    PreferenceChange,
    Preferences,
    UnreadCount,
)
from pfd_db.api.schemas.common import PROBLEM_RESPONSES, problem_responses
from pfd_db.models.enums import NOTIFIABLE_EVENTS
from pfd_db.store.notify import inbox, notifications
from pfd_db.values import INT64_MAX

router = APIRouter(prefix="/api/v1/me", tags=["account"])

Reader = Annotated[Caller, Depends(read_access)]
Owner = Annotated[Caller, Depends(own_account_access)]
RowId = Annotated[int, Path(ge=1, le=INT64_MAX, description="a row's id")]
WITH_404 = PROBLEM_RESPONSES | problem_responses(404)
EventName = Annotated[
    str,
    Path(
        max_length=50,
        description="A notifiable event: " + ", ".join(e.value for e in NOTIFIABLE_EVENTS),
    ),
]


# --- notifications -------------------------------------------------------------------


@router.get("/notifications", response_model=Page[Notification], responses=WITH_404)
def list_notifications(
    request: Request,
    caller: Reader,
    user: UserParam = None,
    unread: Annotated[bool | None, Query(description="Only unread (true) or read (false).")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Notification]:
    """The caller's notifications (the e-mails events addressed to them), newest first."""
    with read_session(request) as session:
        rows = inbox.notifications(
            session, subject(caller, user), unread=unread, limit=limit, before_id=before_id(cursor)
        )
        return log_page(rows, limit, Notification.of)


@router.get("/notifications/unread-count", response_model=UnreadCount, responses=WITH_404)
def unread_count(request: Request, caller: Reader, user: UserParam = None) -> UnreadCount:
    """How many of the caller's notifications are unread."""
    with read_session(request) as session:
        return UnreadCount(unread=inbox.unread_count(session, subject(caller, user)))


@router.post("/notifications/read-all", response_model=MarkedRead, responses=PROBLEM_RESPONSES)
def mark_all_read(request: Request, caller: Owner) -> MarkedRead:
    """Mark every unread notification of the caller read; how many were."""
    with write_session(request) as session:
        return MarkedRead(marked=inbox.mark_all_read(session, caller.user_id))


@router.post(
    "/notifications/{notification_id}/read", response_model=Notification, responses=WITH_404
)
def mark_read(request: Request, caller: Owner, notification_id: RowId) -> Notification:
    """Mark one of the caller's notifications read (404 for another user's)."""
    with write_session(request) as session:
        return Notification.of(inbox.mark_read(session, caller.user_id, notification_id))


# --- preferences ---------------------------------------------------------------------


@router.get("/preferences", response_model=Preferences, responses=WITH_404)
def get_preferences(request: Request, caller: Reader, user: UserParam = None) -> Preferences:
    """The caller's notification preference for each event."""
    with read_session(request) as session:
        stored = notifications.preferences(session, subject(caller, user))
        return Preferences.of(list(stored.values()))


@router.patch("/preferences/{event_type}", response_model=Preference, responses=PROBLEM_RESPONSES)
def update_preference(
    request: Request, caller: Owner, event_type: EventName, body: PreferenceChange
) -> Preference:
    """Change the caller's preference for one event: only the fields given."""
    changes = body.model_dump(exclude_none=True)
    with write_session(request) as session, naming("event_type"):
        row = notifications.set_preference(session, caller.user_id, event_type, **changes)
        return Preference.model_validate(row)
