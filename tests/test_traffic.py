"""API traffic on both dialects: bulk request logging, rollups with percentiles
computed by the database, and the dashboard's bounded queries."""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import APIKey, APIMetricsSummary, APIRequestLog, APIUsage, User
from pfd_db.models.enums import Aggregation
from pfd_db.store.identity import api_keys
from pfd_db.store.ops import request_figures, request_lists, request_log, rollups

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, midnight
HOUR = timedelta(hours=1)


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def python_percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 as statistics.quantiles(method="inclusive") gives them."""
    if len(values) == 1:  # Python 3.11 wants two points; one point is every percentile
        return values[0], values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def request(moment: datetime, ms: float, status: int = 200, endpoint: str = "/api/a", **more):
    return {
        "endpoint": endpoint,
        "method": "get",
        "status_code": status,
        "request_time": moment,
        "response_time_ms": ms,
        **more,
    }


def stored(db) -> int:
    return db.scalar(select(func.count()).select_from(APIRequestLog))


@pytest.fixture
def key(db, plaintexts) -> APIKey:
    owner = User(username="ada", email="ada@example.com")
    db.add(owner)
    plaintext, record = api_keys.issue(db, owner, name="ci")
    plaintexts.append(plaintext)
    db.commit()
    return record


# --- record_requests -----------------------------------------------------------------


def test_record_requests_writes_every_row_as_given(db, key):
    rows = [
        request(
            T0 + timedelta(seconds=i),
            12.5 + i,
            status=200 if i % 3 else 503,
            endpoint=f"/api/{i % 2}",
            request_size_bytes=100 + i,
            response_size_bytes=2000,
            ip_address="203.0.113.9",
            user_agent="curl/8.0",
            api_key_id=key.id if i % 2 else None,
            error_message=None if i % 3 else "upstream timeout",
            request_payload_sample={"q": [1, 2, i]},
            response_payload_sample=None,
        )
        for i in range(7)
    ]
    assert request_log.record_requests(db, rows) == 7
    db.commit()
    logs = db.scalars(select(APIRequestLog).order_by(APIRequestLog.request_time)).all()
    assert [log.request_time for log in logs] == [T0 + timedelta(seconds=i) for i in range(7)]
    first, second = logs[0], logs[1]
    assert (first.endpoint, first.method, first.status_code) == ("/api/0", "GET", 503)
    assert (first.response_time_ms, first.request_size_bytes, first.response_size_bytes) == (
        12.5,
        100,
        2000,
    )
    assert (first.api_key_id, second.api_key_id) == (None, key.id)
    assert first.error_message == "upstream timeout" and second.error_message is None
    assert first.request_payload_sample == {"q": [1, 2, 0]}
    assert first.ip_address == "203.0.113.9" and first.user_agent == "curl/8.0"
    # a missing sample is SQL NULL, not the JSON document null
    assert db.scalar(
        select(func.count()).where(APIRequestLog.response_payload_sample.is_(None))
    ) == 7


def test_defaults_fill_what_a_row_leaves_out(db):
    before = datetime.now(UTC)
    request_log.record_requests(db, [{"endpoint": "/x", "method": "POST", "status_code": 201,
                                  "response_time_ms": 3}])  # fmt: skip
    log = db.scalars(select(APIRequestLog)).one()
    assert before - timedelta(seconds=1) <= log.request_time <= datetime.now(UTC)
    assert (log.request_size_bytes, log.response_size_bytes) == (0, 0)
    assert log.response_time_ms == 3.0 and log.api_key_id is None


def test_client_text_is_clipped_and_escaped_like_the_login_history(db):
    request_log.record_requests(
        db, [request(T0, 1.0, ip_address="1.2.3.4\x00" + "9" * 60, user_agent="U" * 5000)]
    )
    log = db.scalars(select(APIRequestLog)).one()
    assert log.ip_address.startswith("1.2.3.4\\x00") and len(log.ip_address) == 45
    assert log.user_agent == "U" * request_log.USER_AGENT_MAX


def test_many_batches_in_one_call(db):
    rows = [request(T0 + timedelta(milliseconds=i), float(i % 97)) for i in range(12_345)]
    assert request_log.record_requests(db, rows) == 12_345
    assert stored(db) == 12_345
    assert request_log.record_requests(db, []) == 0


def test_nothing_is_written_when_the_caller_rolls_back(db):
    request_log.record_requests(db, [request(T0, 1.0)] * 3)
    db.rollback()
    assert stored(db) == 0


BAD_ROWS = [
    ({"endpoint": ""}, "endpoint"),
    ({"endpoint": "x" * 256}, "endpoint"),
    ({"endpoint": "/a\x00"}, "endpoint"),
    ({"method": None}, "method"),
    ({"method": "PROPPATCHXYZ"}, "method"),
    ({"status_code": 99}, "status_code"),
    ({"status_code": 600}, "status_code"),
    ({"status_code": True}, "status_code"),
    ({"status_code": "200"}, "status_code"),
    ({"response_time_ms": -1}, "response_time_ms"),
    ({"response_time_ms": math.nan}, "response_time_ms"),
    ({"response_time_ms": None}, "response_time_ms"),
    ({"request_time": datetime(2026, 1, 1)}, "request_time"),  # naive
    ({"request_time": "2026-01-01"}, "request_time"),
    ({"request_size_bytes": -5}, "request_size_bytes"),
    ({"response_size_bytes": 2**31}, "response_size_bytes"),
    ({"ip_address": 7}, "ip_address"),
    ({"api_key_id": 0}, "api_key_id"),
    ({"api_key_id": "1"}, "api_key_id"),
    ({"error_message": "boom\x00"}, "error_message"),
    ({"request_payload_sample": {"a": {1, 2}}}, "request_payload_sample"),
    ({"response_payload_sample": {"x": math.inf}}, "response_payload_sample"),
    ({"colour": "red"}, "unknown fields"),
]


@pytest.mark.parametrize(("change", "named"), BAD_ROWS, ids=[n for _, n in BAD_ROWS])
def test_a_bad_row_is_refused_naming_its_index_and_field_and_nothing_is_written(
    db, change, named
):
    rows = [request(T0, 1.0), request(T0, 2.0), {**request(T0, 3.0), **change}]
    with pytest.raises(InvalidInput, match=rf"row 2: .*{named}"):
        request_log.record_requests(db, rows)
    assert stored(db) == 0


def test_rows_that_are_not_a_list_of_mappings_are_refused(db):
    with pytest.raises(InvalidInput, match="rows must be a list"):
        request_log.record_requests(db, request(T0, 1.0))
    with pytest.raises(InvalidInput, match="row 1: must be a mapping"):
        request_log.record_requests(db, [request(T0, 1.0), ("/a", "GET")])
    assert stored(db) == 0


def test_an_unknown_api_key_is_not_found_and_nothing_is_written(db, key):
    rows = [request(T0, 1.0, api_key_id=key.id), request(T0, 1.0, api_key_id=key.id + 99)]
    with pytest.raises(NotFound, match=rf"row 1: no APIKey with id {key.id + 99}"):
        request_log.record_requests(db, rows)
    assert stored(db) == 0


# --- rollups ------------------------------------------------------------------------


def spread_requests(seed: int, hours: int, per_hour: tuple[int, ...]) -> list[dict]:
    """Requests over ``hours`` hours from T0, hour h holding per_hour[h % len] of them,
    with ties, whole and fractional times, and some failures."""
    rng = random.Random(seed)
    rows = []
    for hour in range(hours):
        for _ in range(per_hour[hour % len(per_hour)]):
            moment = T0 + hour * HOUR + timedelta(microseconds=rng.randrange(3_600_000_000))
            ms = rng.choice([rng.uniform(0, 2000), float(rng.randrange(50)), 7.25])
            status = rng.choice([200, 200, 200, 201, 304, 404, 500])
            rows.append(request(moment, ms, status, endpoint=rng.choice(["/a", "/b", "/c/d"])))
    return rows


def python_rollup(rows: list[dict], length: timedelta, first: datetime) -> dict[datetime, dict]:
    """What the rollup must say, computed in Python over the same rows."""
    periods: dict[datetime, list[dict]] = defaultdict(list)
    for row in rows:
        periods[first + ((row["request_time"] - first) // length) * length].append(row)
    expected = {}
    for start, held in periods.items():
        times = [row["response_time_ms"] for row in held]
        ok = sum(row["status_code"] < 400 for row in held)
        per_endpoint: dict[str, list[dict]] = defaultdict(list)
        for row in held:
            per_endpoint[row["endpoint"]].append(row)
        expected[start] = {
            "n": len(held),
            "ok": ok,
            "mean": statistics.fmean(times),
            "p": python_percentiles(times),
            "rps": len(held) / length.total_seconds(),
            "error_rate": (len(held) - ok) / len(held),
            "endpoints": {
                endpoint: (
                    len(rs),
                    sum(r["status_code"] < 400 for r in rs),
                    statistics.fmean(r["response_time_ms"] for r in rs),
                    max(r["response_time_ms"] for r in rs),
                )
                for endpoint, rs in per_endpoint.items()
            },
        }
    return expected


def assert_summaries_match(db, kind: Aggregation, expected: dict[datetime, dict]) -> None:
    found = rollups.summaries(db, kind, T0 - timedelta(weeks=2))
    assert [s.period_start for s in found] == sorted(expected)
    for summary in found:
        want = expected[summary.period_start]
        assert summary.period_end == summary.period_start + rollups.LENGTHS[kind]
        assert summary.aggregation_type == kind.value
        assert (summary.total_requests, summary.successful_requests) == (want["n"], want["ok"])
        assert summary.failed_requests == want["n"] - want["ok"]
        assert close(summary.avg_response_time_ms, want["mean"])
        percentiles = (
            summary.p50_response_time_ms,
            summary.p95_response_time_ms,
            summary.p99_response_time_ms,
        )
        assert all(map(close, percentiles, want["p"])), (percentiles, want["p"])
        assert close(summary.requests_per_second, want["rps"])
        assert close(summary.error_rate, want["error_rate"])
        assert set(summary.endpoint_metrics) == set(want["endpoints"])
        for endpoint, (n, ok, mean, largest) in want["endpoints"].items():
            figures = summary.endpoint_metrics[endpoint]
            assert (figures["requests"], figures["successes"]) == (n, ok)
            assert figures["failures"] == n - ok
            assert close(figures["avg_response_time_ms"], mean)
            assert close(figures["max_response_time_ms"], largest)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hourly_percentiles_agree_with_python_statistics(db, seed):
    rows = spread_requests(seed, hours=6, per_hour=(1, 2, 3, 101, 997, 40))
    request_log.record_requests(db, rows)
    assert rollups.rollup(db, "hourly", T0, T0 + 6 * HOUR) == 6
    db.commit()
    assert_summaries_match(db, Aggregation.HOURLY, python_rollup(rows, HOUR, T0))


def test_daily_and_weekly_periods_start_at_midnight_and_on_monday(db):
    rows = spread_requests(4, hours=24 * 9, per_hour=(3, 0, 5))  # Monday to Wednesday next week
    request_log.record_requests(db, rows)
    assert rollups.rollup(db, Aggregation.DAILY, T0 + HOUR, T0 + timedelta(days=9)) == 9
    assert rollups.rollup(db, "weekly", T0 + timedelta(days=3), T0 + timedelta(days=8)) == 2
    db.commit()
    assert_summaries_match(db, Aggregation.DAILY, python_rollup(rows, timedelta(days=1), T0))
    weekly = python_rollup(rows, timedelta(weeks=1), T0)
    assert_summaries_match(db, Aggregation.WEEKLY, weekly)
    assert [s.period_start.weekday() for s in rollups.summaries(db, "weekly", T0)] == [0, 0]


def test_a_rollup_run_again_replaces_its_rows(db):
    rows = spread_requests(5, hours=3, per_hour=(20,))
    request_log.record_requests(db, rows)
    rollups.rollup(db, "hourly", T0, T0 + 3 * HOUR)
    db.commit()
    first = {s.period_start: (s.id, s.created_at, s.updated_at) for s in
             rollups.summaries(db, "hourly", T0)}  # fmt: skip

    assert rollups.rollup(db, "hourly", T0, T0 + 3 * HOUR) == 3  # the same figures again
    db.commit()
    assert_summaries_match(db, Aggregation.HOURLY, python_rollup(rows, HOUR, T0))

    more = [request(T0 + HOUR + timedelta(minutes=5), 5000.0, 500, endpoint="/new")]
    request_log.record_requests(db, more)
    rollups.rollup(db, "hourly", T0 + HOUR, T0 + 2 * HOUR)
    db.commit()
    assert_summaries_match(db, Aggregation.HOURLY, python_rollup(rows + more, HOUR, T0))
    again = rollups.summaries(db, "hourly", T0)
    assert db.scalar(select(func.count()).select_from(APIMetricsSummary)) == 3
    for summary in again:
        row_id, created, updated = first[summary.period_start]
        assert (summary.id, summary.created_at) == (row_id, created)  # replaced in place
        assert summary.updated_at >= updated


def test_periods_without_requests_get_no_row_and_keep_the_one_they_had(db):
    request_log.record_requests(db, [request(T0 + 2 * HOUR, 1.0)])
    assert rollups.rollup(db, "hourly", T0, T0 + 5 * HOUR) == 1
    db.execute(APIRequestLog.__table__.delete())  # as retention would
    assert rollups.rollup(db, "hourly", T0, T0 + 5 * HOUR) == 0
    db.commit()
    [summary] = rollups.summaries(db, "hourly", T0)
    assert (summary.period_start, summary.total_requests) == (T0 + 2 * HOUR, 1)


def test_a_rollup_is_the_callers_to_commit(db):
    request_log.record_requests(db, [request(T0, 1.0)])
    db.commit()
    rollups.rollup(db, "daily", T0, T0 + HOUR)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(APIMetricsSummary)) == 0


def test_a_rollup_leaves_the_callers_settings_as_they_were(db):
    """On PostgreSQL a rollup turns JIT off for its own statements only."""
    request_log.record_requests(db, [request(T0, 1.0), request(T0 + HOUR, 3.0)])
    on_postgresql = db.get_bind().dialect.name == "postgresql"
    if on_postgresql:
        db.execute(text("SET LOCAL jit = on"))
    assert rollups.rollup(db, "hourly", T0, T0 + 2 * HOUR) == 2
    if on_postgresql:
        assert db.scalar(text("SELECT current_setting('jit')")) == "on"
    assert [s.avg_response_time_ms for s in rollups.summaries(db, "hourly", T0)] == [1.0, 3.0]


@pytest.mark.parametrize(
    ("period", "start", "end", "message"),
    [
        ("monthly", T0, T0 + HOUR, "period must be one of"),
        ("hourly", datetime(2026, 1, 1), T0, "start"),
        ("hourly", T0, T0, "must be after start"),
        ("hourly", T0, T0 - HOUR, "must be after start"),
        ("hourly", T0, T0 + timedelta(days=5000), "at most 100000"),
    ],
)
def test_rollup_refuses_bad_arguments(db, period, start, end, message):
    with pytest.raises(InvalidInput, match=message):
        rollups.rollup(db, period, start, end)


def test_period_starts():
    moment = datetime(2026, 3, 8, 23, 59, 59, 999_999, tzinfo=UTC)  # a Sunday
    assert rollups.period_start(Aggregation.HOURLY, moment) == datetime(2026, 3, 8, 23, tzinfo=UTC)
    assert rollups.period_start(Aggregation.DAILY, moment) == datetime(2026, 3, 8, tzinfo=UTC)
    assert rollups.period_start(Aggregation.WEEKLY, moment) == T0
    assert rollups.period_start(Aggregation.WEEKLY, T0) == T0


# --- the dashboard's queries --------------------------------------------------------


@pytest.fixture
def logged(db, key):
    """40 requests a minute apart from T0: every 4th fails, every 2nd with the key."""
    rows = [
        request(
            T0 + timedelta(minutes=i),
            float(i),
            status=500 if i % 4 == 0 else 200,
            endpoint="/slow" if i % 5 == 0 else "/fast",
            api_key_id=key.id if i % 2 else None,
            error_message="boom" if i % 4 == 0 else None,
        )
        for i in range(40)
    ]
    request_log.record_requests(db, rows)
    db.commit()
    return rows


def test_recent_requests_are_newest_first_bounded_and_paged(db, logged):
    page = request_lists.recent_requests(db, T0, limit=15)
    assert [log.response_time_ms for log in page] == [float(i) for i in range(39, 24, -1)]
    seen = [log.id for log in page]
    while page:
        page = request_lists.recent_requests(db, T0, limit=15, before_id=page[-1].id)
        seen += [log.id for log in page]
    assert sorted(seen) == sorted(db.scalars(select(APIRequestLog.id)))
    assert len(seen) == len(set(seen)) == 40
    window = request_lists.recent_requests(
        db, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    )
    assert [log.response_time_ms for log in window] == [float(i) for i in range(19, 9, -1)]


def test_recent_requests_filter_by_endpoint_key_status_and_failure(db, logged, key):
    by_endpoint = request_lists.recent_requests(db, T0, endpoint="/slow")
    assert {log.endpoint for log in by_endpoint} == {"/slow"} and len(by_endpoint) == 8
    by_key = request_lists.recent_requests(db, T0, api_key=key)
    assert {log.api_key_id for log in by_key} == {key.id} and len(by_key) == 20
    assert len(request_lists.recent_requests(db, T0, status_code=500)) == 10
    failed = request_lists.error_logs(db, T0, limit=3)
    assert [log.response_time_ms for log in failed] == [36.0, 32.0, 28.0]
    assert all(log.error_message == "boom" for log in failed)
    assert len(request_lists.error_logs(db, T0, endpoint="/slow")) == 2  # minutes 0 and 20


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"since": None}, "since is required"),
        ({"since": datetime(2026, 1, 1)}, "since"),
        ({"since": T0, "until": T0}, "must be after since"),
        ({"since": T0, "limit": 0}, "limit"),
        ({"since": T0, "limit": 1001}, "limit"),
        ({"since": T0, "before_id": -1}, "before_id"),
        ({"since": T0, "status_code": 42}, "status_code"),
    ],
)
def test_recent_requests_refuses_unbounded_or_bad_arguments(db, arguments, message):
    with pytest.raises(InvalidInput, match=message):
        request_lists.recent_requests(db, **arguments)


def test_a_cursor_whose_row_is_gone_ends_the_paging(db, logged):
    page = request_lists.recent_requests(db, T0, limit=5)
    db.execute(APIRequestLog.__table__.delete().where(APIRequestLog.id == page[-1].id))
    assert request_lists.recent_requests(db, T0, before_id=page[-1].id) == []


def test_endpoint_metrics_are_computed_by_the_database(db):
    rows = spread_requests(6, hours=2, per_hour=(300,))
    request_log.record_requests(db, rows)
    db.commit()
    figures = request_figures.endpoint_metrics(db, T0, T0 + 2 * HOUR, limit=2)
    per_endpoint: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        per_endpoint[row["endpoint"]].append(row)
    busiest = sorted(per_endpoint, key=lambda e: (-len(per_endpoint[e]), e))[:2]
    assert [f.endpoint for f in figures] == busiest
    for f in figures:
        held = per_endpoint[f.endpoint]
        times = [r["response_time_ms"] for r in held]
        ok = sum(r["status_code"] < 400 for r in held)
        assert (f.requests, f.successes, f.failures) == (len(held), ok, len(held) - ok)
        assert close(f.error_rate, (len(held) - ok) / len(held))
        assert close(f.avg_response_time_ms, statistics.fmean(times))
        assert f.max_response_time_ms == max(times)
        found = (f.p50_response_time_ms, f.p95_response_time_ms, f.p99_response_time_ms)
        assert all(map(close, found, python_percentiles(times)))


def test_the_timeline_has_every_bucket_empty_ones_included(db, logged):
    points = request_figures.timeline(db, T0, T0 + timedelta(minutes=60), timedelta(minutes=10))
    assert [p.start for p in points] == [T0 + timedelta(minutes=10 * i) for i in range(6)]
    assert [p.requests for p in points] == [10, 10, 10, 10, 0, 0]
    assert [p.failures for p in points] == [3, 2, 3, 2, 0, 0]
    assert close(points[1].avg_response_time_ms, 14.5) and points[5].avg_response_time_ms is None
    odd = request_figures.timeline(db, T0 + timedelta(seconds=30), T0 + timedelta(minutes=3), HOUR)
    assert [(p.start, p.requests) for p in odd] == [(T0 + timedelta(seconds=30), 2)]


@pytest.mark.parametrize(
    ("bucket", "message"),
    [
        (timedelta(milliseconds=500), "whole seconds"),
        (timedelta(0), "whole seconds"),
        (60, "timedelta"),
        (timedelta(seconds=1), "at most 10000"),
    ],
)
def test_the_timeline_refuses_bad_buckets(db, bucket, message):
    with pytest.raises(InvalidInput, match=message):
        request_figures.timeline(db, T0, T0 + timedelta(days=1), bucket)


def test_top_api_keys_counts_only_requests_made_with_a_key(db, logged, key):
    other_owner = db.get(User, key.user_id)
    _plain, other = api_keys.issue(db, other_owner, name="other")
    request_log.record_requests(db, [request(T0, 9.0, api_key_id=other.id)] * 3)
    db.commit()
    top = request_figures.top_api_keys(db, T0, T0 + HOUR)
    assert [(k.api_key_id, k.requests) for k in top] == [(key.id, 20), (other.id, 3)]
    first = top[0]
    assert (first.name, first.prefix, first.user_id) == ("ci", key.prefix, key.user_id)
    assert first.failures == 0  # the key made the odd-numbered requests, none failed
    assert close(first.avg_response_time_ms, statistics.fmean(range(1, 40, 2)))
    assert first.last_request == T0 + timedelta(minutes=39)
    assert [k.api_key_id for k in request_figures.top_api_keys(db, T0, limit=1)] == [key.id]


def test_key_usage_per_day_and_endpoint(db, key):
    for day in range(3):
        for n in range(day + 2):
            api_keys.record_usage(
                db, key, f"/e{n % 2}", "GET", 200 if n else 429, 10 * (n + 1),
                now=T0 + timedelta(days=day, hours=n),
            )  # fmt: skip
    db.commit()
    usage = request_figures.key_usage(db, key, T0, T0 + timedelta(days=3))
    assert [(d.day, d.requests, d.failures) for d in usage.days] == [
        (date(2026, 3, 2), 2, 1),
        (date(2026, 3, 3), 3, 1),
        (date(2026, 3, 4), 4, 1),
    ]
    assert close(usage.days[0].avg_response_time_ms, 15.0)
    assert (usage.requests, usage.failures) == (9, 3)
    assert usage.endpoints == {"/e0": 5, "/e1": 4}
    assert close(usage.avg_response_time_ms, (10 + 20 + 10 + 20 + 30 + 10 + 20 + 30 + 40) / 9)
    assert request_figures.key_usage(db, key, T0 + timedelta(days=5)).requests == 0
    with pytest.raises(InvalidInput, match="at most 3660 days"):
        request_figures.key_usage(db, key, T0 - timedelta(days=4000), T0)
    with pytest.raises(NotFound):
        request_figures.key_usage(db, key.id + 50, T0)


def test_usage_records_need_a_key_of_their_own(db, key):
    api_keys.record_usage(db, key, "/a", "GET", 200, 5, now=T0)
    assert db.scalar(select(func.count()).select_from(APIUsage)) == 1


# --- boundaries ------------------------------------------------------------------------


def test_a_400_is_a_failure_and_a_399_a_success_in_every_figure(db, key):
    """One request each of 399 and 400 (and a 599 and a 100): each figure counts
    the 400 and the 599 as failures, the 399 and the 100 as successes."""
    statuses = (100, 399, 400, 599)
    request_log.record_requests(
        db,
        [request(T0 + timedelta(minutes=i), 10.0 * (i + 1), s, api_key_id=key.id)
         for i, s in enumerate(statuses)],
    )  # fmt: skip
    for i, status in enumerate(statuses):
        api_keys.record_usage(db, key, "/api/a", "GET", status, 5, now=T0 + timedelta(minutes=i))
    db.commit()
    rollups.rollup(db, "hourly", T0, T0 + HOUR)
    db.commit()
    [summary] = rollups.summaries(db, "hourly", T0)
    assert (summary.total_requests, summary.successful_requests, summary.failed_requests) == (
        4, 2, 2,
    )  # fmt: skip
    assert close(summary.error_rate, 0.5)
    per_endpoint = summary.endpoint_metrics["/api/a"]
    assert (per_endpoint["successes"], per_endpoint["failures"]) == (2, 2)
    [figures] = request_figures.endpoint_metrics(db, T0, T0 + HOUR)
    assert (figures.successes, figures.failures, figures.error_rate) == (2, 2, 0.5)
    [point] = request_figures.timeline(db, T0, T0 + HOUR, HOUR)
    assert (point.requests, point.failures) == (4, 2)
    [top] = request_figures.top_api_keys(db, T0, T0 + HOUR)
    assert top.failures == 2
    usage = request_figures.key_usage(db, key, T0, T0 + HOUR)
    assert (usage.failures, usage.days[0].failures) == (2, 2)
    failed = request_lists.error_logs(db, T0, T0 + HOUR)
    assert sorted(log.status_code for log in failed) == [400, 599]
    assert len(request_lists.recent_requests(db, T0, errors_only=True)) == 2


def test_the_timeline_keeps_the_last_partial_bucket(db, logged):
    """40 requests a minute apart; buckets of 15 minutes up to minute 35: the last
    bucket (minutes 30 to 35) is shorter and still counted."""
    points = request_figures.timeline(db, T0, T0 + timedelta(minutes=35), timedelta(minutes=15))
    assert [p.start for p in points] == [T0 + timedelta(minutes=m) for m in (0, 15, 30)]
    assert [p.requests for p in points] == [15, 15, 5]  # minute 35 is outside
    assert [p.failures for p in points] == [4, 4, 1]  # minutes 0, 4, ..., 32
    assert close(points[2].avg_response_time_ms, statistics.fmean(range(30, 35)))
    one_second_over = request_figures.timeline(db, T0, T0 + timedelta(minutes=30, seconds=1),
                                       timedelta(minutes=15))  # fmt: skip
    assert [p.requests for p in one_second_over] == [15, 15, 1]
