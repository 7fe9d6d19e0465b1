"""API-key auth on both dialects: Bearer or X-API-Key; 401 with a challenge for a
missing, malformed, unknown, expired or revoked key; 403 for the key's scope or
its owner's role; verified keys cached by digest and refused at once when revoked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, update
from starlette.testclient import TestClient

from api_probes import probe_app
from api_support import auth

pytest_plugins = ["api_support"]


@pytest.fixture(scope="module")
def api_app(engine):
    return probe_app(engine)


def assert_401(response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="pfd-db"'
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:pfd-db:problem:unauthorized"


def assert_403(response, words: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "urn:pfd-db:problem:forbidden"
    assert words in response.json()["detail"]


def test_a_key_is_accepted_as_bearer_or_x_api_key(client, user_key):
    key = user_key(role="viewer", scopes=["read"])
    for headers in (
        {"Authorization": f"Bearer {key}"},
        {"Authorization": f"bearer {key}"},
        {"X-API-Key": key},
    ):
        response = client.get("/api/v1/_probe/read", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"username": key.username, "admin": False}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "pfd_short"},
        {"X-API-Key": "x" * 5000},
        {"X-API-Key": "pfd_0123456789abcdef_" + "A" * 43},  # unknown prefix
    ],
    ids=["none", "basic", "empty", "malformed", "huge", "unknown"],
)
def test_missing_malformed_and_unknown_keys_are_401(client, headers):
    assert_401(client.get("/api/v1/_probe/read", headers=headers))


def test_a_wrong_secret_is_401(client, user_key):
    key = user_key()
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    response = client.get("/api/v1/_probe/read", headers=auth(wrong))
    assert_401(response)
    assert key[:20] not in response.text and wrong[20:] not in response.text


def test_an_expired_key_is_401_even_when_cached(client, user_key, db):
    from pfd_db.models import APIKey
    from pfd_db.types import utcnow

    key = user_key()
    assert client.get("/api/v1/_probe/read", headers=auth(key)).status_code == 200
    db.execute(
        update(APIKey)
        .where(APIKey.id == key.key_id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.commit()
    assert_401(client.get("/api/v1/_probe/read", headers=auth(key)))


def test_a_revoked_key_is_refused_at_once_and_leaves_the_cache(client, user_key, db, api_app):
    from pfd_db.api.auth_cache import digest_of
    from pfd_db.store.identity import api_keys

    key = user_key()
    assert client.get("/api/v1/_probe/read", headers=auth(key)).status_code == 200
    cache = api_app.state.auth_cache
    assert cache.get(digest_of(key)) is not None  # cached: verify is not called again
    api_keys.revoke(db, key.key_id)
    db.commit()
    assert_401(client.get("/api/v1/_probe/read", headers=auth(key)))
    assert cache.get(digest_of(key)) is None
    assert_401(client.get("/api/v1/_probe/read", headers=auth(key)))  # and by verify now


def test_a_deactivated_owner_is_refused_at_once(client, user_key, db):
    from pfd_db.store.identity import users

    key = user_key()
    assert client.get("/api/v1/_probe/read", headers=auth(key)).status_code == 200
    users.deactivate(db, key.user_id)
    db.commit()
    assert_401(client.get("/api/v1/_probe/read", headers=auth(key)))


def test_the_cache_holds_digests_only_and_a_hit_costs_one_key_statement(
    client, user_key, engine, api_app
):
    key = user_key()
    assert client.get("/api/v1/_probe/read", headers=auth(key)).status_code == 200
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert client.get("/api/v1/_probe/read", headers=auth(key)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    # (the request log's flusher may read api_keys meanwhile: look for what verify sends)
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE API_KEYS")]
    assert len(updates) == 1, statements
    assert not [s for s in statements if "api_keys.prefix" in s], statements
    entries = list(api_app.state.auth_cache._entries)
    assert entries and all(len(e) == 64 and key not in e for e in entries)


SCOPES_AND_ROLES = [
    # scopes, role, read, write, admin
    (["read"], "viewer", 200, "'write' scope", "'admin' scope"),
    (["write"], "viewer", 200, "role operator", "'admin' scope"),
    (["read"], "operator", 200, "'write' scope", "'admin' scope"),
    (["write"], "operator", 200, 200, "'admin' scope"),
    (["admin"], "operator", 200, 200, "role admin"),
    (["write"], "admin", 200, 200, "'admin' scope"),
    (["admin"], "admin", 200, 200, 200),
    (["admin"], "super_admin", 200, 200, 200),
]


@pytest.mark.parametrize(("scopes", "role", "read", "write", "admin"), SCOPES_AND_ROLES)
def test_scope_and_role_must_both_allow_the_route(
    client, user_key, scopes, role, read, write, admin
):
    key = user_key(scopes=scopes, role=role)
    answers = {
        "read": client.get("/api/v1/_probe/read", headers=auth(key)),
        "write": client.post("/api/v1/_probe/write", headers=auth(key), json={"value": 1}),
        "admin": client.get("/api/v1/_probe/admin", headers=auth(key)),
    }
    for route, expected in (("read", read), ("write", write), ("admin", admin)):
        if expected == 200:
            assert answers[route].status_code == 200, (route, answers[route].text)
        else:
            assert_403(answers[route], expected)
    assert answers["read"].json()["admin"] is (role in ("admin", "super_admin"))


def test_x_forwarded_for_is_honoured_only_from_trusted_proxies(engine, db, user_key, monkeypatch):
    from pfd_db.config import get_settings

    key = user_key()
    forwarded = {**auth(key), "X-Forwarded-For": "203.0.113.9"}
    with TestClient(probe_app(engine), client=("10.1.2.3", 5000)) as plain:
        assert plain.get("/api/v1/_probe/whoami", headers=forwarded).json() == "10.1.2.3"
    monkeypatch.setenv("PFD_DB_SERVER_TRUSTED_PROXIES", "10.0.0.0/8")
    get_settings.cache_clear()
    trusting = probe_app(engine)
    with TestClient(trusting, client=("10.1.2.3", 5000)) as behind_proxy:
        answer = behind_proxy.get("/api/v1/_probe/whoami", headers=forwarded)
        assert answer.json() == "203.0.113.9"
    with TestClient(trusting, client=("192.0.2.7", 5000)) as direct:
        assert direct.get("/api/v1/_probe/whoami", headers=forwarded).json() == "192.0.2.7"


def test_cors_is_off_by_default_and_follows_the_setting(engine, db, monkeypatch):
    from pfd_db.config import get_settings

    preflight = {
        "Origin": "https://dash.example.org",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Authorization",
    }
    with TestClient(probe_app(engine)) as closed:
        answer = closed.options("/api/v1/_probe/read", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    monkeypatch.setenv("PFD_DB_SERVER_CORS_ORIGINS", "https://dash.example.org")
    get_settings.cache_clear()
    with TestClient(probe_app(engine)) as opened:
        answer = opened.options("/api/v1/_probe/read", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://dash.example.org"
        other = opened.options(
            "/api/v1/_probe/read", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"
