"""benchmarks/bench_scale.py at a tiny size on the test server (PostgreSQL only).

Its loader and every measure run on two databases, partitioned (head) and not
(the revision before 0011), grown from 13 000 to 26 000 history rows: what it
reports is what the databases hold (rows counted as loaded, the oldest month's
rows removed and its partition dropped, the new hour rolled up). Behaviour only:
no timing is checked here; ``make bench-scale`` measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import bench_scale  # noqa: E402 - needs benchmarks/ on sys.path

SIZES = (13_000, 26_000)
HOUR_ROWS = 30
ROUNDS = 2


@pytest.fixture(scope="module")
def scaled(pg_server):
    """The stages of a tiny run, and the URLs of its two databases (kept until the
    module ends, to look inside)."""
    names = {setup: f"pfd_scale_{uuid.uuid4().hex[:12]}" for setup in bench_scale.SETUPS}
    for name in names.values():
        pg_server.create_database(name)
    try:
        urls = {setup: pg_server.url(name) for setup, name in names.items()}
        stages = bench_scale.run(urls, SIZES, hour_rows=HOUR_ROWS, rounds=ROUNDS, queries=2)
        yield stages, urls
    finally:
        for name in names.values():
            pg_server.drop_database(name)


def one(stages, setup, size):
    (found,) = [s for s in stages if s.setup == setup and s.size == size]
    return found


def scalar(url, sql):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("setup", bench_scale.SETUPS)
def test_every_size_is_measured_on_the_rows_loaded(scaled, setup):
    stages, _ = scaled
    assert [s.size for s in stages if s.setup == setup] == list(SIZES)
    for number, size in enumerate(SIZES):
        stage = one(stages, setup, size)
        timed_rows = (number + 1) * 24 * HOUR_ROWS  # a day of requests at each size
        assert stage.rows == size + timed_rows
        assert stage.hour_total == HOUR_ROWS  # the incremental rollup wrote the new hour
        assert stage.rows_per_second > 0
        assert min(stage.hour_rollup, stage.incremental, stage.day_p95) > 0
        assert 50 < stage.table_bytes_per_row < 5_000
        assert 20 < stage.index_bytes_per_row < 5_000


@pytest.mark.parametrize("setup", bench_scale.SETUPS)
def test_retention_removes_the_oldest_month_which_the_next_size_fills_again(scaled, setup):
    stages, urls = scaled
    for size in SIZES:
        stage = one(stages, setup, size)
        assert 0 < stage.day_retention_rows < stage.retention_rows
        assert stage.day_retention_rows + stage.retention_rows == bench_scale.month_targets(size)[0]
    layout = bench_scale.Layout(bench_scale.utcnow())
    oldest = scalar(urls[setup], "SELECT min(request_time) FROM api_request_logs")
    assert oldest >= layout.months[1]
    assert oldest < layout.months[1] + timedelta(days=1)  # the second month is all there
    history = scalar(
        urls[setup],
        f"SELECT count(*) FROM api_request_logs WHERE request_time < '{layout.probe_month}'",
    )
    assert history == SIZES[-1] - bench_scale.month_targets(SIZES[-1])[0]


def test_the_partitioned_database_drops_the_oldest_months_partition(scaled):
    stages, urls = scaled
    layout = bench_scale.Layout(bench_scale.utcnow())
    for size in SIZES:
        partitioned = one(stages, "partitioned", size)
        unpartitioned = one(stages, "unpartitioned", size)
        assert len(partitioned.partitions_dropped) == 1
        assert layout.months[0].strftime("%Y") in partitioned.partitions_dropped[0]
        assert partitioned.partitions > bench_scale.HISTORY_MONTHS  # with the timed month's
        assert unpartitioned.partitions_dropped == []
        assert unpartitioned.partitions == 0
        assert unpartitioned.vacuum_after_retention > 0
    kind = "SELECT relkind FROM pg_class WHERE relname = 'api_request_logs'"
    assert scalar(urls["partitioned"], kind) == "p"
    assert scalar(urls["unpartitioned"], kind) == "r"


def test_the_report_gives_every_measure_with_its_growth_and_verdict(scaled, capsys, tmp_path):
    stages, _ = scaled
    bench_scale.print_report(stages, SIZES)
    printed = capsys.readouterr().out
    for measure in bench_scale.MEASURES:
        assert measure.title in printed
    assert printed.count("part. ÷ unpart.") == len(bench_scale.MEASURES)
    verdicts = printed.count("  met") + printed.count("  MISSED")
    assert verdicts == 2 * sum(m.met is not None for m in bench_scale.MEASURES)
    path = tmp_path / "results" / "scale.json"
    bench_scale.write_json(path, stages, SIZES)
    written = json.loads(path.read_text())
    assert written["sizes"] == list(SIZES)
    assert [s["rows"] for s in written["stages"]] == [s.rows for s in stages]


def test_sizes_are_read_in_millions_and_bad_ones_refused():
    assert bench_scale.millions("1,5,10") == (1_000_000, 5_000_000, 10_000_000)
    assert bench_scale.millions("0.1,0.5") == (100_000, 500_000)
    for bad in ("10,5", "1,1", "x", "0", ",".join(["1"] * 29)):
        with pytest.raises(argparse.ArgumentTypeError, match=r"sizes|numbers"):
            bench_scale.millions(bad)
