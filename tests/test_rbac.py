"""Roles and permissions, for every role."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pfd_db.errors import PermissionDenied
from pfd_db.rbac import (
    ROLE_PERMISSIONS,
    SUPER_ADMIN_ONLY,
    Permission,
    Role,
    admin_required,
    has_permission,
    has_role,
    require_permission,
    require_role,
)


@dataclass
class Person:
    role: str
    is_active: bool = True


VIEWER_CAN = {"view_experiments", "view_datasets", "view_results", "view_models",
              "view_xai_explanations"}  # fmt: skip
OPERATOR_ADDS = {"create_experiments", "run_experiments", "stop_experiments", "upload_datasets",
                 "delete_own_datasets", "export_results", "use_xai", "run_hpo_campaigns",
                 "view_hpo_results", "create_model_versions"}  # fmt: skip
ADMIN_ADDS = {"manage_users", "manage_api_keys", "view_system_health", "configure_notifications",
              "delete_any_dataset", "delete_any_experiment", "view_audit_logs",
              "manage_deployments"}  # fmt: skip
SUPER_ADMIN_ADDS = {"system_config", "database_admin", "security_settings", "backup_restore",
                    "delete_all"}  # fmt: skip

EXPECTED = {
    Role.VIEWER: VIEWER_CAN,
    Role.OPERATOR: VIEWER_CAN | OPERATOR_ADDS,
    Role.ADMIN: VIEWER_CAN | OPERATOR_ADDS | ADMIN_ADDS,
    Role.SUPER_ADMIN: VIEWER_CAN | OPERATOR_ADDS | ADMIN_ADDS | SUPER_ADMIN_ADDS,
}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_has_exactly_its_permissions(role):
    granted = {p.value for p in Permission if has_permission(Person(role.value), p)}
    assert granted == EXPECTED[role]
    assert {p.value for p in ROLE_PERMISSIONS[role]} == EXPECTED[role]


def test_admin_has_everything_but_the_super_admin_only_permissions():
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission) - SUPER_ADMIN_ONLY


@pytest.mark.parametrize("role", list(Role))
def test_a_role_value_works_as_the_actor(role):
    assert has_permission(role, Permission.VIEW_DATASETS)
    assert has_permission(role.value, Permission.VIEW_DATASETS)


def test_roles_are_ordered():
    assert [r.level for r in Role] == [0, 1, 2, 3]
    assert has_role(Role.ADMIN, Role.OPERATOR) and not has_role(Role.OPERATOR, Role.ADMIN)


def test_unknown_roles_and_inactive_users_have_no_permission():
    assert not has_permission("root", Permission.VIEW_DATASETS)
    assert not has_permission(Person("wizard"), Permission.VIEW_DATASETS)
    assert not has_permission(Person("super_admin", is_active=False), Permission.VIEW_DATASETS)
    assert not has_permission(None, Permission.VIEW_DATASETS)
    assert not has_role(Person("admin", is_active=False), Role.VIEWER)


@require_permission(Permission.RUN_HPO)
def start_campaign(user, name):
    return f"started {name}"


@require_role(Role.OPERATOR)
def upload(user):
    return "uploaded"


@admin_required
def manage(*, user):
    return "managed"


@pytest.mark.parametrize("role", list(Role))
def test_decorators_let_through_exactly_the_allowed_roles(role):
    person = Person(role.value)
    calls = [
        (lambda: start_campaign(person, "c1"), "run_hpo_campaigns" in EXPECTED[role], "started c1"),
        (lambda: upload(person), role.level >= 1, "uploaded"),
        (lambda: manage(user=person), role.level >= 2, "managed"),
    ]
    for call, allowed, result in calls:
        if allowed:
            assert call() == result
        else:
            with pytest.raises(PermissionDenied, match="requires"):
                call()


def test_the_denial_names_what_was_missing():
    with pytest.raises(PermissionDenied, match="run_hpo_campaigns"):
        start_campaign(Person("viewer"), "c")
    with pytest.raises(PermissionDenied, match="role admin"):
        manage(user=Person("operator"))


def test_a_call_without_the_acting_user_is_denied():
    with pytest.raises(PermissionDenied, match="without the acting user"):
        manage()
