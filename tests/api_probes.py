"""A probe router for the server core's tests: routes under ``/api/v1/_probe`` that
exercise the core alone (one per access level, a JSON body, a raw body, a paged
list, one that raises a chosen error), on a real app over the real database.

No ``from __future__ import annotations`` here: FastAPI reads these routes'
annotations at run time.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import Engine, select

from pfd_db import errors
from pfd_db.api.access import Caller, admin_access, read_access, write_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.paging import Cursor, Limit, Page, decode_cursor, encode_cursor
from pfd_db.api.schemas.common import PROBLEM_RESPONSES, ApiModel
from pfd_db.models import User

router = APIRouter(prefix="/api/v1/_probe", tags=["probe"], responses=PROBLEM_RESPONSES)


class Sample(ApiModel):
    value: float
    note: str = ""
    extra: dict[str, Any] | None = None


class Named(ApiModel):
    id: int
    username: str


RAISING: dict[str, Exception] = {
    "invalid-input": errors.InvalidInput("name: must not be empty"),
    "invalid-query": errors.InvalidQuery("unexpected token", 4),
    "invalid-transition": errors.InvalidTransition("cannot go from finished to running"),
    "not-found": errors.NotFound("no experiment 42"),
    "conflict": errors.Conflict("name 'x' is taken"),
    "authentication-failed": errors.AuthenticationFailed("wrong password"),
    "rate-limited": errors.RateLimited(),
    "permission-denied": errors.PermissionDenied("admins only"),
    "database-unavailable": errors.DatabaseUnavailable("the database went away"),
    "unexpected": RuntimeError("SELECT secret FROM hidden -- a bug"),
}


@router.get("/read")
def read(request: Request, caller: Annotated[Caller, Depends(read_access)]) -> dict[str, Any]:
    with read_session(request) as session:
        name = session.scalar(select(User.username).where(User.id == caller.user_id))
    return {"username": name, "admin": caller.is_admin}


@router.post("/write")
def write(
    request: Request, sample: Sample, caller: Annotated[Caller, Depends(write_access)]
) -> dict[str, Any]:
    with write_session(request) as session:
        session.execute(select(1))
    return {"value": sample.value, "note": sample.note}


@router.get("/admin")
def admin(caller: Annotated[Caller, Depends(admin_access)]) -> dict[str, Any]:
    return {"admin": caller.username}


@router.post("/raw")
async def raw(request: Request, caller: Annotated[Caller, Depends(read_access)]) -> int:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return size


@router.get("/users")
def users(
    request: Request,
    caller: Annotated[Caller, Depends(read_access)],
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[Named]:
    after = decode_cursor(cursor) if cursor is not None else 0
    if not isinstance(after, int):
        raise errors.InvalidInput("cursor: not a cursor this server made")
    with read_session(request) as session:
        rows = session.scalars(
            select(User).where(User.id > after).order_by(User.id).limit(limit + 1)
        ).all()
    items = [Named.model_validate(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page[Named](items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


@router.get("/raise/{kind}")
def raise_error(kind: str, caller: Annotated[Caller, Depends(read_access)]) -> None:
    raise RAISING[kind]


def probe_app(engine: Engine) -> Any:
    """``create_app(engine=engine)`` with the probe router added."""
    from pfd_db.api import create_app

    app = create_app(engine=engine)
    app.include_router(router)
    return app


@router.get("/whoami")
async def whoami(request: Request, caller: Annotated[Caller, Depends(read_access)]) -> str | None:
    return request.client.host if request.client else None
