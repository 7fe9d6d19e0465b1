"""The server's core on both dialects: health and readiness, every error as a
problem document (RFC 9457), the body limit, NaN and Infinity refused, paging
cursors, OpenAPI 3.1 and the offline /docs."""

from __future__ import annotations

import re
import uuid

import pytest
from starlette.testclient import TestClient

from api_probes import RAISING, probe_app
from api_support import auth

pytest_plugins = ["api_support"]

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api_app(engine):
    return probe_app(engine)


def assert_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:pfd-db:problem:{slug}"
    assert body["title"] and body["detail"]
    assert "Traceback" not in response.text and "SELECT" not in response.text
    return body


# --- health and readiness -------------------------------------------------------


def test_health_needs_no_key_and_touches_no_database(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_is_503_for_a_database_not_at_head(client):
    # The suite's database is made by create_all: no migration history.
    response = client.get("/ready")
    body = assert_problem(response, 503, "not-at-head")
    assert "pfd-db migrate" in body["detail"]
    assert response.headers["retry-after"]


def test_ready_is_200_for_a_database_at_head(fresh_url):
    from pfd_db import migrations
    from pfd_db.api import create_app
    from pfd_db.engine import make_engine

    engine = make_engine(fresh_url)
    try:
        migrations.upgrade(engine)
        with TestClient(create_app(engine=engine)) as client:
            response = client.get("/ready")
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "revision": migrations.head_revision()}
    finally:
        engine.dispose()


# --- errors as problem documents -------------------------------------------------

MAPPED = {
    "invalid-input": (422, "invalid-input", "name"),
    "invalid-query": (422, "invalid-query", "q"),
    "invalid-transition": (422, "invalid-transition", None),
    "not-found": (404, "not-found", None),
    "conflict": (409, "conflict", None),
    "authentication-failed": (401, "unauthorized", None),
    "rate-limited": (429, "rate-limited", None),
    "permission-denied": (403, "forbidden", None),
    "database-unavailable": (503, "database-unavailable", None),
    "unexpected": (500, "internal", None),
}


@pytest.mark.parametrize("kind", sorted(RAISING))
def test_each_store_error_maps_to_its_problem(client, user_key, kind):
    status, slug, field = MAPPED[kind]
    response = client.get(f"/api/v1/_probe/raise/{kind}", headers=auth(user_key()))
    body = assert_problem(response, status, slug)
    assert body.get("field") == field
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if status in (429, 503):
        assert int(response.headers["retry-after"]) > 0
    if kind == "invalid-query":
        assert body["position"] == 4
    if kind == "unexpected":  # the bug's text stays in the server's log
        assert "secret" not in response.text and "hidden" not in response.text


def test_unknown_route_and_wrong_method_are_problems(client, user_key):
    key = user_key()
    assert_problem(client.get("/api/v1/no-such-thing", headers=auth(key)), 404, "not-found")
    assert_problem(client.get("/no-such-page"), 404, "not-found")
    response = client.delete("/api/v1/_probe/read", headers=auth(key))
    assert_problem(response, 405, "method-not-allowed")


def test_validation_errors_name_the_field(client, user_key):
    key = user_key()
    missing = client.post("/api/v1/_probe/write", headers=auth(key), json={"note": "x"})
    assert assert_problem(missing, 422, "invalid-input")["field"] == "value"
    extra = client.post("/api/v1/_probe/write", headers=auth(key), json={"value": 1, "zz": 2})
    assert assert_problem(extra, 422, "invalid-input")["field"] == "zz"
    limit = client.get("/api/v1/_probe/users?limit=1001", headers=auth(key))
    assert assert_problem(limit, 422, "invalid-input")["field"] == "limit"
    cursor = client.get("/api/v1/_probe/users?cursor=!!not-a-cursor", headers=auth(key))
    assert assert_problem(cursor, 422, "invalid-input")["field"] == "cursor"
    broken = client.post(
        "/api/v1/_probe/write",
        headers={**auth(key), "content-type": "application/json"},
        content=b'{"value": ',
    )
    assert_problem(broken, 422, "invalid-input")


@pytest.mark.parametrize(
    "body",
    [
        b'{"value": NaN}',
        b'{"value": Infinity}',
        b'{"value": -Infinity}',
        b'{"value": 1, "extra": {"deep": [1, NaN]}}',
    ],
)
def test_nan_and_infinity_in_a_json_body_are_refused(client, user_key, body):
    response = client.post(
        "/api/v1/_probe/write",
        headers={**auth(user_key()), "content-type": "application/json"},
        content=body,
    )
    assert assert_problem(response, 422, "invalid-input")["field"] == "body"


def test_nan_as_text_is_just_text(client, user_key):
    response = client.post(
        "/api/v1/_probe/write",
        headers=auth(user_key()),
        json={"value": 2.5, "note": "NaN and Infinity"},
    )
    assert response.status_code == 200
    assert response.json() == {"value": 2.5, "note": "NaN and Infinity"}


# --- the body limit --------------------------------------------------------------


@pytest.fixture
def small_limit_client(engine, db, monkeypatch):
    from pfd_db.config import get_settings

    monkeypatch.setenv("PFD_DB_SERVER_BODY_LIMIT_BYTES", "1000")
    get_settings.cache_clear()
    with TestClient(probe_app(engine), raise_server_exceptions=False) as client:
        yield client


def test_a_body_over_the_limit_is_413_by_its_content_length(small_limit_client, user_key):
    key = user_key()
    big = {"value": 1, "note": "x" * 2000}
    response = small_limit_client.post("/api/v1/_probe/write", headers=auth(key), json=big)
    body = assert_problem(response, 413, "body-too-large")
    assert "over the limit of 1000 bytes" in body["detail"]
    fits = {"value": 1, "note": "x" * 900}
    assert small_limit_client.post("/api/v1/_probe/write", headers=auth(key), json=fits).is_success


def test_a_streamed_body_over_the_limit_is_413_by_counting(small_limit_client, user_key):
    key = user_key()

    def chunks(count: int):
        for _ in range(count):
            yield b"y" * 300

    # No Content-Length: the body arrives in chunks and is counted.
    over = small_limit_client.post("/api/v1/_probe/raw", headers=auth(key), content=chunks(5))
    assert_problem(over, 413, "body-too-large")
    under = small_limit_client.post("/api/v1/_probe/raw", headers=auth(key), content=chunks(3))
    assert under.status_code == 200 and under.json() == 900
    as_json = small_limit_client.post(
        "/api/v1/_probe/write",
        headers={**auth(key), "content-type": "application/json"},
        content=(b'{"value": 1, "note": "' + b"z" * 300 + b'"}' for _ in range(1)),
    )
    assert as_json.status_code == 200


# --- the database unreachable: 503 -----------------------------------------------


@pytest.fixture
def gone_url(dialect, tmp_path, request):
    """A URL whose database stops answering: a dropped PostgreSQL database, or a
    SQLite file whose directory is gone."""
    if dialect == "sqlite":
        folder = tmp_path / "gone"
        folder.mkdir()
        yield f"sqlite:///{folder / 'pfd.db'}", folder.rmdir
        return
    server = request.getfixturevalue("pg_server")
    name = f"pfd_gone_{uuid.uuid4().hex[:10]}"
    server.create_database(name)
    try:
        yield server.url(name), lambda: server.drop_database(name)
    finally:
        server.drop_database(name)


def test_an_unreachable_database_is_503_with_retry_after(gone_url):
    from pfd_db.api import create_app

    url, take_away = gone_url
    app = create_app(url)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        take_away()
        key = "pfd_0123456789abcdef_" + "A" * 43  # well-formed: it must reach the database
        response = client.get("/api/v1/experiments", headers=auth(key))
        assert_problem(response, 503, "database-unavailable")
        assert int(response.headers["retry-after"]) > 0
        ready = client.get("/ready")
        assert_problem(ready, 503, "database-unavailable")
        for answer in (response, ready):  # neither the database's name nor its address
            assert url.split("/")[-1] not in answer.text


# --- paging ----------------------------------------------------------------------


def test_a_list_pages_by_opaque_cursors(client, user_key):
    keys = [user_key() for _ in range(3)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/_probe/users", headers=auth(keys[0]), params=params).json()
        seen += [item["username"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert pages == 2
    assert seen == [key.username for key in keys]


def test_cursors_round_trip_any_json_value_and_refuse_others():
    from pfd_db.api.paging import decode_cursor, encode_cursor
    from pfd_db.errors import InvalidInput

    for value in (0, 2**62, "2026-12-07T10:00:00+00:00", [3, "x"], {"id": 1}):
        assert decode_cursor(encode_cursor(value)) == value
    for bad in ("", "@@", "bm90IGpzb24", encode_cursor(1)[:-1] + "*", "TmFO"):  # "NaN"
        with pytest.raises(InvalidInput) as caught:
            decode_cursor(bad)
        assert caught.value.field == "cursor"


# --- OpenAPI and /docs -----------------------------------------------------------


def test_openapi_31_describes_routes_security_and_problems(client):
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"
    }  # fmt: skip
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    operations = [
        (path, method, op)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        if path.startswith("/api/")
    ]
    assert len(operations) > 10
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert {"bearer": []} in op["security"] and {"apiKey": []} in op["security"], where
        for status in ("401", "403", "422", "429", "503"):
            content = op["responses"][status]["content"]
            assert content == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, where
        successes = [s for s in op["responses"] if s.startswith("2")]
        assert successes, where
        assert "RateLimit-Remaining" in op["responses"][successes[0]]["headers"], where
    assert "/health" in schema["paths"] and "/ready" in schema["paths"]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_docs_serve_swagger_ui_5_from_the_app_itself(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, page.text
    assert all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 0
    bundle = client.get(next(a for a in assets if a.endswith("swagger-ui-bundle.js"))).text
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle)
    assert version and int(version[1]) >= 5, "Swagger UI 5+ (renders OpenAPI 3.1) expected"
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
