"""Roles and permissions: who may do what.

Roles are ordered ``viewer < operator < admin < super_admin``; each role holds
every permission of the roles below it. An inactive user, or a role that is
not one of the four, has no permission at all.

    @require_permission(Permission.RUN_HPO)
    def start_campaign(user, ...): ...

The decorated function receives the acting user (or role) as its first
argument, or as the keyword ``user``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ParamSpec, Protocol, TypeVar

from pfd_db.errors import PermissionDenied
from pfd_db.models.enums import Role

__all__ = [
    "ROLE_PERMISSIONS",
    "Permission",
    "Role",
    "admin_required",
    "has_permission",
    "has_role",
    "require_permission",
    "require_role",
]


class Permission(StrEnum):
    VIEW_EXPERIMENTS = "view_experiments"
    VIEW_DATASETS = "view_datasets"
    VIEW_RESULTS = "view_results"
    VIEW_MODELS = "view_models"
    VIEW_XAI = "view_xai_explanations"

    CREATE_EXPERIMENTS = "create_experiments"
    RUN_EXPERIMENTS = "run_experiments"
    STOP_EXPERIMENTS = "stop_experiments"
    UPLOAD_DATASETS = "upload_datasets"
    DELETE_OWN_DATASETS = "delete_own_datasets"
    EXPORT_RESULTS = "export_results"
    USE_XAI = "use_xai"
    RUN_HPO = "run_hpo_campaigns"
    VIEW_HPO_RESULTS = "view_hpo_results"
    CREATE_MODEL_VERSIONS = "create_model_versions"

    MANAGE_USERS = "manage_users"
    MANAGE_API_KEYS = "manage_api_keys"
    VIEW_SYSTEM_HEALTH = "view_system_health"
    CONFIGURE_NOTIFICATIONS = "configure_notifications"
    DELETE_ANY_DATASET = "delete_any_dataset"
    DELETE_ANY_EXPERIMENT = "delete_any_experiment"
    VIEW_AUDIT_LOGS = "view_audit_logs"
    MANAGE_DEPLOYMENTS = "manage_deployments"

    SYSTEM_CONFIG = "system_config"
    DATABASE_ADMIN = "database_admin"
    SECURITY_SETTINGS = "security_settings"
    BACKUP_RESTORE = "backup_restore"
    DELETE_ALL = "delete_all"


_VIEWER = frozenset(
    {
        Permission.VIEW_EXPERIMENTS,
        Permission.VIEW_DATASETS,
        Permission.VIEW_RESULTS,
        Permission.VIEW_MODELS,
        Permission.VIEW_XAI,
    }
)
_OPERATOR = _VIEWER | {
    Permission.CREATE_EXPERIMENTS,
    Permission.RUN_EXPERIMENTS,
    Permission.STOP_EXPERIMENTS,
    Permission.UPLOAD_DATASETS,
    Permission.DELETE_OWN_DATASETS,
    Permission.EXPORT_RESULTS,
    Permission.USE_XAI,
    Permission.RUN_HPO,
    Permission.VIEW_HPO_RESULTS,
    Permission.CREATE_MODEL_VERSIONS,
}
SUPER_ADMIN_ONLY = frozenset(
    {
        Permission.SYSTEM_CONFIG,
        Permission.DATABASE_ADMIN,
        Permission.SECURITY_SETTINGS,
        Permission.BACKUP_RESTORE,
        Permission.DELETE_ALL,
    }
)
_SUPER_ADMIN = frozenset(Permission)
_ADMIN = _SUPER_ADMIN - SUPER_ADMIN_ONLY

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _OPERATOR,
    Role.ADMIN: _ADMIN,
    Role.SUPER_ADMIN: _SUPER_ADMIN,
}


class HasRole(Protocol):
    """Anything with a role and an active flag, such as :class:`~pfd_db.models.User`."""

    role: Any
    is_active: bool


Actor = HasRole | Role | str


def _role_of(actor: Actor | None) -> Role | None:
    """The actor's role, or None for an unknown role or an inactive user."""
    if actor is None:
        return None
    if isinstance(actor, str):
        value: object = actor
    elif not actor.is_active:
        return None
    else:
        value = actor.role
    try:
        return Role(str(value))
    except ValueError:
        return None


def has_permission(actor: Actor | None, permission: Permission | str) -> bool:
    """Whether the user or role may do ``permission``."""
    role = _role_of(actor)
    return role is not None and permission in ROLE_PERMISSIONS[role]


def has_role(actor: Actor | None, minimum: Role | str) -> bool:
    """Whether the user or role is at least ``minimum``."""
    role = _role_of(actor)
    return role is not None and role.level >= Role(minimum).level


P = ParamSpec("P")
R = TypeVar("R")


def _actor_from_call(func_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if "user" in kwargs:
        return kwargs["user"]
    if args:
        return args[0]
    raise PermissionDenied(f"{func_name}() was called without the acting user")


def _guard(check: Callable[[Any], bool], what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            actor = _actor_from_call(func.__name__, args, kwargs)
            if not check(actor):
                raise PermissionDenied(f"{func.__name__}() requires {what}")
            return func(*args, **kwargs)

        return wrapper

    return decorate


def require_permission(permission: Permission | str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: raise :class:`PermissionDenied` unless the acting user has ``permission``."""
    return _guard(lambda actor: has_permission(actor, permission), f"permission {permission!s}")


def require_role(minimum: Role | str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: raise :class:`PermissionDenied` unless the acting user is at least ``minimum``."""
    role = Role(minimum)
    return _guard(lambda actor: has_role(actor, role), f"role {role.value} or higher")


admin_required = require_role(Role.ADMIN)
"""Decorator: the acting user must be an admin or super admin."""
