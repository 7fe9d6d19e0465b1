"""GET /metrics on both dialects: Prometheus text from a registry of the app's own,
for admin keys or a configured scrape address; requests by route template and
status, the latency histogram, connections in use, the request log's depth,
failed flushes and dropped rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from starlette.testclient import TestClient

from pfd_db.store.identity import api_keys, users


def issued(db, plaintexts, username: str, role: str, scopes: list[str]) -> str:
    user = users.create_user(db, username, f"{username}@example.com", "a long passphrase 42", role)
    plaintext, _ = api_keys.issue(db, user, f"{username}-key", scopes)
    plaintexts.append(plaintext)
    return plaintext


@pytest.fixture
def keys(db, plaintexts) -> dict[str, str]:
    made = {
        "admin": issued(db, plaintexts, "root", "admin", ["read", "write", "admin"]),
        "reader": issued(db, plaintexts, "rita", "viewer", ["read"]),
        # an admin-scope key whose owner is no admin: the role refuses it
        "operator": issued(db, plaintexts, "otto", "operator", ["read", "write", "admin"]),
    }
    db.commit()
    return made


def new_app(engine):
    from pfd_db.api import create_app

    return create_app(engine=engine)


@pytest.fixture
def client(engine, db) -> Iterator[TestClient]:
    with TestClient(new_app(engine), raise_server_exceptions=False) as test_client:
        yield test_client


def samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, from Prometheus text."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def scrape(client: TestClient, key: str) -> dict:
    response = client.get("/metrics", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def test_metrics_are_for_admins_only(client, keys):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "pfd_db_http_requests" not in anonymous.text
    for who in ("reader", "operator"):
        refused = client.get("/metrics", headers={"X-API-Key": keys[who]})
        assert refused.status_code == 403, who
        assert refused.json()["status"] == 403
    assert client.get("/metrics", headers={"X-API-Key": "pfd_x"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {keys['admin']}"}).is_success


def test_requests_are_counted_by_route_template_and_status(client, keys):
    admin = {"X-API-Key": keys["admin"]}
    for _ in range(2):
        assert client.get("/api/v1/experiments/424242", headers=admin).status_code == 404
    assert client.get("/api/v1/experiments?limit=5", headers=admin).status_code == 200
    assert client.get("/api/v1/experiments").status_code == 401
    assert client.get("/nowhere/at/all").status_code == 404
    found = scrape(client, keys["admin"])
    one = "/api/v1/experiments/{experiment_id}"
    requests = "pfd_db_http_requests_total"
    assert value(found, requests, route=one, method="GET", status="404") == 2
    assert value(found, requests, route="/api/v1/experiments", method="GET", status="200") == 1
    assert value(found, requests, route="/api/v1/experiments", method="GET", status="401") == 1
    assert value(found, requests, route="(unmatched)", method="GET", status="404") == 1
    assert not any("424242" in str(labels) or "nowhere" in str(labels) for _, labels in found)
    latency = "pfd_db_http_request_duration_seconds"
    assert value(found, f"{latency}_count", route=one) == 2
    assert value(found, f"{latency}_bucket", route=one, le="+Inf") == 2
    assert 0 < value(found, f"{latency}_sum", route=one) < 60
    assert value(found, "pfd_db_db_connections_in_use") is not None
    assert value(found, "pfd_db_db_connections_in_use") >= 0
    assert value(found, "pfd_db_request_log_depth") is not None
    assert value(found, "pfd_db_request_log_failed_flushes_total") == 0
    assert value(found, "pfd_db_request_log_dropped_rows_total") == 0
    # the app's registry, not the process-wide one
    global_labels = {"route": one, "method": "GET", "status": "404"}
    assert REGISTRY.get_sample_value(requests, global_labels) is None


def test_failed_flushes_and_the_buffer_depth_show(client, keys, engine):
    log = client.app.state.request_log
    log.flush()  # what the fixture's requests left
    admin = {"X-API-Key": keys["admin"]}
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE api_request_logs RENAME TO api_request_logs_away"))
    try:
        for _ in range(3):
            client.get("/api/v1/experiments/1", headers=admin)
        log.flush()
        found = scrape(client, keys["admin"])
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE api_request_logs_away RENAME TO api_request_logs"))
    assert value(found, "pfd_db_request_log_failed_flushes_total") >= 1
    assert value(found, "pfd_db_request_log_depth") >= 3
    log.flush()
    after = scrape(client, keys["admin"])
    assert value(after, "pfd_db_request_log_depth") <= 1  # the scrape's own row, maybe
    assert value(after, "pfd_db_request_log_written_rows_total") >= 3


def test_a_scrape_address_reads_without_a_key(engine, db, keys, monkeypatch):
    from pfd_db.config import get_settings

    monkeypatch.setenv("PFD_DB_SERVER_METRICS_ADDRESSES", "10.9.8.0/24, 192.0.2.1")
    get_settings.cache_clear()
    app = new_app(engine)
    with TestClient(app, client=("10.9.8.7", 5000)) as scraper:
        allowed = scraper.get("/metrics")
        assert allowed.status_code == 200
        assert "pfd_db_http_requests_total" in allowed.text
        assert scraper.get("/api/v1/experiments").status_code == 401  # /metrics only
    with TestClient(app, client=("192.0.2.1", 5000)) as single:
        assert single.get("/metrics").status_code == 200
    with TestClient(app, client=("10.9.9.1", 5000)) as outsider:
        assert outsider.get("/metrics").status_code == 401
        assert outsider.get("/metrics", headers={"X-API-Key": keys["admin"]}).status_code == 200


def test_a_bad_scrape_address_setting_is_refused(monkeypatch):
    from pfd_db.config import get_settings
    from pfd_db.errors import ConfigurationError

    monkeypatch.setenv("PFD_DB_SERVER_METRICS_ADDRESSES", "10.0.0.0/8,not-an-address")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="PFD_DB_SERVER_METRICS_ADDRESSES"):
        get_settings()


def test_each_app_has_its_own_registry(engine, db, keys):
    first, second = new_app(engine), new_app(engine)
    admin = {"X-API-Key": keys["admin"]}
    with TestClient(first) as one, TestClient(second) as other:
        one.get("/api/v1/experiments", headers=admin)
        counted = scrape(one, keys["admin"])
        untouched = scrape(other, keys["admin"])
    labels = {"route": "/api/v1/experiments", "method": "GET", "status": "200"}
    assert value(counted, "pfd_db_http_requests_total", **labels) == 1
    assert value(untouched, "pfd_db_http_requests_total", **labels) is None
