"""The admin routes over HTTP, on both dialects: users, API traffic and the audit
log (``/api/v1/admin/...``). Every route needs the admin scope and an admin role
(401 without a key, 403 otherwise); errors map to 422 naming the field, 404 and
409. Traffic is read from requests logged at a fixed time in the past, so that the
server's own request log (written meanwhile) does not change the figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from pfd_db.models import SystemLog, User
from pfd_db.store.identity import api_keys
from pfd_db.store.ops import request_log

pytest_plugins = ["api_support"]
from api_support import auth, problem  # noqa: E402

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday, long before the test runs
SINCE = {"since": T0.isoformat(), "until": (T0 + timedelta(hours=3)).isoformat()}


ADMIN_ROUTES = [
    ("get", "/api/v1/admin/users", None),
    ("post", "/api/v1/admin/users", {"username": "eve", "email": "eve@example.com"}),
    ("get", "/api/v1/admin/users/1", None),
    ("put", "/api/v1/admin/users/1/role", {"role": "viewer"}),
    ("post", "/api/v1/admin/users/1/deactivate", None),
    ("get", "/api/v1/admin/audit", None),
    ("get", "/api/v1/admin/traffic/requests", None),
    ("get", "/api/v1/admin/traffic/endpoints", None),
    ("get", "/api/v1/admin/traffic/timeline", None),
    ("get", "/api/v1/admin/traffic/rollups/hourly", None),
    (
        "post",
        "/api/v1/admin/traffic/rollups/hourly",
        {"start": "2026-03-02T00:00:00Z", "end": "2026-03-02T01:00:00Z"},
    ),
    ("get", "/api/v1/admin/traffic/top-keys", None),
    ("get", "/api/v1/admin/traffic/keys/1/usage", None),
    ("get", "/api/v1/admin/traffic/figures", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_every_admin_route_needs_an_admin_key_of_an_admin(client, user_key, method, path, body):
    kwargs = {} if body is None else {"json": body}
    response = client.request(method, path, **kwargs)
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    operator_with_admin_scope = user_key(scopes=["admin"], role="operator")
    detail = problem(
        client.request(method, path, headers=auth(operator_with_admin_scope), **kwargs), 403
    )["detail"]
    assert "admin" in detail
    admin_with_write_scope = user_key(scopes=["read", "write"], role="admin")
    detail = problem(
        client.request(method, path, headers=auth(admin_with_write_scope), **kwargs), 403
    )["detail"]
    assert "'admin' scope" in detail


# --- users ---------------------------------------------------------------------------


def test_users_are_listed_by_id_a_page_at_a_time(client, admin_key, user_key):
    others = [user_key(role="viewer"), user_key(role="operator")]
    headers = auth(admin_key)
    first = client.get("/api/v1/admin/users", params={"limit": 2}, headers=headers).json()
    second = client.get(
        "/api/v1/admin/users", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
    ).json()
    listed = first["items"] + second["items"]
    assert [u["id"] for u in listed] == [admin_key.user_id, *(o.user_id for o in others)]
    assert second["next_cursor"] is None
    assert all("password_hash" not in u and "totp_secret" not in u for u in listed)
    viewers = client.get("/api/v1/admin/users", params={"role": "viewer"}, headers=headers)
    assert [u["id"] for u in viewers.json()["items"]] == [others[0].user_id]
    one = client.get(f"/api/v1/admin/users/{others[1].user_id}", headers=headers).json()
    assert (one["username"], one["role"]) == (others[1].username, "operator") and one["is_active"]
    problem(client.get("/api/v1/admin/users/999999", headers=headers), 404)


def test_a_created_user_gets_a_generated_password_once(client, db, admin_key, plaintexts):
    headers = auth(admin_key)
    made = client.post(
        "/api/v1/admin/users",
        json={"username": "grace", "email": "Grace@Example.com", "role": "operator"},
        headers=headers,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    plaintexts.append(body["password"])
    assert len(body["password"]) >= 12
    assert (body["username"], body["email"], body["role"]) == (
        "grace",
        "grace@example.com",
        "operator",
    )
    given = client.post(
        "/api/v1/admin/users",
        json={"username": "hopper", "email": "h@example.com", "password": "a long passphrase 1"},
        headers=headers,
    )
    plaintexts.append("a long passphrase 1")
    assert given.status_code == 201 and given.json()["password"] is None
    assert given.json()["role"] == "viewer"
    listed = client.get("/api/v1/admin/users", headers=headers).text
    assert body["password"] not in listed
    entry = db.scalars(select(SystemLog).where(SystemLog.action == "user.created")).all()
    assert {e.details["username"] for e in entry} >= {"grace", "hopper"}
    assert all(e.user_id == admin_key.user_id for e in entry if e.details["username"] == "grace")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"username": "x", "email": "x@example.com"}, 422, "username"),
        ({"username": "bad name!", "email": "x@example.com"}, 422, "username"),
        ({"username": "newbie", "email": "not-an-address"}, 422, "email"),
        ({"username": "newbie", "email": "n@example.com", "password": "short"}, 422, "password"),
        ({"username": "newbie", "email": "n@example.com", "role": "god"}, 422, "role"),
        ({"username": "newbie", "email": "n@example.com", "admin": True}, 422, "admin"),
        ({"email": "n@example.com"}, 422, "username"),
        ({"username": "newbie", "email": "n@example.com", "role": "super_admin"}, 403, None),
    ],
)
def test_a_bad_user_is_refused_naming_the_field(client, admin_key, body, status, field):
    problem(client.post("/api/v1/admin/users", json=body, headers=auth(admin_key)), status, field)


def test_a_taken_name_or_address_is_409(client, admin_key, user_key):
    taken = user_key()
    headers = auth(admin_key)
    body = {"username": taken.username.upper(), "email": "fresh@example.com"}
    assert (
        "username"
        in problem(client.post("/api/v1/admin/users", json=body, headers=headers), 409)["detail"]
    )
    body = {"username": "fresh-name", "email": f"{taken.username}@example.org"}
    assert (
        "email"
        in problem(client.post("/api/v1/admin/users", json=body, headers=headers), 409)["detail"]
    )


def test_roles_change_and_users_are_deactivated(client, db, admin_key, user_key):
    ada = user_key(role="operator")
    headers = auth(admin_key)
    changed = client.put(
        f"/api/v1/admin/users/{ada.user_id}/role", json={"role": "viewer"}, headers=headers
    )
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    problem(client.get("/api/v1/admin/users", headers=auth(ada)), 403)

    gone = client.post(f"/api/v1/admin/users/{ada.user_id}/deactivate", headers=headers)
    assert gone.status_code == 200 and gone.json()["is_active"] is False
    again = client.post(f"/api/v1/admin/users/{ada.user_id}/deactivate", headers=headers)
    assert again.status_code == 200 and again.json()["is_active"] is False
    problem(client.get("/api/v1/me/api-keys", headers=auth(ada)), 401)  # an inactive owner
    inactive = client.get("/api/v1/admin/users", params={"active": "false"}, headers=headers)
    assert [u["id"] for u in inactive.json()["items"]] == [ada.user_id]
    actions = db.scalars(
        select(SystemLog.action).where(
            SystemLog.action.in_(["user.role_changed", "user.deactivated"])
        )
    ).all()
    assert sorted(actions) == ["user.deactivated", "user.role_changed"]  # the second: no entry


def test_user_changes_refused(client, db, admin_key, user_key):
    headers = auth(admin_key)
    problem(
        client.put("/api/v1/admin/users/999999/role", json={"role": "viewer"}, headers=headers), 404
    )
    problem(client.post("/api/v1/admin/users/999999/deactivate", headers=headers), 404)
    problem(
        client.put(
            f"/api/v1/admin/users/{admin_key.user_id}/role", json={"role": "boss"}, headers=headers
        ),
        422,
        "role",
    )
    problem(
        client.post(f"/api/v1/admin/users/{admin_key.user_id}/deactivate", headers=headers), 409
    )
    problem(
        client.put(
            f"/api/v1/admin/users/{admin_key.user_id}/role",
            json={"role": "viewer"},
            headers=headers,
        ),
        409,
    )
    chief = user_key(role="super_admin")
    problem(
        client.put(
            f"/api/v1/admin/users/{chief.user_id}/role", json={"role": "viewer"}, headers=headers
        ),
        403,
    )
    problem(client.post(f"/api/v1/admin/users/{chief.user_id}/deactivate", headers=headers), 403)
    ada = user_key(role="viewer")
    problem(
        client.put(
            f"/api/v1/admin/users/{ada.user_id}/role", json={"role": "super_admin"}, headers=headers
        ),
        403,
    )
    db.expire_all()
    assert db.get(User, chief.user_id).is_active and db.get(User, ada.user_id).role == "viewer"


# --- audit ---------------------------------------------------------------------------


def test_audit_entries_filter_by_action_prefix_and_text_and_page(client, admin_key, user_key):
    headers = auth(admin_key)
    ada = user_key(role="operator", username="ada-lovelace")
    client.put(f"/api/v1/admin/users/{ada.user_id}/role", json={"role": "viewer"}, headers=headers)
    users_only = client.get("/api/v1/admin/audit", params={"action": "user."}, headers=headers)
    actions = [e["action"] for e in users_only.json()["items"]]
    assert actions[0] == "user.role_changed" and set(actions) == {
        "user.created",
        "user.role_changed",
    }
    assert users_only.json()["items"][0]["user_id"] == admin_key.user_id
    lovelace = client.get(
        "/api/v1/admin/audit", params={"text": "LOVELACE"}, headers=headers
    ).json()["items"]
    assert {e["details"]["username"] for e in lovelace} == {"ada-lovelace"}
    assert {e["action"] for e in lovelace} == {
        "user.created",
        "user.role_changed",
        "api_key.issued",
    }
    first = client.get("/api/v1/admin/audit", params={"limit": 2}, headers=headers).json()
    second = client.get(
        "/api/v1/admin/audit", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
    ).json()
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 4 and ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"action": "User!"}, "action"),
        ({"status": "fine"}, "status"),
        ({"text": "x" * 201}, "text"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # naive
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"cursor": "%%%"}, "cursor"),
    ],
)
def test_bad_audit_filters_are_422_naming_them(client, admin_key, params, field):
    problem(client.get("/api/v1/admin/audit", params=params, headers=auth(admin_key)), 422, field)


# --- traffic -------------------------------------------------------------------------


@pytest.fixture
def traffic(db, admin_key, user_key):
    """Ten requests at T0 .. T0 + 9 minutes: three keys (the busiest ``busy``), two
    endpoints, two failures; and ``api_usage`` rows of ``busy`` on two days."""
    busy, quiet = user_key(), user_key()
    rows = []
    for n in range(10):
        rows.append(
            {
                "endpoint": "/api/v1/experiments/{id}" if n < 7 else "/api/v1/experiments",
                "method": "GET" if n < 7 else "POST",
                "status_code": 500 if n in (3, 8) else 200,
                "response_time_ms": float(n + 1),
                "request_time": T0 + timedelta(minutes=n),
                "api_key_id": busy.key_id if n < 6 else quiet.key_id if n < 9 else None,
                "ip_address": "10.9.0.1",
                "user_agent": "pfd-client",
            }
        )
    request_log.record_requests(db, rows)
    for day, status in ((0, 200), (0, 404), (1, 200)):
        api_keys.record_usage(
            db,
            busy.key_id,
            "/api/v1/experiments/{id}",
            "GET",
            status,
            5,
            now=T0 + timedelta(days=day),
        )
    db.commit()
    return {"busy": busy, "quiet": quiet, "headers": auth(admin_key)}


def test_recent_requests_filter_and_page(client, traffic):
    headers = traffic["headers"]
    everything = client.get(
        "/api/v1/admin/traffic/requests", params={**SINCE, "limit": 4}, headers=headers
    ).json()
    assert [r["response_time_ms"] for r in everything["items"]] == [10.0, 9.0, 8.0, 7.0]
    rest = client.get(
        "/api/v1/admin/traffic/requests",
        params={**SINCE, "limit": 4, "cursor": everything["next_cursor"]},
        headers=headers,
    ).json()
    assert [r["response_time_ms"] for r in rest["items"]] == [6.0, 5.0, 4.0, 3.0]
    failed = client.get(
        "/api/v1/admin/traffic/requests", params={**SINCE, "errors_only": "true"}, headers=headers
    ).json()["items"]
    assert [r["status_code"] for r in failed] == [500, 500]
    by_key = client.get(
        "/api/v1/admin/traffic/requests",
        params={**SINCE, "api_key": traffic["quiet"].key_id},
        headers=headers,
    ).json()["items"]
    assert len(by_key) == 3 and {r["api_key_id"] for r in by_key} == {traffic["quiet"].key_id}
    posts = client.get(
        "/api/v1/admin/traffic/requests",
        params={**SINCE, "endpoint": "/api/v1/experiments", "status_code": 200},
        headers=headers,
    ).json()["items"]
    assert [r["method"] for r in posts] == ["POST", "POST"]
    assert all("payload" not in key for r in posts for key in r)


def test_endpoint_metrics_timeline_and_figures(client, traffic):
    headers = traffic["headers"]
    endpoints = client.get("/api/v1/admin/traffic/endpoints", params=SINCE, headers=headers).json()[
        "items"
    ]
    assert [(e["endpoint"], e["requests"], e["failures"]) for e in endpoints] == [
        ("/api/v1/experiments/{id}", 7, 1),
        ("/api/v1/experiments", 3, 1),
    ]
    assert endpoints[0]["p50_response_time_ms"] == 4.0 and endpoints[0]["error_rate"] == 1 / 7
    timeline = client.get(
        "/api/v1/admin/traffic/timeline",
        params={**SINCE, "bucket_seconds": 300},
        headers=headers,
    ).json()
    counts = [p["requests"] for p in timeline["points"]]
    assert timeline["bucket_seconds"] == 300 and len(counts) == 36
    assert counts[:3] == [5, 5, 0] and sum(counts) == 10
    assert timeline["points"][2]["avg_response_time_ms"] is None
    figures = client.get("/api/v1/admin/traffic/figures", params=SINCE, headers=headers).json()
    assert (figures["requests"], figures["failures"], figures["successes"]) == (10, 2, 8)
    assert figures["error_rate"] == 0.2 and figures["max_response_time_ms"] == 10.0
    assert figures["p50_response_time_ms"] == 5.5 and figures["avg_response_time_ms"] == 5.5


def test_top_keys_and_one_keys_usage(client, traffic):
    headers = traffic["headers"]
    busy, quiet = traffic["busy"], traffic["quiet"]
    top = client.get("/api/v1/admin/traffic/top-keys", params=SINCE, headers=headers).json()
    assert [(k["api_key_id"], k["requests"], k["failures"]) for k in top["items"]] == [
        (busy.key_id, 6, 1),
        (quiet.key_id, 3, 1),
    ]
    assert all(k["prefix"] and str(busy) not in str(k) for k in top["items"])
    usage = client.get(
        f"/api/v1/admin/traffic/keys/{busy.key_id}/usage",
        params={"since": T0.isoformat(), "until": (T0 + timedelta(days=3)).isoformat()},
        headers=headers,
    ).json()
    assert (usage["requests"], usage["failures"]) == (3, 1)
    assert [(d["day"], d["requests"]) for d in usage["days"]] == [
        ("2026-03-02", 2),
        ("2026-03-03", 1),
    ]
    assert usage["endpoints"] == {"/api/v1/experiments/{id}": 3}
    problem(client.get("/api/v1/admin/traffic/keys/999999/usage", headers=headers), 404)


def test_rollups_run_and_read_a_page_at_a_time(client, traffic):
    headers = traffic["headers"]
    ran = client.post(
        "/api/v1/admin/traffic/rollups/hourly",
        json={"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()},
        headers=headers,
    )
    assert ran.status_code == 200 and ran.json() == {"periods": 1}
    read = client.get(
        "/api/v1/admin/traffic/rollups/hourly", params={**SINCE, "limit": 1}, headers=headers
    ).json()
    [summary] = read["items"]
    assert summary["period_start"].startswith("2026-03-02T12:00:00")
    assert (summary["total_requests"], summary["failed_requests"]) == (10, 2)
    after = client.get(
        "/api/v1/admin/traffic/rollups/hourly",
        params={**SINCE, "limit": 1, "cursor": read["next_cursor"]},
        headers=headers,
    ).json()
    assert after == {"items": [], "next_cursor": None}
    daily = client.get("/api/v1/admin/traffic/rollups/daily", params=SINCE, headers=headers)
    assert daily.json()["items"] == []


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/admin/traffic/requests", {"since": "2026-03-02T12:00:00"}, "since"),
        ("/api/v1/admin/traffic/requests", {**SINCE, "until": "2026-03-01T00:00:00Z"}, "until"),
        ("/api/v1/admin/traffic/requests", {"status_code": 99}, "status_code"),
        ("/api/v1/admin/traffic/requests", {"endpoint": "x" * 256}, "endpoint"),
        ("/api/v1/admin/traffic/endpoints", {"limit": 0}, "limit"),
        ("/api/v1/admin/traffic/timeline", {**SINCE, "bucket_seconds": 0}, "bucket_seconds"),
        ("/api/v1/admin/traffic/timeline", {**SINCE, "bucket_seconds": 1}, "bucket"),
        ("/api/v1/admin/traffic/rollups/yearly", {}, "period"),
        ("/api/v1/admin/traffic/rollups/hourly", {"cursor": "InllcyI"}, "cursor"),
        ("/api/v1/admin/traffic/top-keys", {"limit": 1001}, "limit"),
        ("/api/v1/admin/traffic/figures", {"since": "yesterday"}, "since"),
    ],
)
def test_bad_traffic_parameters_are_422_naming_them(client, admin_key, path, params, field):
    problem(client.get(path, params=params, headers=auth(admin_key)), 422, field)


def test_an_unknown_key_filter_is_404(client, admin_key):
    response = client.get(
        "/api/v1/admin/traffic/requests", params={"api_key": 424242}, headers=auth(admin_key)
    )
    problem(response, 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start": "2026-03-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"}, "end"),  # > 10 000
        ({"start": "2026-03-02T00:00:00", "end": "2026-03-02T05:00:00Z"}, "start"),  # naive
        ({"start": "2026-03-02T05:00:00Z", "end": "2026-03-02T00:00:00Z"}, "end"),
        ({"start": "2026-03-02T05:00:00Z"}, "end"),
    ],
)
def test_a_bad_rollup_run_is_422_naming_the_field(client, admin_key, body, field):
    response = client.post(
        "/api/v1/admin/traffic/rollups/hourly", json=body, headers=auth(admin_key)
    )
    problem(response, 422, field)
