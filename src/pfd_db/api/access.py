"""Who is calling, and whether the route allows them.

The auth middleware (:mod:`pfd_db.api.middleware`) puts a :class:`Caller` on
``request.state.caller`` for every ``/api`` request it lets through. Routes ask
for one of the dependencies below, which cost no thread hop::

    def get_thing(caller: Annotated[Caller, Depends(read_access)]) -> ...

Each checks both the key's scope (read for reads, write for changes, admin for
admin routes; admin implies write implies read) and its owner's role
(:mod:`pfd_db.rbac`): reads need ``view_experiments`` (every role), changes
need an operator, admin routes an admin. ``own_account_access`` is for changes
to the caller's own account (notifications read, preferences, their own keys):
write scope, any role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from pfd_db.api.problems import ApiProblem
from pfd_db.models.enums import Role
from pfd_db.rbac import Permission, has_permission, has_role

SCOPE_LEVELS = {"read": 1, "write": 2, "admin": 3}

# The two ways to present a key, as OpenAPI security schemes (the middleware reads
# the headers itself; these only describe them, and cost no thread hop).
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="Authorization: Bearer <API key>"
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="X-API-Key: <API key>"
)


async def _schemes(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    header: Annotated[str | None, Depends(api_key_scheme)],
) -> None:
    """Declares both security schemes on every route that needs a key."""


Presented = Annotated[None, Depends(_schemes)]


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified API key of a request, and its owner (a snapshot, cached briefly)."""

    key_id: int
    key_prefix: str
    user_id: int
    username: str
    role: str
    scopes: tuple[str, ...]
    rate_limit: int

    @property
    def is_admin(self) -> bool:
        """Whether the owner is an admin (sees every user's resources)."""
        return has_role(self.role, Role.ADMIN)

    def has_scope(self, scope: str) -> bool:
        """Whether the key grants ``scope`` (admin implies write implies read)."""
        needed = SCOPE_LEVELS[scope]
        return any(SCOPE_LEVELS.get(held, 0) >= needed for held in self.scopes)


def current_caller(request: Request) -> Caller:
    """The request's caller; a 401 problem if the middleware put none there."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise unauthenticated("give an API key: Authorization: Bearer <key> or X-API-Key")
    return caller


def unauthenticated(detail: str) -> ApiProblem:
    """The 401 problem, with the ``WWW-Authenticate`` challenge."""
    return ApiProblem(
        401, detail, title="Unauthorized", headers={"WWW-Authenticate": 'Bearer realm="pfd-db"'}
    )


def _forbidden(detail: str) -> ApiProblem:
    return ApiProblem(403, detail, title="Forbidden")


def _checked(request: Request, scope: str, role: Role | None = None) -> Caller:
    """The request's caller if their key has ``scope`` and (when given) their role
    is ``role`` or higher; else the 403 problem naming what is missing."""
    caller = current_caller(request)
    if not caller.has_scope(scope):
        raise _forbidden(f"this key lacks the '{scope}' scope this route needs")
    if role is not None and not has_role(caller.role, role):
        raise _forbidden(f"this route needs the role {role.value} or higher")
    return caller


async def read_access(request: Request, _: Presented) -> Caller:
    """A caller whose key has the read scope (every active role may read)."""
    caller = _checked(request, "read")
    if not has_permission(caller.role, Permission.VIEW_EXPERIMENTS):
        raise _forbidden("this account's role may not read")
    return caller


async def write_access(request: Request, _: Presented) -> Caller:
    """A caller whose key has the write scope and whose role is operator or higher."""
    return _checked(request, "write", Role.OPERATOR)


async def own_account_access(request: Request, _: Presented) -> Caller:
    """A caller whose key has the write scope, changing their own account (any role)."""
    return _checked(request, "write")


async def admin_access(request: Request, _: Presented) -> Caller:
    """A caller whose key has the admin scope and whose role is admin or higher."""
    return _checked(request, "admin", Role.ADMIN)
