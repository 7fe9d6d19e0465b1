"""Admin routes (``/api/v1/admin``): users and the audit log.

Every route needs a key with the admin scope whose owner is an admin or super
admin (:func:`pfd_db.api.access.admin_access`). An admin gives no role above
their own and changes or deactivates no one above them (only a super admin
makes or manages a super admin). The traffic routes are
:mod:`pfd_db.api.routes.admin_traffic`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from pfd_db.api.access import Caller, admin_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.paging import DEFAULT_LIMIT, Cursor, Limit, Page
from pfd_db.api.problems import ApiProblem
from pfd_db.api.routes.listing import before_id, log_page, naming, short_list_page
from pfd_db.api.schemas.admin import AuditEntry, RoleChange, UserCreate, UserCreated, UserOut
from pfd_db.api.schemas.common import PROBLEM_RESPONSES, problem_responses
from pfd_db.models import User
from pfd_db.models.enums import LogStatus, Role
from pfd_db.passwords import generate_password
from pfd_db.store.identity import users
from pfd_db.store.ops import audit
from pfd_db.store.writes import load
from pfd_db.values import INT64_MAX

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Admin = Annotated[Caller, Depends(admin_access)]
RowId = Annotated[int, Path(ge=1, le=INT64_MAX, description="a row's id")]
WITH_404 = PROBLEM_RESPONSES | problem_responses(404)
USER_FIELDS = ("username", "email", "password", "role")


def _above(caller: Caller, role: Role | str) -> bool:
    """Whether ``role`` is above the caller's own."""
    return Role(role).level > Role(caller.role).level


def _manageable(session: Session, caller: Caller, user_id: int) -> User:
    """The user ``user_id`` if the caller may change them (403 for one above the caller)."""
    found = load(session, User, user_id, "user_id")
    if _above(caller, found.role):
        raise ApiProblem(403, f"only a {found.role.value} may change this user", title="Forbidden")
    return found


def _may_grant(caller: Caller, role: Role) -> None:
    if _above(caller, role):
        raise ApiProblem(
            403, f"an {caller.role} may not give the role {role.value}", title="Forbidden"
        )


# --- users ---------------------------------------------------------------------------


@router.get("/users", response_model=Page[UserOut], responses=PROBLEM_RESPONSES)
def list_users(
    request: Request,
    caller: Admin,
    active: Annotated[bool | None, Query(description="Only active (true) or inactive.")] = None,
    role: Annotated[Role | None, Query(description="Only users with this role.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[UserOut]:
    """Every user, oldest account first: a keyset page by id (the primary key's range)."""
    after = before_id(cursor) or 0
    query = select(User).where(User.id > after).order_by(User.id).limit(limit + 1)
    if active is not None:
        query = query.where(User.is_active.is_(active))
    if role is not None:
        query = query.where(User.role == role)
    with read_session(request) as session:
        found = list(session.scalars(query))
        return short_list_page(found, None, limit, UserOut.of, newest_first=False)


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserCreated,
    responses=PROBLEM_RESPONSES | problem_responses(409),
)
def create_user(request: Request, caller: Admin, body: UserCreate) -> UserCreated:
    """Create a user; without a password one is generated, in this response only."""
    _may_grant(caller, body.role)
    generated = generate_password() if body.password is None else None
    password = generated or body.password or ""
    with write_session(request) as session, naming(*USER_FIELDS):
        user = users.create_user(session, body.username, body.email, password, body.role)
        return UserCreated.made(user, generated)


@router.get("/users/{user_id}", response_model=UserOut, responses=WITH_404)
def get_user(request: Request, caller: Admin, user_id: RowId) -> UserOut:
    """One user."""
    with read_session(request) as session:
        return UserOut.of(load(session, User, user_id, "user_id"))


@router.put("/users/{user_id}/role", response_model=UserOut, responses=WITH_404)
def change_role(request: Request, caller: Admin, user_id: RowId, body: RoleChange) -> UserOut:
    """Give a user another role (audited when it changes)."""
    _may_grant(caller, body.role)
    if user_id == caller.user_id:
        raise ApiProblem(409, "an admin may not change their own role", slug="conflict")
    with write_session(request) as session:
        found = _manageable(session, caller, user_id)
        return UserOut.of(users.set_role(session, found, body.role))


@router.post("/users/{user_id}/deactivate", response_model=UserOut, responses=WITH_404)
def deactivate_user(request: Request, caller: Admin, user_id: RowId) -> UserOut:
    """Stop a user from logging in and end their sessions (again: no change)."""
    if user_id == caller.user_id:
        raise ApiProblem(409, "an admin may not deactivate their own account", slug="conflict")
    with write_session(request) as session:
        found = _manageable(session, caller, user_id)
        return UserOut.of(users.deactivate(session, found))


# --- audit ---------------------------------------------------------------------------


@router.get("/audit", response_model=Page[AuditEntry], responses=WITH_404)
def audit_entries(
    request: Request,
    caller: Admin,
    since: Annotated[datetime | None, Query(description="From (inclusive), ISO 8601 UTC.")] = None,
    until: Annotated[datetime | None, Query(description="To (exclusive), ISO 8601 UTC.")] = None,
    actor: Annotated[
        int | None, Query(ge=1, le=INT64_MAX, description="The acting user's id.")
    ] = None,
    action: Annotated[
        str | None,
        Query(max_length=101, description="An action, or a prefix ending in '.' (user.)."),
    ] = None,
    status_: Annotated[LogStatus | None, Query(alias="status")] = None,
    text: Annotated[
        str | None, Query(max_length=200, description="In the action or details, any case.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[AuditEntry]:
    """Audit entries, newest first, filtered by time, actor, action (prefix), status, text."""
    with read_session(request) as session, naming("since", "until", "action", "text"):
        rows = audit.entries(
            session,
            since=since,
            until=until,
            actor=actor,
            action=action,
            status=status_,
            text=text,
            limit=limit,
            before_id=before_id(cursor),
        )
        return log_page(rows, limit, AuditEntry.model_validate)
