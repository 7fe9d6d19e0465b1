"""Request logging on both dialects: the buffer (pfd_db.api.request_log), the bulk
usage writer (pfd_db.store.ops.usage_log), and every request of a scripted
sequence through the app, refused ones included, found in api_request_logs and
api_usage after close(), with no query string or key in any stored column."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import sessionmaker

from pfd_db.api.request_log import RequestLog
from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import APIKey, APIRequestLog, APIUsage, User
from pfd_db.store.identity import api_keys
from pfd_db.store.ops import usage_log

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def row(n: int, key_id: int | None = None, status: int = 200) -> dict[str, object]:
    return {
        "endpoint": f"/api/v1/test/{n}",
        "method": "GET",
        "status_code": status,
        "request_time": T0 + timedelta(milliseconds=n),
        "response_time_ms": 1.5,
        "ip_address": "127.0.0.1",
        "user_agent": "pytest",
        "api_key_id": key_id,
        "error_message": None,
    }


def stored(db, model=APIRequestLog) -> int:
    db.rollback()  # a fresh snapshot
    return db.scalar(select(func.count()).select_from(model))


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def key(db, plaintexts) -> APIKey:
    owner = User(username="ada", email="ada@example.com")
    db.add(owner)
    plaintext, record = api_keys.issue(db, owner, name="ci")
    plaintexts.append(plaintext)
    db.commit()
    return record


@pytest.fixture
def buffers(engine) -> Iterator[Callable[..., RequestLog]]:
    """RequestLogs over the test database, all closed after the test."""
    made: list[RequestLog] = []

    def make(**options: object) -> RequestLog:
        log = RequestLog(sessionmaker(bind=engine, expire_on_commit=False), **options)
        made.append(log)
        return log

    yield make
    for log in made:
        log.close()


@contextmanager
def table_gone(engine, name: str) -> Iterator[None]:
    """``name`` renamed away for a moment: every write to it fails meanwhile."""
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {name} RENAME TO {name}_away"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {name}_away RENAME TO {name}"))


# --- the store's bulk usage writer -----------------------------------------------


def test_record_usage_writes_every_row(db, key):
    rows = [
        {
            "api_key_id": key.id,
            "endpoint": "/api/v1/experiments/{id}",
            "method": "get",
            "status_code": 200 + n % 3,
            "response_time_ms": n,
            "timestamp": T0 + timedelta(seconds=n),
        }
        for n in range(1200)
    ]
    assert usage_log.record_usage(db, rows) == 1200
    db.commit()
    stored_rows = db.execute(
        select(APIUsage.method, APIUsage.status_code, APIUsage.timestamp).order_by(APIUsage.id)
    ).all()
    assert len(stored_rows) == 1200
    assert {r.method for r in stored_rows} == {"GET"}
    assert Counter(r.status_code for r in stored_rows) == {200: 400, 201: 400, 202: 400}
    assert stored_rows[5].timestamp == T0 + timedelta(seconds=5)
    assert usage_log.record_usage(db, []) == 0


def test_record_usage_refuses_a_bad_row_and_writes_nothing(db, key):
    good = {"api_key_id": key.id, "endpoint": "/a", "method": "GET", "status_code": 200}
    with pytest.raises(InvalidInput, match="row 1: status_code"):
        usage_log.record_usage(db, [good, {**good, "status_code": 700}])
    with pytest.raises(InvalidInput, match="row 0: missing fields"):
        usage_log.record_usage(db, [{"api_key_id": key.id}])
    with pytest.raises(InvalidInput, match="unknown fields"):
        usage_log.record_usage(db, [{**good, "secret": "x"}])
    with pytest.raises(NotFound, match="row 1: no APIKey"):
        usage_log.record_usage(db, [good, {**good, "api_key_id": key.id + 1000}])
    db.rollback()
    assert stored(db, APIUsage) == 0


# --- the buffer -------------------------------------------------------------------


def test_close_writes_every_row_and_the_usage_of_keyed_ones(db, key, buffers):
    log = buffers(flush_seconds=60)  # nothing flushes by time during the test
    for n in range(1234):
        log.add(row(n, key.id if n % 2 else None))
    log.close()
    assert log.depth == 0 and log.written_rows == 1234 and log.dropped_rows == 0
    assert stored(db) == 1234
    assert stored(db, APIUsage) == 617
    assert db.scalar(select(func.count()).where(APIRequestLog.api_key_id == key.id)) == 617
    log.add(row(9999))  # after close: dropped, counted, nothing written
    assert log.dropped_rows == 1 and stored(db) == 1234


def test_flushes_once_flush_rows_wait_and_every_flush_seconds(db, buffers):
    by_count = buffers(flush_rows=50, flush_seconds=60)
    for n in range(49):
        by_count.add(row(n))
    time.sleep(0.3)
    assert stored(db) == 0  # below flush_rows, long before flush_seconds
    by_count.add(row(49))
    assert wait_until(lambda: stored(db) == 50)
    by_time = buffers(flush_rows=1000, flush_seconds=0.2)
    by_time.add(row(100))
    assert wait_until(lambda: stored(db) == 51, seconds=5)
    assert by_time.depth == 0


def test_a_failed_flush_is_retried_and_counted(db, engine, buffers):
    log = buffers(flush_seconds=0.05, max_backoff_seconds=0.2)
    with table_gone(engine, "api_request_logs"):
        for n in range(20):
            log.add(row(n))
        assert wait_until(lambda: log.failed_flushes >= 2)  # retried, still failing
        assert log.depth == 20 and log.written_rows == 0
    assert wait_until(lambda: log.depth == 0)  # the table is back: the retry works
    assert log.written_rows == 20 and log.dropped_rows == 0
    assert stored(db) == 20
    log.close()
    assert log.written_rows == 20


def test_flush_called_while_the_table_is_gone_keeps_the_rows(db, engine, buffers):
    log = buffers(flush_seconds=60)
    log.add(row(1))
    log.add(row(2))
    with table_gone(engine, "api_request_logs"):
        assert log.flush() == 0  # never raises
    assert log.failed_flushes == 1 and log.depth == 2
    assert log.flush() == 2
    assert stored(db) == 2


def test_a_full_buffer_drops_its_oldest_rows(db, buffers):
    log = buffers(capacity=10, flush_rows=1000, flush_seconds=60)
    for n in range(15):
        log.add(row(n))
    assert log.depth == 10 and log.dropped_rows == 5
    log.close()
    endpoints = set(db.scalars(select(APIRequestLog.endpoint)))
    assert endpoints == {f"/api/v1/test/{n}" for n in range(5, 15)}


def test_close_counts_what_it_could_not_write(db, engine, buffers):
    log = buffers(flush_seconds=60, close_seconds=0.3)
    log.add(row(1))
    with table_gone(engine, "api_request_logs"):
        log.close()
    assert log.dropped_rows == 1 and log.depth == 0 and log.failed_flushes >= 1
    assert stored(db) == 0


def test_a_key_deleted_before_the_flush_leaves_its_rows_keyless(db, key, buffers):
    log = buffers(flush_seconds=60)
    log.add(row(1, key.id))
    log.add(row(2))
    db.execute(delete(APIKey).where(APIKey.id == key.id))
    db.commit()
    log.close()
    assert log.written_rows == 2
    assert db.scalars(select(APIRequestLog.api_key_id)).all() == [None, None]
    assert stored(db, APIUsage) == 0


def test_a_row_the_store_refuses_is_dropped_not_retried(db, buffers):
    log = buffers(flush_seconds=60)
    log.add(row(1))
    log.add(row(2, status=42))
    log.add({"endpoint": "/x"})  # not a request row at all
    log.add(row(3))
    log.close()
    assert log.written_rows == 2 and log.dropped_rows == 2 and log.failed_flushes == 0
    assert set(db.scalars(select(APIRequestLog.endpoint))) == {"/api/v1/test/1", "/api/v1/test/3"}


# --- every request through the app --------------------------------------------------

SECRET_QUERY = "secret-query-7f3a"
SECRET_IN_PATH = "token-in-url-9c1e"
BOGUS_KEY = "pfd_00000000deadbeef_" + "A" * 43


def issued(db, plaintexts, username: str, role: str, scopes: list[str], **options) -> tuple:
    from pfd_db.store.identity import users

    user = users.create_user(db, username, f"{username}@example.com", "a long passphrase 42", role)
    plaintext, record = api_keys.issue(db, user, f"{username}-key", scopes, **options)
    plaintexts.append(plaintext)
    return plaintext, record


def test_every_request_of_a_scripted_sequence_is_logged_after_close(
    db, engine, plaintexts, monkeypatch
):
    from starlette.testclient import TestClient

    from conftest import find_plaintexts
    from pfd_db.api import create_app
    from pfd_db.config import get_settings
    from pfd_db.models import Base

    monkeypatch.setenv("PFD_DB_SERVER_BODY_LIMIT_BYTES", "2000")
    get_settings.cache_clear()
    admin, admin_record = issued(db, plaintexts, "root", "admin", ["read", "write", "admin"])
    reader, reader_record = issued(db, plaintexts, "rita", "viewer", ["read"])
    limited, limited_record = issued(db, plaintexts, "lim", "viewer", ["read"], rate_limit=1)
    db.commit()
    plaintexts += [BOGUS_KEY, SECRET_QUERY, SECRET_IN_PATH]
    as_admin, as_reader = {"X-API-Key": admin}, {"Authorization": f"Bearer {reader}"}
    as_limited = {"X-API-Key": limited}
    experiments, one = "/api/v1/experiments", "/api/v1/experiments/{experiment_id}"
    script = [  # (method, url, headers, body, status, endpoint stored, key)
        ("GET", experiments, as_admin, None, 200, experiments, admin_record),
        ("GET", f"{experiments}?q={SECRET_QUERY}", as_admin, None, 200, experiments, admin_record),
        ("GET", f"{experiments}/999999", as_admin, None, 404, one, admin_record),
        ("GET", experiments, {}, None, 401, experiments, None),
        ("GET", experiments, {"X-API-Key": BOGUS_KEY}, None, 401, experiments, None),
        ("GET", "/api/v1/admin/users", as_reader, None, 403, "/api/v1/admin/users", reader_record),
        ("POST", experiments, as_admin, b'{"name": NaN}', 422, experiments, admin_record),
        ("POST", experiments, as_admin, b'{"n": "' + b"x" * 3000 + b'"}', 413, experiments,
         admin_record),
        ("GET", f"/api/v1/no/such/{SECRET_IN_PATH}", as_admin, None, 404, "(unmatched)",
         admin_record),
        ("PATCH", experiments, as_admin, None, 405, experiments, admin_record),
        ("GET", experiments, as_limited, None, 200, experiments, limited_record),
        ("GET", experiments, as_limited, None, 429, experiments, limited_record),
    ]  # fmt: skip
    app = create_app(engine=engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, url, headers, body, status, _, _ in script:
            if body is not None:
                headers = {**headers, "Content-Type": "application/json"}
            response = client.request(method, url, headers=headers, content=body)
            assert response.status_code == status, (method, url, response.text)
        client.get("/health")  # not under /api: counted in the metrics, not logged
    # leaving the client ran the app's shutdown: request_log.close()
    log = app.state.request_log
    assert log.closed and log.depth == 0 and log.dropped_rows == 0

    db.rollback()
    rows = db.execute(
        select(
            APIRequestLog.method,
            APIRequestLog.endpoint,
            APIRequestLog.status_code,
            APIRequestLog.api_key_id,
            APIRequestLog.response_time_ms,
            APIRequestLog.error_message,
        ).order_by(APIRequestLog.request_time, APIRequestLog.id)
    ).all()
    expected = [
        (method, endpoint, status, None if key is None else key.id)
        for method, _, _, _, status, endpoint, key in script
    ]
    assert [(r.method, r.endpoint, r.status_code, r.api_key_id) for r in rows] == expected
    assert all(r.response_time_ms >= 0 for r in rows)
    assert {r.error_message for r in rows if r.status_code == 401} == {"Unauthorized"}
    usage = Counter(db.scalars(select(APIUsage.api_key_id)))
    assert usage == Counter(key.id for *_, key in script if key is not None)
    leaks = find_plaintexts(engine, Base.metadata, plaintexts)
    assert leaks == []


def test_the_client_address_stored_is_the_trusted_proxys_word(db, engine, monkeypatch):
    from starlette.testclient import TestClient

    from pfd_db.api import create_app
    from pfd_db.config import get_settings

    monkeypatch.setenv("PFD_DB_SERVER_TRUSTED_PROXIES", "10.0.0.0/8")
    get_settings.cache_clear()
    app = create_app(engine=engine)
    forwarded = {"X-Forwarded-For": "203.0.113.9", "User-Agent": "trainer/1.0"}
    proxied = TestClient(app, client=("10.1.2.3", 4000))  # no lifespan: closed below
    direct = TestClient(app, client=("198.51.100.7", 4000))  # not a trusted proxy
    assert proxied.get("/api/v1/experiments", headers=forwarded).status_code == 401
    assert direct.get("/api/v1/experiments", headers=forwarded).status_code == 401
    app.state.request_log.close()
    db.rollback()
    stored_rows = db.execute(
        select(APIRequestLog.ip_address, APIRequestLog.user_agent).order_by(APIRequestLog.id)
    ).all()
    assert [tuple(r) for r in stored_rows] == [
        ("203.0.113.9", "trainer/1.0"),
        ("198.51.100.7", "trainer/1.0"),
    ]
