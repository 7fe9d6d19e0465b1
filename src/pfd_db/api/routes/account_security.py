"""The caller's API keys and security page (``/api/v1/me/api-keys``, ``/api/v1/me/security``).

Keys are listed masked (their public prefix); an issued key is in the 201
response once and stored only as a hash. A key may issue keys with at most its
own scopes (a write key cannot mint an admin key). The security page lists the
caller's login attempts (newest first, keyset pages) and live sessions, and logs
out one of them. Another user's key or session is answered as unknown (404); an
admin may list another user's with ``?user=``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from pfd_db.api.access import SCOPE_LEVELS, Caller, own_account_access, read_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.paging import DEFAULT_LIMIT, Cursor, Limit, Page
from pfd_db.api.problems import ApiProblem
from pfd_db.api.routes.listing import (
    UserParam,
    before_id,
    log_page,
    naming,
    short_list_page,
    subject,
)
from pfd_db.api.schemas.account import (
    ActiveSession,
    ApiKey,
    ApiKeyCreate,
    ApiKeyIssued,
    Login,
    SessionRevoked,
)
from pfd_db.api.schemas.common import PROBLEM_RESPONSES, problem_responses
from pfd_db.errors import NotFound
from pfd_db.models import APIKey
from pfd_db.store.identity import api_keys, logins, sessions
from pfd_db.values import INT64_MAX

router = APIRouter(prefix="/api/v1/me", tags=["account"])

Reader = Annotated[Caller, Depends(read_access)]
Owner = Annotated[Caller, Depends(own_account_access)]
RowId = Annotated[int, Path(ge=1, le=INT64_MAX, description="a row's id")]
WITH_404 = PROBLEM_RESPONSES | problem_responses(404)


# --- API keys ------------------------------------------------------------------------


@router.get("/api-keys", response_model=Page[ApiKey], responses=WITH_404)
def list_api_keys(
    request: Request,
    caller: Reader,
    user: UserParam = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ApiKey]:
    """The caller's keys, revoked ones included, newest first; prefixes only."""
    with read_session(request) as session:
        keys = api_keys.list_keys(session, subject(caller, user))
        return short_list_page(keys, cursor, limit, ApiKey.of, newest_first=True)


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyIssued,
    responses=PROBLEM_RESPONSES,
)
def issue_api_key(request: Request, caller: Owner, body: ApiKeyCreate) -> ApiKeyIssued:
    """Issue the caller a key: the key is in this response only, never again."""
    held = max(SCOPE_LEVELS.get(scope, 0) for scope in caller.scopes)
    wider = [scope for scope in body.scopes if SCOPE_LEVELS[scope] > held]
    if wider:
        raise ApiProblem(
            403, f"this key may not issue a key with the scopes {wider}", title="Forbidden"
        )
    with write_session(request) as session, naming("name", "expires_at"):
        plaintext, record = api_keys.issue(
            session,
            caller.user_id,
            body.name,
            body.scopes,
            expires_at=body.expires_at,
            rate_limit=body.rate_limit,
        )
        return ApiKeyIssued.made(record, plaintext)


@router.delete("/api-keys/{key_id}", response_model=ApiKey, responses=WITH_404)
def revoke_api_key(request: Request, caller: Owner, key_id: RowId) -> ApiKey:
    """Revoke one of the caller's keys for good (revoking twice changes nothing)."""
    with write_session(request) as session:
        found = session.get(APIKey, key_id)
        if found is None or found.user_id != caller.user_id:
            raise NotFound(f"no API key with id {key_id} for this user")
        return ApiKey.of(api_keys.revoke(session, found))


# --- security ------------------------------------------------------------------------


@router.get("/security/logins", response_model=Page[Login], responses=WITH_404)
def login_history(
    request: Request,
    caller: Reader,
    user: UserParam = None,
    success: Annotated[
        bool | None, Query(description="Only successful (true) or failed (false) attempts.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Login]:
    """The login attempts on the caller's account, newest first."""
    with read_session(request) as session:
        rows = logins.history(
            session,
            subject(caller, user),
            success=success,
            limit=limit,
            before_id=before_id(cursor),
        )
        return log_page(rows, limit, Login.of)


@router.get("/security/sessions", response_model=Page[ActiveSession], responses=WITH_404)
def active_sessions(
    request: Request,
    caller: Reader,
    user: UserParam = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ActiveSession]:
    """The devices the caller is logged in on, newest first (never their tokens)."""
    with read_session(request) as session:
        rows = sessions.list_active(session, subject(caller, user))
        return short_list_page(rows, cursor, limit, ActiveSession.of, newest_first=True)


@router.delete("/security/sessions/{session_id}", response_model=SessionRevoked, responses=WITH_404)
def revoke_session(request: Request, caller: Owner, session_id: RowId) -> SessionRevoked:
    """Log out one of the caller's devices (``revoked`` is false if it had ended already)."""
    with write_session(request) as session:
        return SessionRevoked(revoked=sessions.revoke(session, caller.user_id, session_id))
