"""The caller's own account over HTTP, on both dialects: notifications, preferences,
webhooks, API keys and the security page (``/api/v1/me/...``): every route, its
auth cases (no key 401, a read key on a change 403, another user's resources
404 or, through ``?user=``, 403 for a non-admin), its error mappings (422 naming
the field, 404, 409), and no secret in any list or stored in the clear."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from pfd_db.api.paging import encode_cursor
from pfd_db.models import WebhookLog
from pfd_db.models.enums import LoginMethod
from pfd_db.store.identity import sessions
from pfd_db.store.identity.logins import Attempt, record_attempt
from pfd_db.store.notify import notifications

pytest_plugins = ["api_support"]
from api_support import auth, problem  # noqa: E402


def notify(db, user_id: int, times: int) -> None:
    for n in range(times):
        notifications.emit(db, "training.complete", [user_id], {"experiment": f"run-{n}"})
    db.commit()


# --- auth cases common to every route ------------------------------------------------

ME_READS = [
    "/api/v1/me/notifications",
    "/api/v1/me/notifications/unread-count",
    "/api/v1/me/preferences",
    "/api/v1/me/webhooks",
    "/api/v1/me/webhooks/1",
    "/api/v1/me/api-keys",
    "/api/v1/me/security/logins",
    "/api/v1/me/security/sessions",
]
ME_CHANGES = [
    ("post", "/api/v1/me/notifications/read-all", None),
    ("post", "/api/v1/me/notifications/1/read", None),
    ("patch", "/api/v1/me/preferences/training.failed", {"email_enabled": False}),
    ("post", "/api/v1/me/webhooks", {"url": "https://a.example/h", "events": ["model.deployed"]}),
    ("delete", "/api/v1/me/webhooks/1", None),
    ("post", "/api/v1/me/webhooks/1/test", None),
    ("post", "/api/v1/me/api-keys", {"name": "x"}),
    ("delete", "/api/v1/me/api-keys/1", None),
    ("delete", "/api/v1/me/security/sessions/1", None),
]


@pytest.mark.parametrize("path", ME_READS)
def test_every_read_needs_a_key(client, path):
    body = problem(client.get(path), 401)
    assert "API key" in body["detail"]


@pytest.mark.parametrize(("method", "path", "body"), ME_CHANGES)
def test_every_change_needs_a_key_with_the_write_scope(client, user_key, method, path, body):
    kwargs = {} if body is None else {"json": body}
    response = client.request(method, path, **kwargs)
    assert problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    reader = user_key(scopes=["read"])
    assert (
        "write"
        in problem(client.request(method, path, headers=auth(reader), **kwargs), 403)["detail"]
    )


def test_a_viewer_may_change_their_own_account(client, user_key):
    viewer = user_key(scopes=["read", "write"], role="viewer")
    response = client.patch(
        "/api/v1/me/preferences/training.failed", json={"slack_enabled": True}, headers=auth(viewer)
    )
    assert response.status_code == 200 and response.json()["slack_enabled"] is True


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/me/notifications",
        "/api/v1/me/notifications/unread-count",
        "/api/v1/me/preferences",
        "/api/v1/me/webhooks",
        "/api/v1/me/api-keys",
        "/api/v1/me/security/logins",
        "/api/v1/me/security/sessions",
    ],
)
def test_only_an_admin_lists_another_users_resources(client, user_key, admin_key, path):
    ada, bob = user_key(), user_key()
    problem(client.get(path, params={"user": bob.user_id}, headers=auth(ada)), 403)
    assert client.get(path, params={"user": ada.user_id}, headers=auth(ada)).status_code == 200
    as_admin = client.get(path, params={"user": bob.user_id}, headers=auth(admin_key))
    assert as_admin.status_code == 200
    problem(client.get(path, params={"user": 987654}, headers=auth(admin_key)), 404)


# --- notifications -------------------------------------------------------------------


def test_notifications_page_newest_first_and_are_marked_read(client, db, user_key):
    ada = user_key()
    notify(db, ada.user_id, 3)
    headers = auth(ada)
    first = client.get("/api/v1/me/notifications", params={"limit": 2}, headers=headers).json()
    assert [n["data"]["experiment"] for n in first["items"]] == ["run-2", "run-1"]
    assert first["next_cursor"]
    rest = client.get(
        "/api/v1/me/notifications",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=headers,
    ).json()
    assert [n["data"]["experiment"] for n in rest["items"]] == ["run-0"]
    assert rest["next_cursor"] is None
    unread = client.get("/api/v1/me/notifications/unread-count", headers=headers).json()
    assert unread == {"unread": 3}

    target = first["items"][0]["id"]
    marked = client.post(f"/api/v1/me/notifications/{target}/read", headers=headers).json()
    assert marked["read"] is True and marked["read_at"] is not None
    again = client.post(f"/api/v1/me/notifications/{target}/read", headers=headers).json()
    assert again["read_at"] == marked["read_at"]  # the first read is kept
    assert client.get("/api/v1/me/notifications/unread-count", headers=headers).json() == {
        "unread": 2
    }
    read_only = client.get(
        "/api/v1/me/notifications", params={"unread": "false"}, headers=headers
    ).json()
    assert [n["id"] for n in read_only["items"]] == [target]

    assert client.post("/api/v1/me/notifications/read-all", headers=headers).json() == {"marked": 2}
    assert client.get("/api/v1/me/notifications/unread-count", headers=headers).json() == {
        "unread": 0
    }
    unread_items = client.get(
        "/api/v1/me/notifications", params={"unread": "true"}, headers=headers
    ).json()
    assert unread_items == {"items": [], "next_cursor": None}


def test_another_users_notification_is_unknown(client, db, user_key, admin_key):
    ada, bob = user_key(), user_key()
    notify(db, bob.user_id, 1)
    [theirs] = client.get(
        "/api/v1/me/notifications", params={"user": bob.user_id}, headers=auth(admin_key)
    ).json()["items"]
    problem(client.post(f"/api/v1/me/notifications/{theirs['id']}/read", headers=auth(ada)), 404)
    problem(client.post("/api/v1/me/notifications/999999/read", headers=auth(ada)), 404)
    assert client.get("/api/v1/me/notifications/unread-count", headers=auth(bob)).json() == {
        "unread": 1
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": encode_cursor("a row id?")}, "cursor"),
        ({"cursor": encode_cursor(-5)}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"unread": "perhaps"}, "unread"),
        ({"user": 0}, "user"),
    ],
)
def test_bad_list_parameters_are_422_naming_them(client, user_key, params, field):
    response = client.get("/api/v1/me/notifications", params=params, headers=auth(user_key()))
    problem(response, 422, field)


def test_a_notification_id_out_of_range_is_422(client, user_key):
    response = client.post(
        "/api/v1/me/notifications/99999999999999999999/read", headers=auth(user_key())
    )
    problem(response, 422, "notification_id")


# --- preferences ---------------------------------------------------------------------


def test_preferences_are_read_and_changed_field_by_field(client, user_key):
    headers = auth(user_key())
    listed = client.get("/api/v1/me/preferences", headers=headers).json()["preferences"]
    by_event = {p["event_type"]: p for p in listed}
    assert by_event["training.complete"]["email_enabled"] is True
    assert "test.webhook" not in by_event
    changed = client.patch(
        "/api/v1/me/preferences/training.complete",
        json={"email_frequency": "digest_daily", "slack_enabled": True},
        headers=headers,
    ).json()
    assert changed == {
        **by_event["training.complete"],
        "email_frequency": "digest_daily",
        "slack_enabled": True,
    }
    after = client.get("/api/v1/me/preferences", headers=headers).json()["preferences"]
    assert {p["event_type"]: p for p in after}["training.complete"] == changed


@pytest.mark.parametrize(
    ("event", "body", "field"),
    [
        ("training.nope", {"email_enabled": True}, "event_type"),
        ("test.webhook", {"email_enabled": True}, "event_type"),
        ("training.failed", {"email_frequency": "hourly"}, "email_frequency"),
        ("training.failed", {"email_enabled": "sometimes"}, "email_enabled"),
        ("training.failed", {"colour": "red"}, "colour"),
    ],
)
def test_a_bad_preference_change_is_422_naming_the_field(client, user_key, event, body, field):
    response = client.patch(f"/api/v1/me/preferences/{event}", json=body, headers=auth(user_key()))
    problem(response, 422, field)


# --- webhooks ------------------------------------------------------------------------


def test_a_webhook_secret_is_shown_once_and_its_url_path_never(client, db, user_key, plaintexts):
    headers = auth(user_key())
    created = client.post(
        "/api/v1/me/webhooks",
        json={
            "url": "https://hooks.example.com/services/T0KEN-IN-PATH?sig=QUERYSECRET",
            "events": ["training.complete", "training.failed"],
            "name": "team",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    plaintexts.append(body["secret"])
    assert body["secret"].startswith("whsec_")
    assert body["url"] == "https://hooks.example.com/…" and body["host"] == "hooks.example.com"
    assert body["events"] == ["training.complete", "training.failed"] and body["is_active"]

    listed = client.get("/api/v1/me/webhooks", headers=headers)
    assert [w["id"] for w in listed.json()["items"]] == [body["id"]]
    for text in (body["secret"], "T0KEN-IN-PATH", "QUERYSECRET"):
        assert text not in listed.text
    one = client.get(f"/api/v1/me/webhooks/{body['id']}", headers=headers)
    assert "secret" not in one.json() and "T0KEN" not in one.text

    tested = client.post(f"/api/v1/me/webhooks/{body['id']}/test", headers=headers)
    assert tested.status_code == 202
    assert tested.json()["event_type"] == "test.webhook" and tested.json()["status"] == "pending"
    queued = db.scalars(select(WebhookLog)).all()
    assert [(q.id, q.webhook_config_id) for q in queued] == [
        (tested.json()["delivery_id"], body["id"])
    ]

    assert client.delete(f"/api/v1/me/webhooks/{body['id']}", headers=headers).status_code == 204
    problem(client.get(f"/api/v1/me/webhooks/{body['id']}", headers=headers), 404)
    problem(client.delete(f"/api/v1/me/webhooks/{body['id']}", headers=headers), 404)


def test_webhook_lists_page_by_cursor(client, user_key, plaintexts):
    headers = auth(user_key())
    made = []
    for n in range(3):
        response = client.post(
            "/api/v1/me/webhooks",
            json={"url": f"https://example.com/hook{n}", "events": ["training.failed"]},
            headers=headers,
        )
        plaintexts.append(response.json()["secret"])
        made.append(response.json()["id"])
    first = client.get("/api/v1/me/webhooks", params={"limit": 2}, headers=headers).json()
    second = client.get(
        "/api/v1/me/webhooks", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
    ).json()
    assert [w["id"] for w in first["items"] + second["items"]] == made
    assert second["next_cursor"] is None


def test_webhook_errors_map_to_422_404_409(client, user_key, plaintexts):
    ada, bob = user_key(), user_key()
    hook = {"url": "https://example.com/hook", "events": ["training.failed"]}
    created = client.post("/api/v1/me/webhooks", json=hook, headers=auth(ada)).json()
    plaintexts.append(created["secret"])
    problem(client.post("/api/v1/me/webhooks", json=hook, headers=auth(ada)), 409)
    internal = {**hook, "url": "http://127.0.0.1/hook"}
    assert (
        "internal"
        in problem(
            client.post("/api/v1/me/webhooks", json=internal, headers=auth(ada)), 422, "url"
        )["detail"]
    )
    problem(
        client.post("/api/v1/me/webhooks", json={**hook, "url": "ftp://x"}, headers=auth(ada)),
        422,
        "url",
    )
    problem(
        client.post(
            "/api/v1/me/webhooks", json={**hook, "events": ["test.webhook"]}, headers=auth(ada)
        ),
        422,
        "events",
    )
    problem(
        client.post("/api/v1/me/webhooks", json={**hook, "events": []}, headers=auth(ada)),
        422,
        "events",
    )
    for method, path in [
        ("get", f"/api/v1/me/webhooks/{created['id']}"),
        ("delete", f"/api/v1/me/webhooks/{created['id']}"),
        ("post", f"/api/v1/me/webhooks/{created['id']}/test"),
    ]:
        problem(client.request(method, path, headers=auth(bob)), 404)
    assert client.get(f"/api/v1/me/webhooks/{created['id']}", headers=auth(ada)).status_code == 200


# --- API keys ------------------------------------------------------------------------


def test_a_key_is_shown_once_listed_masked_and_revoked(client, user_key, plaintexts):
    ada = user_key()
    headers = auth(ada)
    issued = client.post(
        "/api/v1/me/api-keys",
        json={"name": "laptop", "scopes": ["read"], "rate_limit": 50},
        headers=headers,
    )
    assert issued.status_code == 201, issued.text
    body = issued.json()
    plaintexts.append(body["key"])
    assert body["key"].startswith(f"pfd_{body['prefix']}_")
    assert (body["name"], body["scopes"], body["rate_limit"]) == ("laptop", ["read"], 50)

    listed = client.get("/api/v1/me/api-keys", headers=headers)
    assert [k["id"] for k in listed.json()["items"]] == [body["id"], ada.key_id]  # newest first
    assert body["key"] not in listed.text and str(ada) not in listed.text
    assert all("key" not in item for item in listed.json()["items"])

    new_headers = auth(body["key"])
    assert client.get("/api/v1/me/api-keys", headers=new_headers).status_code == 200
    revoked = client.delete(f"/api/v1/me/api-keys/{body['id']}", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert revoked.json()["is_active"] is False
    problem(client.get("/api/v1/me/api-keys", headers=new_headers), 401)
    again = client.delete(f"/api/v1/me/api-keys/{body['id']}", headers=headers)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]


def test_a_key_issues_no_scope_wider_than_its_own(client, user_key, admin_key, plaintexts):
    writer = user_key(scopes=["read", "write"])
    refused = client.post(
        "/api/v1/me/api-keys", json={"name": "root", "scopes": ["admin"]}, headers=auth(writer)
    )
    assert "admin" in problem(refused, 403)["detail"]
    made = client.post(
        "/api/v1/me/api-keys", json={"name": "ops", "scopes": ["admin"]}, headers=auth(admin_key)
    )
    assert made.status_code == 201
    plaintexts.append(made.json()["key"])


def test_key_pages_and_other_users_keys(client, user_key, plaintexts):
    ada, bob = user_key(), user_key()
    for n in range(2):
        made = client.post("/api/v1/me/api-keys", json={"name": f"k{n}"}, headers=auth(ada))
        plaintexts.append(made.json()["key"])
        assert made.json()["scopes"] == ["read"]  # the default
    first = client.get("/api/v1/me/api-keys", params={"limit": 2}, headers=auth(ada)).json()
    second = client.get(
        "/api/v1/me/api-keys",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=auth(ada),
    ).json()
    ids = [k["id"] for k in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and ada.key_id in ids and len(ids) == 3
    assert second["next_cursor"] is None
    problem(client.delete(f"/api/v1/me/api-keys/{ada.key_id}", headers=auth(bob)), 404)
    problem(client.delete("/api/v1/me/api-keys/424242", headers=auth(bob)), 404)
    assert client.get("/api/v1/me/api-keys", headers=auth(ada)).status_code == 200  # not revoked


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": ["root"]}, "scopes.0"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": ""}, "name"),
        ({"name": "x", "rate_limit": 0}, "rate_limit"),
        ({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "expires_at": "2999-01-01T00:00:00"}, "expires_at"),  # naive
        ({"name": "x", "secret": "mine"}, "secret"),
        ({"name": "bad\u0000name"}, "name"),
    ],
)
def test_a_bad_key_request_is_422_naming_the_field(client, user_key, body, field):
    response = client.post("/api/v1/me/api-keys", json=body, headers=auth(user_key()))
    problem(response, 422, field)


# --- security ------------------------------------------------------------------------


def test_the_login_history_pages_newest_first(client, db, user_key):
    ada = user_key()
    start = datetime.now(UTC) - timedelta(hours=1)
    for n, reason in enumerate([None, "wrong password", None]):
        attempt = Attempt(
            ada.user_id,
            ada.username,
            LoginMethod.PASSWORD,
            start + timedelta(minutes=n),
            ip=f"10.0.0.{n}",
            user_agent="Firefox",
        )
        record_attempt(db, attempt, reason)
    db.commit()
    headers = auth(ada)
    first = client.get("/api/v1/me/security/logins", params={"limit": 2}, headers=headers).json()
    assert [a["ip_address"] for a in first["items"]] == ["10.0.0.2", "10.0.0.1"]
    second = client.get(
        "/api/v1/me/security/logins",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=headers,
    ).json()
    assert [a["ip_address"] for a in second["items"]] == ["10.0.0.0"]
    failed = client.get(
        "/api/v1/me/security/logins", params={"success": "false"}, headers=headers
    ).json()["items"]
    assert [(a["success"], a["failure_reason"]) for a in failed] == [(False, "wrong password")]


def test_sessions_are_listed_without_tokens_and_revoked_one_at_a_time(
    client, db, user_key, plaintexts
):
    ada, bob = user_key(), user_key()
    made = []
    for n in range(2):
        token, record = sessions.start_session(
            db, ada.user_id, ip=f"10.1.0.{n}", user_agent="Mozilla/5.0 Firefox/120.0"
        )
        plaintexts.append(token)
        made.append((token, record.id))
    _, bobs = sessions.start_session(db, bob.user_id)
    db.commit()
    headers = auth(ada)
    listed = client.get("/api/v1/me/security/sessions", headers=headers)
    assert [s["id"] for s in listed.json()["items"]] == [made[1][1], made[0][1]]
    assert all(token not in listed.text for token, _ in made)

    first = made[0][1]
    ended = client.delete(f"/api/v1/me/security/sessions/{first}", headers=headers)
    assert ended.json() == {"revoked": True}
    again = client.delete(f"/api/v1/me/security/sessions/{first}", headers=headers)
    assert again.json() == {"revoked": False}
    after = client.get("/api/v1/me/security/sessions", headers=headers).json()["items"]
    assert [s["id"] for s in after] == [made[1][1]]
    problem(client.delete(f"/api/v1/me/security/sessions/{bobs.id}", headers=headers), 404)
    problem(client.delete("/api/v1/me/security/sessions/987654", headers=headers), 404)
