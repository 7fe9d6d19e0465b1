"""The server's core on both dialects: health and readiness, errors as problem
documents (RFC 9457), the body limit, NaN refused, paging cursors, OpenAPI and /docs."""

from __future__ import annotations

pytest_plugins = ["api_support"]


def test_health_needs_no_key_and_touches_no_database(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_an_api_path_without_a_key_is_a_401_problem_with_a_challenge(client):
    response = client.get("/api/v1/anything")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["type"] == "urn:pfd-db:problem:unauthorized"
    assert body["title"] == "Unauthorized" and "API key" in body["detail"]
