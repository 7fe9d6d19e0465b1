"""Incremental rollups (``rollup_schedule.refresh``) on both dialects: a watermark
per period type, closed periods computed once, the open one each time, late rows
re-rolled up, runs and writers racing, retention, limits and bad arguments.

"Computed" is shown two ways: by the period starts a run returns, and by a row
changed behind the store's back (an UPDATE no writer of pfd-db makes), which a
period's figures show only once that period is computed again.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, inspect, select, update
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput
from pfd_db.models import APIMetricsSummary, APIRequestLog, RollupStalePeriod, RollupWatermark
from pfd_db.models.enums import Aggregation
from pfd_db.store.ops import request_log, retention, rollup_schedule, rollups
from racing import race

pytest_plugins = ["api_support"]
from api_support import auth  # noqa: E402

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
NOW = T0 + 5 * HOUR + timedelta(minutes=30)  # hour 5 is open
FIGURES = rollups.FIGURES


def requests_in(hours: range | list[int], per_hour: int = 4, seed: int = 0) -> list[dict]:
    """``per_hour`` requests inside each hour after T0 that ``hours`` lists."""
    draw = random.Random(seed)
    return [
        {
            "endpoint": draw.choice(["/api/a", "/api/b"]),
            "method": "get",
            "status_code": draw.choice([200, 200, 201, 404, 500]),
            "request_time": T0 + hour * HOUR + timedelta(seconds=draw.randrange(3600)),
            "response_time_ms": round(draw.uniform(1, 500), 3),
        }
        for hour in hours
        for _ in range(per_hour)
    ]


def write(db: Session, rows: list[dict]) -> None:
    request_log.record_requests(db, rows)
    db.commit()


def at(moment: datetime, ms: float = 7.0) -> dict:
    return {"endpoint": "/api/a", "method": "get", "status_code": 200} | {
        "request_time": moment,
        "response_time_ms": ms,
    }


def figures(db: Session, kind: str) -> dict[datetime, tuple]:
    """Every stored summary row of ``kind``: period start -> its figures."""
    table = APIMetricsSummary.__table__
    found = db.execute(
        select(table.c.period_start, *(table.c[name] for name in FIGURES)).where(
            table.c.aggregation_type == kind
        )
    )
    return {row[0]: _rounded(row[1:]) for row in found}


def _rounded(values: tuple) -> tuple:
    def one(value: object) -> object:
        if isinstance(value, float):
            return round(value, 6)
        if isinstance(value, dict):
            return {k: _rounded(tuple(v.values())) for k, v in sorted(value.items())}
        return value

    return tuple(one(value) for value in values)


def recomputed(db: Session, kind: str, start: datetime, end: datetime) -> dict[datetime, tuple]:
    """The figures a full rollup of ``start`` .. ``end`` gives now (rolled back after)."""
    db.commit()
    rollups.rollup(db, kind, start, end)
    found = figures(db, kind)
    db.rollback()
    return found


def starts(first: datetime, count: int, length: timedelta = HOUR) -> list[datetime]:
    return [first + number * length for number in range(count)]


def marks(db: Session) -> set[tuple[str, datetime]]:
    found = select(RollupStalePeriod.aggregation_type, RollupStalePeriod.period_start)
    return {(kind, start) for kind, start in db.execute(found)}


def change_behind_the_stores_back(db: Session, hour: int, ms: float = 99_999.0) -> None:
    """Every request of that hour gets ``ms``: nothing marks the period."""
    low = T0 + hour * HOUR
    window = (APIRequestLog.request_time >= low, APIRequestLog.request_time < low + HOUR)
    db.execute(update(APIRequestLog).where(*window).values(response_time_ms=ms))
    db.commit()


# --- the first run, and what later runs compute --------------------------------------


def test_a_first_run_computes_every_period_from_the_earliest_request_to_the_open_one(db):
    write(db, requests_in(range(6)))
    done = rollup_schedule.refresh(db, "hourly", now=NOW)
    db.commit()
    assert done.computed == starts(T0, 6)
    assert (done.period, done.stale, done.written, done.complete) == ("hourly", 0, 6, True)
    assert done.computed_through == T0 + 5 * HOUR == rollup_schedule.watermark(db, "hourly")
    assert figures(db, "hourly") == recomputed(db, "hourly", T0, T0 + 6 * HOUR)
    assert rollup_schedule.watermark(db, Aggregation.DAILY) is None  # each type its own


def test_a_closed_period_is_computed_once_and_the_open_one_on_every_run(db):
    write(db, requests_in(range(6)))
    rollup_schedule.refresh(db, "hourly", now=NOW)
    db.commit()
    before = figures(db, "hourly")
    change_behind_the_stores_back(db, 1)
    write(db, [at(T0 + 5 * HOUR + timedelta(minutes=40))])

    done = rollup_schedule.refresh(db, "hourly", now=NOW + timedelta(minutes=20))
    db.commit()
    assert done.computed == [T0 + 5 * HOUR]  # the open hour alone
    after = figures(db, "hourly")
    assert after[T0 + HOUR] == before[T0 + HOUR]  # closed: not computed again
    assert after[T0 + 5 * HOUR][0] == before[T0 + 5 * HOUR][0] + 1

    write(db, [at(T0 + 6 * HOUR + timedelta(minutes=10))])
    next_hour = T0 + 6 * HOUR + timedelta(minutes=20)
    assert rollup_schedule.refresh(db, "hourly", now=next_hour).computed == starts(
        T0 + 5 * HOUR, 2
    )  # hour 5 once more as it closed, then the open hour 6
    db.commit()
    again = rollup_schedule.refresh(db, "hourly", now=next_hour + timedelta(minutes=5))
    assert again.computed == [T0 + 6 * HOUR]
    assert again.computed_through == T0 + 6 * HOUR
    db.commit()
    quiet = rollup_schedule.refresh(db, "hourly", now=T0 + 9 * HOUR)  # no request since
    assert (quiet.computed, quiet.written) == (starts(T0 + 6 * HOUR, 4), 1)
    assert quiet.computed_through == T0 + 9 * HOUR


def test_late_rows_reopen_their_closed_periods_which_the_next_run_computes_again(db):
    write(db, requests_in(range(6)))
    for kind in ("hourly", "daily"):
        rollup_schedule.refresh(db, kind, now=NOW)
    db.commit()
    change_behind_the_stores_back(db, 1)
    write(db, [at(T0 + HOUR + timedelta(minutes=30)), at(T0 - DAY + 3 * HOUR)])
    assert marks(db) == {
        ("hourly", T0 + HOUR),
        ("hourly", T0 - DAY + 3 * HOUR),
        ("daily", T0 - DAY),  # before the daily watermark (T0); weekly has none: no mark
    }

    done = rollup_schedule.refresh(db, "hourly", now=NOW)
    db.commit()
    assert done.computed == [T0 - DAY + 3 * HOUR, T0 + HOUR, T0 + 5 * HOUR]
    assert (done.stale, done.written) == (2, 3)
    assert figures(db, "hourly") == recomputed(db, "hourly", T0 - DAY, T0 + 6 * HOUR)
    assert figures(db, "hourly")[T0 + HOUR][3] > 10_000  # the change, seen at last
    assert marks(db) == {("daily", T0 - DAY)}  # the daily mark waits for a daily run
    assert rollup_schedule.refresh(db, "hourly", now=NOW).computed == [T0 + 5 * HOUR]
    daily = rollup_schedule.refresh(db, "daily", now=NOW)
    db.commit()
    assert (daily.computed, daily.stale) == ([T0 - DAY, T0], 1)
    assert figures(db, "daily") == recomputed(db, "daily", T0 - DAY, T0 + DAY)
    assert marks(db) == set()


def test_a_mark_belongs_to_the_writers_transaction(db):
    write(db, requests_in(range(3)))
    rollup_schedule.refresh(db, "hourly", now=NOW)
    db.commit()
    request_log.record_requests(db, [at(T0 + HOUR)])
    assert marks(db) == {("hourly", T0 + HOUR)}
    db.rollback()
    assert marks(db) == set()
    assert db.scalar(select(func.count()).select_from(APIRequestLog)) == 12


def test_rows_at_or_after_the_watermark_make_no_mark(db):
    write(db, requests_in(range(3)))
    rollup_schedule.refresh(db, "hourly", now=NOW)
    db.commit()
    write(db, [at(T0 + 5 * HOUR), at(T0 + 7 * HOUR)])  # the open hour, and later
    assert marks(db) == set()
    assert rollup_schedule.note_late_rows(db, []) == 0


def test_each_period_type_keeps_its_own_watermark(db):
    write(db, requests_in([0, 30, 200]))  # Monday, Tuesday, and the next week
    now = T0 + 200 * HOUR + timedelta(minutes=5)
    hourly = rollup_schedule.refresh(db, "hourly", now=now)
    assert (hourly.computed[0], len(hourly.computed), hourly.written) == (T0, 201, 3)
    weekly = rollup_schedule.refresh(db, "weekly", now=now)
    db.commit()
    assert weekly.computed == starts(T0, 2, timedelta(weeks=1))
    assert {
        kind: rollup_schedule.watermark(db, kind) for kind in ("hourly", "daily", "weekly")
    } == {"hourly": T0 + 200 * HOUR, "daily": None, "weekly": T0 + timedelta(weeks=1)}
    write(db, [at(T0 + 2 * HOUR)])
    assert marks(db) == {("hourly", T0 + 2 * HOUR), ("weekly", T0)}
    daily = rollup_schedule.refresh(db, "daily", now=now)  # a first run of its own
    assert daily.computed == starts(T0, 9, DAY)
    assert (daily.stale, daily.written) == (0, 3)


# --- limits, reset, retention -------------------------------------------------------


def test_a_run_stops_at_its_limit_and_the_next_one_goes_on(db):
    write(db, requests_in(range(6)))
    done = [rollup_schedule.refresh(db, "hourly", now=NOW, limit=2) for _ in range(3)]
    db.commit()
    assert [d.computed for d in done] == [
        starts(T0, 2),
        starts(T0 + 2 * HOUR, 2),
        starts(T0 + 4 * HOUR, 2),
    ]
    assert [d.complete for d in done] == [False, False, True]
    assert [d.computed_through for d in done] == [T0 + 2 * HOUR, T0 + 4 * HOUR, T0 + 5 * HOUR]
    assert figures(db, "hourly") == recomputed(db, "hourly", T0, T0 + 6 * HOUR)

    write(db, [at(T0 + HOUR), at(T0 + 3 * HOUR)])  # two stale periods: the oldest first
    first = rollup_schedule.refresh(db, "hourly", now=NOW, limit=1)
    assert (first.computed, first.complete, first.computed_through) == (
        [T0 + HOUR],
        False,
        T0 + 5 * HOUR,
    )
    second = rollup_schedule.refresh(db, "hourly", now=NOW, limit=2)
    assert (second.computed, second.complete) == ([T0 + 3 * HOUR, T0 + 5 * HOUR], True)


def test_retention_then_runs_keep_the_figures_of_every_closed_period(db, engine):
    hours = 2 * 24 + 6  # Monday, Tuesday and six hours of Wednesday
    write(db, requests_in(range(hours), per_hour=3))
    now = T0 + (hours - 1) * HOUR + timedelta(minutes=30)
    for kind in ("hourly", "daily"):
        rollup_schedule.refresh(db, kind, now=now)
    db.commit()
    before = {kind: figures(db, kind) for kind in ("hourly", "daily")}
    cutoff = T0 + DAY + 2 * HOUR + timedelta(minutes=15)  # in an hour, and in Tuesday
    retention.clean(engine, older_than=now - cutoff, tables=["api_request_logs"], now=now)
    assert db.scalar(select(func.min(APIRequestLog.request_time))) >= cutoff
    write(db, [at(now + timedelta(minutes=5))])

    later = now + timedelta(minutes=10)
    assert rollup_schedule.refresh(db, "hourly", now=later).computed == [T0 + (hours - 1) * HOUR]
    assert rollup_schedule.refresh(db, "daily", now=later).computed == [T0 + 2 * DAY]
    db.commit()
    kept = {kind: figures(db, kind) for kind in ("hourly", "daily")}
    open_hour, open_day = T0 + (hours - 1) * HOUR, T0 + 2 * DAY
    assert {p: f for p, f in kept["hourly"].items() if p != open_hour} == {
        p: f for p, f in before["hourly"].items() if p != open_hour
    }
    assert kept["daily"][T0] == before["daily"][T0]
    assert kept["daily"][T0 + DAY] == before["daily"][T0 + DAY]  # thinned by retention

    rollup_schedule.reset(db)  # a first run again: from the earliest request kept
    db.commit()
    assert rollup_schedule.watermark(db, "hourly") is None
    again = rollup_schedule.refresh(db, "hourly", now=later)
    assert again.computed[0] == T0 + DAY + 3 * HOUR  # the thinned hour has its row: kept
    assert rollup_schedule.refresh(db, "daily", now=later).computed == [open_day]
    db.commit()
    assert figures(db, "hourly") == kept["hourly"]
    assert figures(db, "daily") == kept["daily"]


def test_a_run_is_the_callers_to_commit(db):
    write(db, requests_in(range(2)))
    rollup_schedule.refresh(db, "hourly", now=NOW)
    db.rollback()
    assert rollup_schedule.watermark(db, "hourly") is None
    assert figures(db, "hourly") == {}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"period": "monthly"}, "period"),
        ({"period": "hourly", "limit": 0}, "limit"),
        ({"period": "hourly", "limit": rollups.PERIODS_MAX + 1}, "limit"),
        ({"period": "hourly", "now": datetime(2026, 1, 1)}, "naive"),
    ],
)
def test_refresh_refuses_bad_arguments_before_writing(db, arguments, message):
    write(db, requests_in(range(2)))
    with pytest.raises(InvalidInput, match=message):
        rollup_schedule.refresh(db, **arguments)
    assert db.scalar(select(func.count()).select_from(RollupWatermark)) == 0
    assert figures(db, "hourly") == {}


@pytest.mark.parametrize(
    "moments", [[datetime(2026, 1, 1)], [T0, datetime(2026, 1, 1)], [1], [None], "2026"]
)
def test_note_late_rows_refuses_what_is_not_aware_datetimes(db, moments):
    with pytest.raises(InvalidInput, match="moments"):
        rollup_schedule.note_late_rows(db, moments)


@pytest.mark.parametrize(
    "bad",
    [[T0 + timedelta(minutes=5)], [datetime(9500, 1, 1, tzinfo=UTC)], [T0.replace(tzinfo=None)]],
)
def test_roll_up_periods_takes_period_starts_only(db, bad):
    with pytest.raises(InvalidInput, match="starts"):
        rollups.roll_up_periods(db, "hourly", bad)


# --- revision 0010 -------------------------------------------------------------------


def test_0010_adds_the_two_tables_and_goes_back_keeping_logs_and_summaries(fresh_engine):
    from pfd_db import migrations

    migrations.upgrade(fresh_engine, "0009")
    with Session(fresh_engine) as session:
        session.execute(APIRequestLog.__table__.insert(), requests_in(range(3)))  # as at 0009
        rollups.rollup(session, "hourly", T0, T0 + 3 * HOUR)
        session.commit()
        before = figures(session, "hourly")
    assert not {"rollup_watermarks", "rollup_stale_periods"} & set(
        inspect(fresh_engine).get_table_names()
    )

    assert migrations.upgrade(fresh_engine, "0010").current == "0010"
    with Session(fresh_engine) as session:
        assert rollup_schedule.watermark(session, "hourly") is None  # no run yet
        done = rollup_schedule.refresh(session, "hourly", now=T0 + 3 * HOUR)  # the first run
        assert done.computed == starts(T0 + HOUR, 3)  # hour 0, the earliest, has its row: kept
        session.commit()
        request_log.record_requests(session, [at(T0 + HOUR)])
        session.commit()
        assert marks(session) == {("hourly", T0 + HOUR)}

    assert migrations.downgrade(fresh_engine, "0009").current == "0009"
    names = set(inspect(fresh_engine).get_table_names())
    assert not {"rollup_watermarks", "rollup_stale_periods"} & names
    with Session(fresh_engine) as session:
        assert figures(session, "hourly") == before
        assert session.scalar(select(func.count()).select_from(APIRequestLog)) == 13
    migrations.upgrade(fresh_engine)
    assert migrations.schema_drift(fresh_engine) == []


# --- over HTTP -----------------------------------------------------------------------


def test_maintain_refreshes_every_period_type_and_then_only_the_open_one(fresh_url):
    import json

    from cli_support import pfd_db
    from pfd_db.engine import make_engine

    assert pfd_db("migrate", "--url", fresh_url).exit_code == 0
    clock = datetime.now(UTC)
    if clock.minute == 59 and clock.second > 30:  # the test must not straddle an hour
        time.sleep(61 - clock.second)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    engine = make_engine(fresh_url)
    try:
        with Session(engine) as session:
            write(session, [at(now - 3 * HOUR), at(now - 2 * HOUR), at(now - HOUR), at(now)])
    finally:
        engine.dispose()
    ran = pfd_db("maintain", "--json", "--url", fresh_url)
    assert ran.exit_code == 0, ran.output
    first = json.loads(ran.stdout)
    assert [r["period"] for r in first["rollups"]] == ["hourly", "daily", "weekly"]
    hourly = first["rollups"][0]
    assert (hourly["computed"], hourly["written"]) == (4, 4)  # three closed hours, the open one
    again = json.loads(pfd_db("maintain", "--json", "--url", fresh_url).stdout)
    assert [r["computed"] for r in again["rollups"]] == [1, 1, 1]  # only the open periods
    dry = json.loads(pfd_db("maintain", "--dry-run", "--json", "--url", fresh_url).stdout)
    assert dry["rollups"] == []
    assert "rollups hourly: 1 periods computed" in pfd_db("maintain", "--url", fresh_url).output


def test_the_admin_route_refreshes_incrementally(client, db, admin_key, user_key):
    path = "/api/v1/admin/traffic/rollups/hourly/refresh"
    assert client.post(path).status_code == 401
    assert client.post(path, headers=auth(user_key(scopes=["admin"]))).status_code == 403
    hour = rollups.period_start(Aggregation.HOURLY, datetime.now(UTC))
    write(db, [at(hour - 3 * HOUR + timedelta(minutes=1)), at(hour - HOUR)])
    first = client.post(path, headers=auth(admin_key))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["computed"] >= 4 and body["written"] >= 2  # from 3 hours ago to the open hour
    assert (body["stale"], body["complete"]) == (0, True)
    assert datetime.fromisoformat(body["computed_through"]) >= hour
    write(db, [at(hour - 2 * HOUR)])  # late: its hour is marked
    again = client.post(path, headers=auth(admin_key)).json()
    assert again["stale"] == 1 and again["computed"] <= 3  # it, the open hour (or two)
    assert figures(db, "hourly")[hour - 2 * HOUR][0] == 1
    assert client.post(path.replace("hourly", "yearly"), headers=auth(admin_key)).status_code == 422


# --- races --------------------------------------------------------------------------


def test_a_writer_waits_for_a_run_in_progress_then_marks_its_late_row(db, engine):
    write(db, requests_in(range(6)))
    outcome: dict[str, float] = {}

    def late_writer() -> None:
        with Session(engine) as own:
            request_log.record_requests(own, [at(T0 + 4 * HOUR + timedelta(minutes=30))])
            own.commit()
        outcome["done"] = time.monotonic()

    rollup_schedule.refresh(db, "hourly", now=NOW)  # a first run: holds the lock
    writer = threading.Thread(target=late_writer)
    writer.start()
    time.sleep(0.5)
    assert "done" not in outcome  # it waits for the run
    committed = time.monotonic()
    db.commit()
    writer.join(30)
    assert outcome["done"] >= committed
    assert marks(db) == {("hourly", T0 + 4 * HOUR)}  # the run did not see it: marked
    assert T0 + 4 * HOUR in rollup_schedule.refresh(db, "hourly", now=NOW).computed
    db.commit()
    assert figures(db, "hourly") == recomputed(db, "hourly", T0, T0 + 6 * HOUR)


RACE_HOURS = 12


def run_or_write(engine: Engine, index: int, ready) -> int:
    """Even workers run refreshes as the clock goes through the hours (the watermark
    moves on), odd ones write requests in every hour: late ones, and ones in the
    periods the runs are computing."""
    ready()
    done = 0
    for step in range(2 * RACE_HOURS):
        with Session(engine) as own:
            if index % 2 == 0:
                now = T0 + step // 2 * HOUR + timedelta(minutes=30)
                done += len(rollup_schedule.refresh(own, "hourly", now=now).computed)
            else:
                rows = requests_in(range(RACE_HOURS), per_hour=1, seed=100 * index + step)
                done += request_log.record_requests(own, rows)
            own.commit()
    return done


def test_runs_and_writers_racing_lose_no_period_and_count_no_row_twice(dialect, engine, db_url, db):
    write(db, requests_in(range(RACE_HOURS), per_hour=1))
    done = race(dialect, engine, db_url, 4, run_or_write)
    assert done[1] == done[3] == 2 * RACE_HOURS * RACE_HOURS
    last = T0 + RACE_HOURS * HOUR + timedelta(minutes=30)
    rollup_schedule.refresh(db, "hourly", now=last)  # the last marks, the last hours
    db.commit()
    assert marks(db) == set()
    found = figures(db, "hourly")
    assert found == recomputed(db, "hourly", T0, T0 + RACE_HOURS * HOUR)
    assert sum(f[0] for f in found.values()) == RACE_HOURS * (1 + 4 * RACE_HOURS)
