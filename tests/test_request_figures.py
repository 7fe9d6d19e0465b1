"""The overall request figures on both dialects (``request_figures``): every
endpoint together, computed by the database, as Python computes them."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

import pytest

from pfd_db.errors import InvalidInput
from pfd_db.store.ops import request_figures, request_log
from test_traffic import HOUR, T0, close, python_percentiles, request, spread_requests


@pytest.mark.parametrize("seed", [4, 5])
def test_overall_figures_agree_with_python_over_any_time_range(db, seed):
    rows = spread_requests(seed, hours=3, per_hour=(250, 40, 1))
    request_log.record_requests(db, rows)
    db.commit()
    for since, until in [(T0, T0 + 3 * HOUR), (T0 + HOUR, T0 + 2 * HOUR), (T0 + 2 * HOUR, None)]:
        held = [
            r for r in rows
            if r["request_time"] >= since and (until is None or r["request_time"] < until)
        ]  # fmt: skip
        times = [r["response_time_ms"] for r in held]
        failed = sum(r["status_code"] >= 400 for r in held)
        stats = request_figures.request_stats(db, since, until)
        assert (stats.requests, stats.failures) == (len(held), failed)
        assert stats.successes == len(held) - failed
        assert close(stats.error_rate, failed / len(held))
        assert close(stats.avg_response_time_ms, statistics.fmean(times))
        assert stats.max_response_time_ms == max(times)
        found = request_figures.request_percentiles(db, since, until)
        expected = python_percentiles(times)
        assert close(found.p50_response_time_ms, expected[0])
        assert close(found.p95_response_time_ms, expected[1])
        assert close(found.p99_response_time_ms, expected[2])


def test_a_400_is_an_error_a_399_is_not_and_an_empty_range_has_no_figures(db):
    request_log.record_requests(
        db, [request(T0, 1.0, 399), request(T0, 3.0, 400), request(T0 + HOUR, 99.0, 200)]
    )
    db.commit()
    stats = request_figures.request_stats(db, T0, T0 + HOUR)
    assert (stats.requests, stats.successes, stats.failures, stats.error_rate) == (2, 1, 1, 0.5)
    assert stats.avg_response_time_ms == 2.0 and stats.max_response_time_ms == 3.0
    found = request_figures.request_percentiles(db, T0, T0 + HOUR)
    assert close(found.p50_response_time_ms, 2.0) and close(found.p99_response_time_ms, 2.98)
    empty = request_figures.request_stats(db, T0 - HOUR, T0)
    assert (empty.requests, empty.failures, empty.error_rate) == (0, 0, 0.0)
    assert empty.avg_response_time_ms is None and empty.max_response_time_ms is None
    none = request_figures.request_percentiles(db, T0 - HOUR, T0)
    assert (none.p50_response_time_ms, none.p95_response_time_ms, none.p99_response_time_ms) == (
        None, None, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (None, None, "since is required"),
        (datetime(2026, 1, 1), None, "since"),
        (T0, T0, "must be after since"),
        (T0, T0 - timedelta(seconds=1), "must be after since"),
        ("2026-01-01", None, "since"),
    ],
)
def test_bad_ranges_are_refused(db, since, until, message):
    for figures in (request_figures.request_stats, request_figures.request_percentiles):
        with pytest.raises(InvalidInput, match=message):
            figures(db, since, until)
