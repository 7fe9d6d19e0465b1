"""Rate limits on both dialects: ``rate_limits.consume`` (one UPDATE of the key's
fixed window), the 429 and the RateLimit-* headers over HTTP, and on PostgreSQL a
limit held exactly across two real worker processes of ``pfd-db serve``."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, select, update

from api_probes import probe_app
from api_support import auth, issue_key

pytest_plugins = ["api_support"]


@pytest.fixture(scope="module")
def api_app(engine):
    return probe_app(engine)


# --- the store function -----------------------------------------------------------


def test_consume_counts_in_a_fixed_hourly_window(db, user_key):
    from pfd_db.models import APIKey
    from pfd_db.store.identity.rate_limits import consume
    from pfd_db.types import utcnow

    key = user_key(rate_limit=2)
    start = utcnow()
    first = consume(db, key.key_id, start)
    assert (first.limit, first.remaining, first.count, first.allowed) == (2, 1, 1, True)
    assert first.reset_at == start + timedelta(hours=1)
    second = consume(db, key.key_id, start + timedelta(minutes=10))
    assert (second.remaining, second.count, second.allowed) == (0, 2, True)
    assert second.reset_at == first.reset_at  # the window does not slide
    third = consume(db, key.key_id, start + timedelta(minutes=59))
    assert (third.remaining, third.allowed) == (0, False)
    assert third.seconds_to_reset(start + timedelta(minutes=59)) == 60
    fresh = consume(db, key.key_id, start + timedelta(hours=1))
    assert (fresh.count, fresh.allowed, fresh.reset_at) == (1, True, start + timedelta(hours=2))
    db.commit()
    stored = db.execute(
        select(APIKey.rate_window_start, APIKey.rate_window_count).where(APIKey.id == key.key_id)
    ).one()
    assert tuple(stored) == (start + timedelta(hours=1), 1)


def test_consume_takes_one_statement_and_no_count(db, user_key):
    from pfd_db.store.identity.rate_limits import consume

    key = user_key()
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    connection = db.connection()  # this session's statements only
    event.listen(connection, "before_cursor_execute", listener)
    try:
        consume(db, key.key_id)
    finally:
        event.remove(connection, "before_cursor_execute", listener)
    assert len(statements) == 1
    assert statements[0].lstrip().upper().startswith("UPDATE API_KEYS")
    assert "api_usage" not in statements[0] and "count(" not in statements[0].lower()


def test_consume_is_none_for_a_key_no_longer_usable(db, user_key):
    from pfd_db.models import APIKey
    from pfd_db.store.identity import api_keys, users
    from pfd_db.store.identity.rate_limits import consume
    from pfd_db.types import utcnow

    revoked, inactive, expired, orphaned, fine = (user_key() for _ in range(5))
    api_keys.revoke(db, revoked.key_id)
    db.execute(update(APIKey).where(APIKey.id == inactive.key_id).values(is_active=False))
    db.execute(
        update(APIKey)
        .where(APIKey.id == expired.key_id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    users.deactivate(db, orphaned.user_id)
    db.flush()
    for key in (revoked, inactive, expired, orphaned):
        assert consume(db, key.key_id) is None
    assert consume(db, 10**9) is None
    assert consume(db, fine.key_id) is not None
    counts = dict(db.execute(select(APIKey.id, APIKey.rate_window_count)).all())
    assert counts[revoked.key_id] == counts[orphaned.key_id] == 0  # nothing written for them


@pytest.mark.parametrize("bad", ["1", 1.5, None, True, 0, -1, 2**70])
def test_consume_refuses_a_bad_key(db, bad):
    from pfd_db.errors import InvalidInput, NotFound
    from pfd_db.store.identity.rate_limits import consume

    # As every store function that takes a record: not an id is InvalidInput, an
    # id no row can have NotFound (an id in range that no key has: None, above).
    expected = NotFound if isinstance(bad, int) and not isinstance(bad, bool) else InvalidInput
    with pytest.raises(expected):
        consume(db, bad)


# --- over HTTP --------------------------------------------------------------------


def test_rate_headers_on_every_answer_and_429_past_the_limit(client, user_key):
    key = user_key(rate_limit=3)
    remaining = []
    for _ in range(3):
        response = client.get("/api/v1/_probe/read", headers=auth(key))
        assert response.status_code == 200
        assert response.headers["ratelimit-limit"] == "3"
        assert 3590 <= int(response.headers["ratelimit-reset"]) <= 3600
        remaining.append(int(response.headers["ratelimit-remaining"]))
    assert remaining == [2, 1, 0]
    refused = client.get("/api/v1/_probe/read", headers=auth(key))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:pfd-db:problem:rate-limited"
    assert "3 requests an hour" in refused.json()["detail"]
    assert 3590 <= int(refused.headers["retry-after"]) <= 3600
    assert refused.headers["ratelimit-remaining"] == "0"


def test_refused_requests_count_too_and_carry_the_headers(client, user_key):
    key = user_key(scopes=["read"], rate_limit=5)
    forbidden = client.post("/api/v1/_probe/write", headers=auth(key), json={"value": 1})
    assert forbidden.status_code == 403
    assert forbidden.headers["ratelimit-remaining"] == "4"
    invalid = client.get("/api/v1/_probe/users?limit=0", headers=auth(key))
    assert invalid.status_code == 422 and invalid.headers["ratelimit-remaining"] == "3"
    assert (
        client.get("/api/v1/_probe/read", headers=auth(key)).headers["ratelimit-remaining"] == "2"
    )


def test_a_write_past_the_limit_is_refused_and_leaves_nothing(client, user_key, db):
    """The limit's write comes last in the route's transaction: past the limit,
    the route's own work is rolled back with it."""
    from pfd_db.models import Dataset, Experiment

    key = user_key(rate_limit=1)
    db.add(Dataset(name="capped", num_signals=0, fault_types=["normal"],
                   severity_levels=["mild"], file_path="d"))  # fmt: skip
    db.commit()
    new = {"model_type": "cnn1d", "dataset": "capped", "config": {}}
    made = client.post("/api/v1/experiments", headers=auth(key), json={"name": "one", **new})
    assert made.status_code == 201 and made.headers["ratelimit-remaining"] == "0"
    refused = client.post("/api/v1/experiments", headers=auth(key), json={"name": "two", **new})
    assert refused.status_code == 429 and refused.headers["ratelimit-remaining"] == "0"
    db.expire_all()
    assert db.scalars(
        select(Experiment.name).where(Experiment.created_by == key.user_id)
    ).all() == ["one"]


def test_a_write_the_store_refuses_is_counted_once(client, user_key):
    key = user_key(rate_limit=3)
    missing = client.post("/api/v1/experiments/987654/epochs", headers=auth(key),
                          json={"epochs": []})  # fmt: skip
    assert missing.status_code == 404 and missing.headers["ratelimit-remaining"] == "2"
    assert (
        client.get("/api/v1/_probe/read", headers=auth(key)).headers["ratelimit-remaining"] == "1"
    )


def test_a_window_from_an_earlier_hour_starts_again(client, user_key, db):
    from pfd_db.models import APIKey
    from pfd_db.types import utcnow

    key = user_key(rate_limit=2)
    db.execute(
        update(APIKey)
        .where(APIKey.id == key.key_id)
        .values(rate_window_start=utcnow() - timedelta(minutes=61), rate_window_count=2)
    )
    db.commit()
    response = client.get("/api/v1/_probe/read", headers=auth(key))
    assert response.status_code == 200 and response.headers["ratelimit-remaining"] == "1"


# --- two worker processes on PostgreSQL --------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.fixture
def pg_url(pg_server):
    name = f"pfd_limits_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(name)
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


def test_two_workers_hold_a_limit_of_n_exactly(pg_url, plaintexts):
    from sqlalchemy.orm import Session

    from pfd_db import migrations
    from pfd_db.engine import make_engine
    from served_process import Served

    limit = 40
    engine = make_engine(pg_url)
    try:
        migrations.upgrade(engine)
        with Session(engine, expire_on_commit=False) as session:
            key = issue_key(session, plaintexts, ["read"], "viewer", rate_limit=limit)
    finally:
        engine.dispose()

    def one_request(_: int) -> int:
        # A new connection each time, so the kernel hands them to either worker.
        with httpx.Client(timeout=30.0) as http:
            return http.get(f"{server.base_url}/api/v1/experiments", headers=auth(key)).status_code

    with Served(pg_url, workers=2) as server:
        workers = _children(server.process.pid)
        before = {pid: _cpu_ticks(pid) for pid in workers}
        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(one_request, range(3 * limit)))
        busy = [pid for pid in workers if _cpu_ticks(pid) - before[pid] > 5]
        assert server.stop() == 0
    assert statuses.count(200) == limit, statuses
    assert statuses.count(429) == 2 * limit, statuses
    assert len(busy) >= 2, f"only {busy} of {workers} served requests"
