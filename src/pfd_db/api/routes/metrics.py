"""``GET /metrics``: the Prometheus text of this process, for admins and scrapers.

An admin key may read it from anywhere; a client whose address (after the
trusted proxies) is among ``PFD_DB_SERVER_METRICS_ADDRESSES`` may read it with
no key. Everyone else gets the 401 or 403 problem of an admin route.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response

from pfd_db.api.access import Caller, Presented, unauthenticated
from pfd_db.api.auth_cache import AuthCache, digest_of
from pfd_db.api.metrics import CONTENT_TYPE, Metrics
from pfd_db.api.middleware import KEY_MAX_LENGTH, presented_key, verify_key
from pfd_db.api.problems import ApiProblem
from pfd_db.api.schemas.common import problem_responses
from pfd_db.errors import AuthenticationFailed
from pfd_db.models.enums import Role
from pfd_db.rbac import has_role

router = APIRouter(tags=["metrics"])


async def metrics_access(request: Request, _: Presented) -> Caller | None:
    """None for a configured scrape address; else the caller of an admin key (401/403
    otherwise). ``/metrics`` is outside ``/api/``, which the auth middleware covers,
    so the key is verified here, through the same cache."""
    metrics: Metrics = request.app.state.metrics
    if metrics.may_scrape(request.client.host if request.client else None):
        return None  # the client address is already the trusted proxies' word
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        caller = request.state.caller = await _verified_caller(request)
    if not caller.has_scope("admin"):
        raise ApiProblem(403, "this key lacks the 'admin' scope /metrics needs", title="Forbidden")
    if not has_role(caller.role, Role.ADMIN):
        raise ApiProblem(403, "/metrics needs the role admin or higher", title="Forbidden")
    return caller


async def _verified_caller(request: Request) -> Caller:
    key = presented_key(request.scope)
    if not key:
        raise unauthenticated("give an API key: Authorization: Bearer <key> or X-API-Key: <key>")
    cache: AuthCache = request.app.state.auth_cache
    digest = digest_of(key)
    caller = cache.get(digest)
    if caller is None:
        try:
            if len(key) > KEY_MAX_LENGTH:
                raise AuthenticationFailed("malformed key")
            caller = await anyio.to_thread.run_sync(verify_key, request.app.state.sessions, key)
        except AuthenticationFailed:
            raise unauthenticated("this API key is unknown, expired or revoked") from None
        cache.put(digest, caller)
    return caller


@router.get(
    "/metrics",
    summary="Prometheus metrics of this server process",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 403),
    },
)
async def metrics(
    request: Request, _access: Annotated[Caller | None, Depends(metrics_access)]
) -> Response:
    """Requests by route template, method and status; a latency histogram;
    connections in use; the request log's depth, failed flushes and dropped rows."""
    body = request.app.state.metrics.render()
    return Response(content=body, media_type=CONTENT_TYPE)
