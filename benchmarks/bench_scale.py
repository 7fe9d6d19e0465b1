"""The request log at scale on PostgreSQL: partitioned by month (head) and not (0010).

The request log grows in steps (default 1, 5 and 10 million rows; ``--quick``:
0.1, 0.5 and 1 million) spread evenly over 13 months of history, the bulk sent by
psycopg ``COPY`` (the same rows into both databases, each on a server of its own,
benchmarks/databases.py). At each size, in each database:

=============================================  ===========================================
measure                                        goal
=============================================  ===========================================
``record_requests`` rows/s (a new day of       last size ÷ first size ≥ 0.8
requests, 1 000 rows a call, a commit each)
one hour's rollup (``rollups.rollup``)         flat: last size ÷ first size ≤ 1.25
the incremental rollup after one new hour      at most twice the rollup of that hour alone
(``rollup_schedule.refresh``)
one day's p95 (``request_percentiles``)        flat: last size ÷ first size ≤ 1.25
retention of the oldest month (``clean``)      < 1 s at every size
bytes per row, table and indexes               reported
=============================================  ===========================================

The timed rows go to a day of their own at each size (in the month after the
history): 20 000 requests an hour (``--hour-rows``), the same ones every time, so
the hour and the day measured hold as many rows at 10 M as at 1 M: what grows is
only the rest of the table.
The incremental rollup runs as a scheduler would: its watermark at the new hour,
which is then written, and ``refresh`` as of the hour after. Each figure is the
best of its rounds (rows/s: of the day's 24 hours; rollups: of the day's last
ROUNDS hours; the query: of QUERIES runs), which keeps other load on the shared
machine out of it; the ratios between sizes and between the two databases are
measured in the same run.

Retention runs last at each size, in two ``clean`` calls: the oldest month's first
day (the cutoff inside a partition, as a daily clean has it: rows deleted in
batches in both databases), then the rest of that month (the cutoff on a
partition's edge: the partition dropped, or the rows deleted, then a VACUUM
timed apart). The next size's COPY fills that month again. Results are also
written as JSON (``--json``; benchmarks/results/ is not committed).

    python benchmarks/bench_scale.py [--quick | --sizes 1,5,10] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from databases import databases
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.store.ops import (
    partitions,
    request_figures,
    request_log,
    retention,
    rollup_schedule,
    rollups,
)
from pfd_db.types import utcnow

PARTITIONING = "0011"  # the revision that partitions the log tables
DEFAULT_SIZES = (1_000_000, 5_000_000, 10_000_000)
QUICK_SIZES = (100_000, 500_000, 1_000_000)
HISTORY_MONTHS = 13
HOUR_ROWS = 20_000  # timed requests an hour (5.6 a second, 14.6 M a month): a day at each size
CALL_ROWS = 1_000  # rows per record_requests call (one commit each)
ROUNDS = 5  # new hours each incremental rollup is measured on (the day's last hours)
REPEATS = 3  # rollups of each of those hours alone
QUERIES = 15
CHUNK_ROWS = 100_000  # rows per COPY
SLOW_QUERY_SECONDS = 3600.0  # the bulk steps are slow on purpose: keep the log quiet
GOALS = {"rows_per_second": 0.8, "hour_rollup": 1.25, "day_p95": 1.25}
INCREMENTAL_GOAL = 2.0
RETENTION_GOAL = 1.0
WEYL = 2_654_435_769  # 2**32 / golden ratio: any prefix of j * WEYL mod 2**32 is spread evenly
AGENT = "Mozilla/5.0 (X11; Linux x86_64) dashboard/2.1"
RESULTS = Path(__file__).resolve().parent / "results" / "bench_scale.json"
COPY_COLUMNS = (
    "endpoint, method, status_code, request_time, response_time_ms, request_size_bytes, "
    "response_size_bytes, ip_address, user_agent, created_at, updated_at"
)
SIZES_SQL = """
WITH leaves AS (
    SELECT relid, true AS partition FROM pg_partition_tree('api_request_logs') WHERE isleaf
    UNION ALL SELECT 'api_request_logs'::regclass, false
    WHERE NOT EXISTS (
        SELECT FROM pg_partitioned_table WHERE partrelid = 'api_request_logs'::regclass
    )
)
SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid)), count(*) FILTER (WHERE partition)
FROM leaves
"""


# --- where the rows go ------------------------------------------------------------------


def add_months(moment: datetime, months: int) -> datetime:
    """The first of the month ``months`` after ``moment``'s (UTC midnight)."""
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Layout:
    """The months of history, then the month of the timed days, before this month."""

    now: datetime

    @property
    def months(self) -> list[datetime]:
        """The first day of each history month, oldest first."""
        return [add_months(self.now, m - HISTORY_MONTHS - 1) for m in range(HISTORY_MONTHS)]

    @property
    def probe_month(self) -> datetime:
        return add_months(self.now, -1)

    def probe_day(self, stage: int) -> datetime:
        """The day whose requests ``record_requests`` writes at the ``stage``-th size."""
        return self.probe_month + timedelta(days=stage)


def month_targets(size: int) -> list[int]:
    """How many of ``size`` rows each history month holds."""
    share, extra = divmod(size, HISTORY_MONTHS)
    return [share + (month < extra) for month in range(HISTORY_MONTHS)]


def history_lines(start: datetime, end: datetime, first: int, stop: int, stamp: str) -> str:
    """Rows ``first`` .. ``stop`` of the month ``start`` .. ``end`` in COPY text form:
    row ``j`` always the same request, its time from a Weyl sequence, so any prefix
    of a month's rows is spread evenly over it."""
    span = int((end - start).total_seconds() * 1_000_000)
    lines = []
    for j in range(first, stop):
        moment = start + timedelta(microseconds=(j * WEYL & 0xFFFFFFFF) * span >> 32)
        lines.append(
            f"/api/v1/resource/{j % 25}\t{'POST' if j % 4 == 0 else 'GET'}\t"
            f"{503 if j % 17 == 0 else 200}\t{moment.isoformat()}\t{j * 7919 % 200_000 / 100}\t"
            f"{200 + j % 900}\t{1500 + j % 5000}\t10.0.{j % 256}.{j % 199}\t{AGENT}\t"
            f"{stamp}\t{stamp}\n"
        )
    return "".join(lines)


def hour_requests(hour: datetime, count: int) -> list[dict[str, Any]]:
    """``count`` requests spread over ``hour``, as a web server hands them over."""
    step = timedelta(hours=1) / count
    return [
        {
            "endpoint": f"/api/v1/resource/{i % 25}",
            "method": "GET" if i % 4 else "POST",
            "status_code": 200 if i % 17 else 503,
            "request_time": hour + i * step,
            "response_time_ms": (i * 7919) % 200_000 / 100,
            "request_size_bytes": 200 + i % 900,
            "response_size_bytes": 1500 + i % 5000,
            "ip_address": f"10.0.{i % 256}.{i % 199}",
            "user_agent": AGENT,
        }
        for i in range(count)
    ]


# --- the two databases ------------------------------------------------------------------


@dataclass
class Setup:
    """One database: its engine, revision, and the history rows each month holds."""

    name: str
    engine: Engine
    revision: str
    loaded: list[int] = field(default_factory=lambda: [0] * HISTORY_MONTHS)
    timed_rows: int = 0

    @property
    def partitioned(self) -> bool:
        return self.name == "partitioned"


def unpartitioned_revision() -> str:
    """The revision before the log tables were partitioned."""
    return str(migrations.script_directory().get_revision(PARTITIONING).down_revision)


def prepare(name: str, url: str, layout: Layout) -> Setup:
    """The database at ``url`` migrated for ``name``, with its partitions made."""
    revision = "head" if name == "partitioned" else unpartitioned_revision()
    engine = make_engine(url, slow_query_seconds=SLOW_QUERY_SECONDS)
    migrations.upgrade(engine, revision)
    setup = Setup(name, engine, revision)
    make_partitions(setup, layout)
    return setup


def make_partitions(setup: Setup, layout: Layout) -> None:
    """The partitions of every history month and of the timed month (again after
    retention dropped one); nothing on the unpartitioned database."""
    if not setup.partitioned:
        return
    with Session(setup.engine) as session:  # the history's first month and 13 after it
        partitions.ensure_partitions(session, ahead=HISTORY_MONTHS, now=layout.months[0])
        session.commit()


def grow(setups: Sequence[Setup], layout: Layout, size: int) -> float:
    """COPY history rows into each database until each month holds its share of
    ``size`` (the same rows into each); the seconds it took, VACUUM ANALYZE included."""
    began = time.perf_counter()
    months = layout.months
    stamp = utcnow().isoformat()
    for setup in setups:
        make_partitions(setup, layout)
    with ExitStack() as stack:
        copiers = [stack.enter_context(copier(setup.engine)) for setup in setups]
        for month, target in enumerate(month_targets(size)):
            start, end = months[month], add_months(months[month], 1)
            have = setups[0].loaded[month]
            assert all(s.loaded[month] == have for s in setups), "the databases differ"
            for first in range(have, target, CHUNK_ROWS):
                chunk = history_lines(start, end, first, min(first + CHUNK_ROWS, target), stamp)
                for send in copiers:
                    send(chunk)
            for setup in setups:
                setup.loaded[month] = max(target, have)
            progress(f"  month {start:%Y-%m}: {max(target, have):,} rows")
    for setup in setups:
        vacuum(setup.engine, analyze=True)
        with setup.engine.connect() as conn:  # not during the measures
            conn.execute(text("CHECKPOINT"))
    return time.perf_counter() - began


@contextmanager
def copier(engine: Engine) -> Iterator[Callable[[str], None]]:
    """A function that COPYs lines of text into ``api_request_logs``; committed on exit."""
    with engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor:

            def send(lines: str) -> None:
                with cursor.copy(f"COPY api_request_logs ({COPY_COLUMNS}) FROM STDIN") as copy:
                    copy.write(lines)

            yield send
        driver.commit()


def vacuum(engine: Engine, *, analyze: bool = False) -> float:
    """VACUUM (ANALYZE) of the request log; its seconds."""
    began = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM {'ANALYZE ' if analyze else ''}api_request_logs"))
    return time.perf_counter() - began


# --- the measures at one size -----------------------------------------------------------


@dataclass
class Stage:
    """What one database measured at one size (seconds unless named otherwise)."""

    setup: str
    size: int
    """History rows asked for (the timed days' rows come on top)."""
    rows: int
    """Rows counted in the table before retention."""
    load_seconds: float
    rows_per_second: float
    """Of the best hour written (24 at each size)."""
    record_seconds: float
    """The whole day's."""
    hour_rollup: float
    """Of one new hour alone (``rollups.rollup``)."""
    incremental: float
    """``rollup_schedule.refresh`` after the new hour was written."""
    day_p95: float
    day_retention: float
    """``clean`` of the oldest day: rows deleted in batches, in either database."""
    day_retention_rows: int
    retention: float
    """``clean`` of the rest of the oldest month: its partition dropped, or rows deleted."""
    retention_rows: int
    partitions_dropped: list[str]
    vacuum_after_retention: float
    table_bytes: int
    index_bytes: int
    partitions: int
    hour_total: int
    """total_requests of the last timed hour's summary row, as the incremental rollup wrote it."""
    first_refresh: float
    """The refresh before the timed ones (the first size's: every hour of the history)."""

    @property
    def incremental_ratio(self) -> float:
        """The incremental rollup after the new hour ÷ the rollup of that hour alone."""
        return self.incremental / self.hour_rollup

    @property
    def table_bytes_per_row(self) -> float:
        return self.table_bytes / max(self.rows, 1)

    @property
    def index_bytes_per_row(self) -> float:
        return self.index_bytes / max(self.rows, 1)


def measure(
    setup: Setup,
    layout: Layout,
    stage: int,
    size: int,
    load_seconds: float,
    *,
    hour_rows: int = HOUR_ROWS,
    rounds: int = ROUNDS,
    queries: int = QUERIES,
) -> Stage:
    """Every measure of one database at one size; retention last (it removes the
    oldest month, which the next size's COPY fills again)."""
    engine, day = setup.engine, layout.probe_day(stage)
    gc.collect()
    gc.freeze()  # what lives on now is never scanned again: each timed step's collect is quick
    hours = [day + timedelta(hours=h) for h in range(24)]
    writing = [record(setup, hour, hour_rows) for hour in hours[:-rounds]]
    first_refresh = timed(lambda: refresh(engine, hours[-rounds]))
    incremental, alone = [], []
    for hour in hours[-rounds:]:
        writing.append(record(setup, hour, hour_rows))
        incremental.append(timed(lambda hour=hour: refresh(engine, hour + timedelta(hours=1))))
        alone += [timed(lambda hour=hour: rollup_hour(engine, hour)) for _ in range(REPEATS)]
    hour_total = summary_total(engine, hours[-1])
    day_p95 = min(timed(lambda: day_percentiles(engine, day)) for _ in range(queries))
    rows, table_bytes, index_bytes, partitions = table_figures(engine)
    progress(f"  {setup.name}: measured; retention of the oldest month")
    (day_seconds, day_rows, _), (seconds, removed, dropped) = retire_oldest_month(setup, layout)
    return Stage(
        setup=setup.name,
        size=size,
        rows=rows,
        load_seconds=load_seconds,
        rows_per_second=hour_rows / min(writing),
        record_seconds=sum(writing),
        hour_rollup=min(alone),
        incremental=min(incremental),
        day_p95=day_p95,
        day_retention=day_seconds,
        day_retention_rows=day_rows,
        retention=seconds,
        retention_rows=removed,
        partitions_dropped=dropped,
        vacuum_after_retention=0.0 if setup.partitioned else vacuum(engine),
        table_bytes=table_bytes,
        index_bytes=index_bytes,
        partitions=partitions,
        hour_total=hour_total,
        first_refresh=first_refresh,
    )


def timed(step: Callable[[], object]) -> float:
    gc.collect()
    began = time.perf_counter()
    step()
    return time.perf_counter() - began


def record(setup: Setup, hour: datetime, count: int) -> float:
    """Seconds to write ``hour``'s requests through ``record_requests``, CALL_ROWS a
    call and a commit (the requests are built before the clock starts)."""
    rows = hour_requests(hour, count)
    calls = [rows[i : i + CALL_ROWS] for i in range(0, count, CALL_ROWS)]
    gc.collect()
    began = time.perf_counter()
    with Session(setup.engine) as session:
        for call in calls:
            request_log.record_requests(session, call)
            session.commit()
    setup.timed_rows += count
    return time.perf_counter() - began


def refresh(engine: Engine, now: datetime) -> None:
    """The incremental hourly rollup, as of ``now``."""
    with Session(engine) as session:
        done = rollup_schedule.refresh(session, "hourly", now=now)
        session.commit()
    assert done.complete, done


def rollup_hour(engine: Engine, hour: datetime) -> None:
    with Session(engine) as session:
        written = rollups.rollup(session, "hourly", hour, hour + timedelta(hours=1))
        session.commit()
    assert written == 1, written


def summary_total(engine: Engine, hour: datetime) -> int:
    with Session(engine) as session:
        rows = rollups.summaries(session, "hourly", hour, hour + timedelta(hours=1))
    return rows[0].total_requests if rows else 0


def day_percentiles(engine: Engine, day: datetime) -> None:
    with Session(engine) as session:
        figures = request_figures.request_percentiles(session, day, day + timedelta(days=1))
    assert figures.p95_response_time_ms is not None, figures


def table_figures(engine: Engine) -> tuple[int, int, int, int]:
    """Rows, table bytes (heap and TOAST), index bytes and partitions of the request log."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM api_request_logs")).scalar_one()
        table_bytes, index_bytes, partitions = conn.execute(text(SIZES_SQL)).one()
    return int(rows), int(table_bytes), int(index_bytes), int(partitions)


def retire_oldest_month(setup: Setup, layout: Layout) -> tuple[Removal, Removal]:
    """``clean`` of the oldest history month's first day (the cutoff inside a
    partition: what a daily clean does), then of the rest of that month (the
    cutoff on a partition's edge); ``(seconds, rows, partitions dropped)`` of each."""
    day = clean_before(setup, layout.months[0] + timedelta(days=1))
    month = clean_before(setup, layout.months[1])
    removed, expected = day[1] + month[1], setup.loaded[0]
    assert removed == expected, f"{setup.name}: retention removed {removed}, not {expected}"
    setup.loaded[0] = 0
    return day, month


Removal = tuple[float, int, list[str]]


def clean_before(setup: Setup, cutoff: datetime) -> Removal:
    """``clean`` of the request-log rows older than ``cutoff``: seconds, rows removed,
    partitions dropped."""
    now = utcnow()
    began = time.perf_counter()
    (report,) = retention.clean(
        setup.engine, tables=["api_request_logs"], older_than=now - cutoff, now=now
    )
    seconds = time.perf_counter() - began
    return seconds, report.rows, [partition.name for partition in report.partitions]


# --- the run ---------------------------------------------------------------------------


SETUPS = ("partitioned", "unpartitioned")


def run(
    urls: dict[str, str],
    sizes: Sequence[int],
    *,
    hour_rows: int = HOUR_ROWS,
    rounds: int = ROUNDS,
    queries: int = QUERIES,
) -> list[Stage]:
    """Grow the request log of each database (``urls``: by setup name) to each of
    ``sizes`` in turn and measure it there; every measure, in order."""
    layout = Layout(utcnow())
    setups = [prepare(name, urls[name], layout) for name in SETUPS if name in urls]
    stages = []
    try:
        for stage, size in enumerate(sizes):
            progress(f"{size:,} rows: loading")
            load_seconds = grow(setups, layout, size)
            for setup in setups:
                progress(f"{size:,} rows: measuring {setup.name}")
                stages.append(
                    measure(setup, layout, stage, size, load_seconds,
                            hour_rows=hour_rows, rounds=rounds, queries=queries)
                )  # fmt: skip
    finally:
        for setup in setups:
            setup.engine.dispose()
    return stages


def main(argv: list[str]) -> int:
    """Parse the sizes, run on two fresh PostgreSQL servers, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=millions, default=DEFAULT_SIZES,
        help="request-log sizes in millions of rows, ascending (default 1,5,10)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="sizes 0.1,0.5,1 (a try-out)")
    parser.add_argument(
        "--hour-rows", type=int, default=HOUR_ROWS,
        help=f"requests in each timed hour (default {HOUR_ROWS:,})",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else args.sizes
    if args.hour_rows < CALL_ROWS:
        parser.error(f"--hour-rows: at least {CALL_ROWS}")
    with ExitStack() as stack:
        urls = {name: url for name in SETUPS
                for _, url in stack.enter_context(databases(("postgresql",)))}  # fmt: skip
        stages = run(urls, sizes, hour_rows=args.hour_rows)
    print(f"\n{args.hour_rows:,} requests in each timed hour")
    print_report(stages, sizes)
    write_json(args.json, stages, sizes)
    return 0


def millions(value: str) -> tuple[int, ...]:
    """``"1,5,10"`` as (1 000 000, 5 000 000, 10 000 000): positive, ascending, at
    most 28 sizes (one timed day each, in one month)."""
    try:
        sizes = tuple(round(float(part) * 1_000_000) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers: {value!r}") from None
    if (
        not sizes
        or len(sizes) > 28
        or min(sizes) < HISTORY_MONTHS
        or list(sizes) != sorted(set(sizes))
    ):
        raise argparse.ArgumentTypeError(
            f"{value!r}: 1 to 28 ascending sizes, each 13 rows or more"
        )
    return sizes


# --- report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """One block of the report: a figure of each stage, and the goal it has, if any."""

    title: str
    value: Callable[[Stage], float]
    shown: str
    """How one value is formatted."""
    met: Callable[[list[Stage]], bool] | None = None
    """Whether one setup's stages, smallest size first, meet the goal."""


def growth(
    value: Callable[[Stage], float], goal: float, *, at_least: bool
) -> Callable[[list[Stage]], bool]:
    """Whether the last size's figure over the first's meets ``goal``."""

    def met(stages: list[Stage]) -> bool:
        ratio = value(stages[-1]) / max(value(stages[0]), 1e-12)
        return ratio >= goal if at_least else ratio <= goal

    return met


def every(check: Callable[[Stage], bool]) -> Callable[[list[Stage]], bool]:
    """Whether every size passes ``check``."""
    return lambda stages: all(check(stage) for stage in stages)


MEASURES = (
    Measure(f"record_requests rows/s (goal: last ÷ first ≥ {GOALS['rows_per_second']})",
            lambda s: s.rows_per_second, "{:,.0f}",
            growth(lambda s: s.rows_per_second, GOALS["rows_per_second"], at_least=True)),
    Measure(f"one hour's rollup, ms (flat, goal: last ÷ first ≤ {GOALS['hour_rollup']})",
            lambda s: s.hour_rollup * 1000, "{:.1f}",
            growth(lambda s: s.hour_rollup, GOALS["hour_rollup"], at_least=False)),
    Measure("incremental rollup after one new hour, ms", lambda s: s.incremental * 1000, "{:.1f}"),
    Measure(f"  ÷ the rollup of that hour alone (goal ≤ {INCREMENTAL_GOAL:g} at every size)",
            lambda s: s.incremental_ratio, "{:.2f}",
            every(lambda s: s.incremental_ratio <= INCREMENTAL_GOAL)),
    Measure(f"one day's p95 query, ms (flat, goal: last ÷ first ≤ {GOALS['day_p95']})",
            lambda s: s.day_p95 * 1000, "{:.1f}",
            growth(lambda s: s.day_p95, GOALS["day_p95"], at_least=False)),
    Measure("retention of the oldest day (cutoff inside a partition), s",
            lambda s: s.day_retention, "{:.2f}"),
    Measure("  rows it removed", lambda s: s.day_retention_rows, "{:,.0f}"),
    Measure(f"retention of the rest of that month, s (goal < {RETENTION_GOAL:g} s at every size)",
            lambda s: s.retention, "{:.2f}", every(lambda s: s.retention < RETENTION_GOAL)),
    Measure("  rows it removed", lambda s: s.retention_rows, "{:,.0f}"),
    Measure("  VACUUM after both, s", lambda s: s.vacuum_after_retention, "{:.2f}"),
    Measure("table bytes per row (heap and TOAST)", lambda s: s.table_bytes_per_row, "{:.0f}"),
    Measure("index bytes per row", lambda s: s.index_bytes_per_row, "{:.0f}"),
    Measure("COPY and VACUUM ANALYZE of the growth (both databases), s",
            lambda s: s.load_seconds, "{:.0f}"),
)  # fmt: skip


def print_report(stages: list[Stage], sizes: Sequence[int]) -> None:
    """One block per measure: each setup's figure at each size, the growth from the
    first size to the last, the verdict; and partitioned ÷ unpartitioned."""
    names = [f"{size / 1_000_000:g} M" for size in sizes]
    found = {name: [s for s in stages if s.setup == name] for name in SETUPS}
    by_setup = {name: mine for name, mine in found.items() if mine}
    header = "".join(f"{name:>12}" for name in names)
    print(f"\nthe request log at scale, PostgreSQL (growth = {names[-1]} ÷ {names[0]})")
    for m in MEASURES:
        print(f"\n{m.title}\n  {'':<16}{header}{'growth':>9}  verdict")
        for name, mine in by_setup.items():
            cells = "".join(f"{m.shown.format(m.value(s)):>12}" for s in mine)
            ratio = m.value(mine[-1]) / max(m.value(mine[0]), 1e-12)
            verdict = "" if m.met is None else ("met" if m.met(mine) else "MISSED")
            print(f"  {name:<16}{cells}{ratio:>9.2f}  {verdict}")
        if len(by_setup) == 2:
            pairs = zip(*by_setup.values(), strict=True)
            cells = "".join(f"{m.value(p) / max(m.value(u), 1e-12):>12.2f}" for p, u in pairs)
            print(f"  {'part. ÷ unpart.':<16}{cells}")


def write_json(path: Path, stages: list[Stage], sizes: Sequence[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "sizes": list(sizes),
        "stages": [{**asdict(s), "incremental_ratio": s.incremental_ratio,
                    "table_bytes_per_row": s.table_bytes_per_row,
                    "index_bytes_per_row": s.index_bytes_per_row} for s in stages],
    }  # fmt: skip
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults written to {path}")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
