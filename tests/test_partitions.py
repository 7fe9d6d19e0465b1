"""The partitioned log tables on PostgreSQL (revision 0011, ``store.ops.partitions``):
partitions created, rows routed to their month's partition (``tableoid``), rows far
in the past or future taken by the default partition, partitions dropped by
``clean`` across the cutoff's edges, ``maintain`` idempotent, dry runs that change
nothing, and the migration up and down with rows in the tables. SQLite has no
partitions: these tests need the PostgreSQL server only.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from cli_support import pfd_db
from factories import insert_row
from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.migrations.compare import PARTITIONED
from pfd_db.portability.copy import copy_database
from pfd_db.store.ops import partitions, retention
from probes import run_together

TABLES = list(PARTITIONED)
CLEANED = [table for table in retention.TABLES if table in PARTITIONED]  # clean's order
MICROSECOND = timedelta(microseconds=1)
YEAR = datetime.now(UTC).year + 5  # months no partition made from today's date covers
NOW = datetime(YEAR, 5, 20, 12, tzinfo=UTC)
CUTOFF = datetime(YEAR, 3, 10, 12, tzinfo=UTC)
FAR_PAST = datetime(1990, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2300, 1, 1, tzinfo=UTC)


@pytest.fixture
def new_database(pg_server):
    """Makes fresh databases (not migrated): their URL and engine; dropped after."""
    made = []

    def make():
        name = f"pfd_parts_{uuid.uuid4().hex[:12]}"
        pg_server.create_database(name)
        made.append((name, make_engine(pg_server.url(name))))
        return pg_server.url(name), made[-1][1]

    yield make
    for name, engine in made:
        engine.dispose()
        pg_server.drop_database(name)


@pytest.fixture
def database(new_database):
    return new_database()


@pytest.fixture
def migrated(database):
    url, engine = database
    migrations.upgrade(engine)
    return url, engine


def add(engine, table: str, moment: datetime) -> int:
    """One row of ``table`` at ``moment`` (its time column); its id."""
    with engine.begin() as conn:
        return insert_row(conn, table, **{PARTITIONED[table]: moment})


def partition_of(engine, table: str, row_id: int) -> str:
    with engine.connect() as conn:
        query = f"SELECT tableoid::regclass::text FROM {table} WHERE id = :id"
        return conn.execute(text(query), {"id": row_id}).scalar_one()


def names(engine, table: str) -> list[str]:
    with Session(engine) as session:
        found = [t for t in partitions.list_partitions(session) if t.table == table]
    return [p.name for p in found[0].partitions] if found else []


def ensure(engine, **arguments) -> list[partitions.Created]:
    with Session(engine) as session:
        created = partitions.ensure_partitions(session, **arguments)
        session.commit()
    return created


def rows(engine, table: str) -> list[tuple]:
    with engine.connect() as conn:
        query = f"SELECT * FROM {table} ORDER BY id"
        return [tuple(row) for row in conn.execute(text(query))]


def month(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def test_the_migration_partitions_the_four_tables_by_month_with_no_drift(migrated):
    _url, engine = migrated
    now = datetime.now(UTC)
    with Session(engine) as session:
        assert partitions.partitioned_tables(session) == PARTITIONED
        listed = partitions.list_partitions(session)
    assert [t.table for t in listed] == TABLES
    for table in listed:
        assert table.default is not None and table.default.name == f"{table.table}_default"
        starts = [p.start for p in table.monthly]
        assert month(now) in starts and len(starts) == 4  # this month and three ahead
        assert all(p.name == f"{table.table}_p{p.start:%Y_%m}" for p in table.monthly)
    with engine.connect() as conn:
        keys = conn.execute(
            text(
                "SELECT c.relname, array_agg(a.attname::text ORDER BY k.i) FROM pg_constraint x "
                "JOIN pg_class c ON c.oid = x.conrelid "
                "CROSS JOIN unnest(x.conkey) WITH ORDINALITY k(n, i) "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n "
                "WHERE x.contype = 'p' AND c.relname = ANY(:tables) GROUP BY c.relname"
            ),
            {"tables": TABLES},
        ).all()
    assert dict(keys) == {table: ["id", column] for table, column in PARTITIONED.items()}
    assert migrations.schema_drift(engine) == []


def test_rows_go_to_their_months_partition_and_far_ones_to_the_default(migrated):
    _url, engine = migrated
    this_month = month(datetime.now(UTC))
    for table in TABLES:
        inside = add(engine, table, this_month + timedelta(days=3, hours=5))
        last_moment = add(engine, table, this_month - MICROSECOND)  # the month before: none
        past, future = add(engine, table, FAR_PAST), add(engine, table, FAR_FUTURE)
        assert partition_of(engine, table, inside) == f"{table}_p{this_month:%Y_%m}"
        for row_id in (last_moment, past, future):
            assert partition_of(engine, table, row_id) == f"{table}_default"
        assert len(rows(engine, table)) == 4


def test_ensure_partitions_creates_months_ahead_and_moves_rows_out_of_the_default(migrated):
    _url, engine = migrated
    late = {table: add(engine, table, datetime(YEAR, 2, 14, tzinfo=UTC)) for table in TABLES}
    kept = {table: add(engine, table, FAR_PAST) for table in TABLES}
    before = {table: rows(engine, table) for table in TABLES}

    planned = ensure(engine, now=NOW, dry_run=True)
    assert all(f"{t}_p{YEAR}_02" not in names(engine, t) for t in TABLES)  # nothing made
    created = ensure(engine, now=NOW)
    assert created == planned
    wanted = [(YEAR, 2), *[(YEAR, m) for m in range(5, 9)]]  # February's rows; May + 3
    for table in TABLES:
        made = [(c.start.year, c.start.month) for c in created if c.table == table]
        assert made == wanted
        moved = {c.name: c.moved for c in created if c.table == table}
        assert moved[f"{table}_p{YEAR}_02"] == 1 and sum(moved.values()) == 1
        assert partition_of(engine, table, late[table]) == f"{table}_p{YEAR}_02"
        assert partition_of(engine, table, kept[table]) == f"{table}_default"  # 120 months+
        assert rows(engine, table) == before[table]  # moved, not changed
    assert ensure(engine, now=NOW) == []  # idempotent
    assert migrations.schema_drift(engine) == []


def test_concurrent_runs_take_turns(migrated):
    _url, engine = migrated
    for table in TABLES:
        add(engine, table, datetime(YEAR, 1, 10, tzinfo=UTC))
    results, errors = run_together(2, lambda _i: ensure(engine, now=NOW))
    assert errors == []
    made = sorted(c.name for result in results for c in result)
    assert len(made) == len(set(made)) == len(TABLES) * 5  # January, May + 3: once each
    assert ensure(engine, now=NOW) == []


def fill_edges(engine) -> dict[str, dict[str, int]]:
    """Rows of each table on both sides of CUTOFF and of the month edges before it."""
    moments = {
        "far past": FAR_PAST,  # the default partition: deleted in batches
        "january": datetime(YEAR, 1, 15, tzinfo=UTC),  # a partition wholly before: dropped
        "february's last": datetime(YEAR, 3, 1, tzinfo=UTC) - MICROSECOND,  # dropped
        "march's first": datetime(YEAR, 3, 1, tzinfo=UTC),  # the cutoff's month: deleted
        "just before": CUTOFF - MICROSECOND,  # deleted
        "at the cutoff": CUTOFF,  # kept
        "just after": CUTOFF + MICROSECOND,  # kept
        "april": datetime(YEAR, 4, 2, tzinfo=UTC),  # kept
        "far future": FAR_FUTURE,  # the default partition: kept
    }
    ids = {
        table: {name: add(engine, table, at) for name, at in moments.items()} for table in TABLES
    }
    ensure(engine, now=NOW)
    return ids


KEPT = {"at the cutoff", "just after", "april", "far future"}


def test_clean_drops_whole_partitions_and_deletes_across_the_cutoffs_edges(migrated):
    _url, engine = migrated
    made_today = {table: names(engine, table)[:-1] for table in TABLES}  # all before YEAR
    ids = fill_edges(engine)
    before = {table: rows(engine, table) for table in TABLES}

    age = NOW - CUTOFF
    dry = retention.clean(engine, older_than=age, tables=TABLES, now=NOW, dry_run=True)
    assert {table: rows(engine, table) for table in TABLES} == before
    report = retention.clean(engine, older_than=age, tables=TABLES, now=NOW, batch_size=2)

    assert [(r.table, r.cutoff, r.rows) for r in report] == [(t, CUTOFF, 5) for t in CLEANED]
    assert [(r.rows, r.partitions) for r in report] == [(r.rows, r.partitions) for r in dry]
    for removed in report:
        table = removed.table
        dropped = [*made_today[table], f"{table}_p{YEAR}_01", f"{table}_p{YEAR}_02"]
        assert [p.name for p in removed.partitions] == dropped
        assert [p.rows for p in removed.partitions][-2:] == [1, 1]
        left = names(engine, table)
        assert not set(dropped) & set(left) and f"{table}_p{YEAR}_03" in left
        assert {row[0] for row in rows(engine, table)} == {ids[table][k] for k in KEPT}
        assert partition_of(engine, table, ids[table]["at the cutoff"]) == f"{table}_p{YEAR}_03"
    again = retention.clean(engine, older_than=age, tables=TABLES, now=NOW)
    assert [(r.rows, r.partitions) for r in again] == [(0, ())] * len(TABLES)
    assert migrations.schema_drift(engine) == []


def test_drop_before_detaches_and_drops_only_partitions_wholly_older(migrated):
    _url, engine = migrated
    made_today = names(engine, "system_logs")[:-1]
    fill_edges(engine)
    with Session(engine) as session:
        planned = partitions.drop_before(session, CUTOFF, tables=["system_logs"], dry_run=True)
        session.commit()
    wholly_older = [*made_today, f"system_logs_p{YEAR}_01", f"system_logs_p{YEAR}_02"]
    assert [p.name for p in planned] == wholly_older
    assert set(wholly_older) <= set(names(engine, "system_logs"))
    with Session(engine) as session:
        dropped = partitions.drop_before(session, CUTOFF, tables=["system_logs"])
        session.commit()
    assert dropped == planned  # the rows counted the same
    assert not set(wholly_older) & set(names(engine, "system_logs"))
    assert len(rows(engine, "system_logs")) == 7
    assert f"api_usage_p{YEAR}_01" in names(engine, "api_usage")  # other tables untouched


def test_drop_partition_drops_only_a_listed_monthly_partition(migrated):
    from pfd_db.errors import InvalidInput

    _url, engine = migrated
    with Session(engine) as session:
        [logs] = [t for t in partitions.list_partitions(session) if t.table == "api_usage"]
        newest, default = logs.monthly[-1], logs.default
        bad = [
            "api_usage_p2026_01",
            replace(newest, table="users"),
            replace(newest, name="users"),
            replace(newest, table="system_logs"),
            default,
        ]
        for partition in bad:
            with pytest.raises(InvalidInput, match="partition"):
                partitions.drop_partition(session, partition)  # type: ignore[arg-type]
        assert partitions.drop_partition(session, replace(newest, name="api_usage_p1999_01")) == 0
        assert partitions.drop_partition(session, newest) == 0  # empty, and now gone
        session.commit()
    assert newest.name not in names(engine, "api_usage")


def test_the_migration_moves_every_row_in_and_out(database):
    url, engine = database
    migrations.upgrade(engine, "0010")
    now = datetime.now(UTC)
    moments = [FAR_PAST, now - timedelta(days=70), now - timedelta(days=1), now, FAR_FUTURE]
    ids = {table: [add(engine, table, at) for at in moments] for table in TABLES}
    before = {table: rows(engine, table) for table in TABLES}

    assert migrations.upgrade(engine).current == "0011"
    assert {table: rows(engine, table) for table in TABLES} == before
    for table in TABLES:
        first, seventy, _day, _now, last = ids[table]
        assert partition_of(engine, table, first) == partition_of(engine, table, last)
        assert partition_of(engine, table, first) == f"{table}_default"
        assert partition_of(engine, table, seventy) == f"{table}_p{moments[1]:%Y_%m}"
        assert add(engine, table, now) == max(ids[table]) + 1  # the same sequence goes on
    assert migrations.schema_drift(engine) == []
    during = {table: rows(engine, table) for table in TABLES}

    down = pfd_db("downgrade", "0010", "--url", url, "--yes")
    assert down.exit_code == 0, down.output
    assert migrations.state(engine).current == "0010"
    assert {table: rows(engine, table) for table in TABLES} == during
    with engine.connect() as conn:
        kinds = conn.execute(
            text("SELECT relname, relkind FROM pg_class WHERE relname = ANY(:t)"), {"t": TABLES}
        ).all()
        leftovers = conn.scalar(text("SELECT count(*) FROM pg_inherits"))
    assert dict(kinds) == dict.fromkeys(TABLES, "r") and leftovers == 0
    for table in TABLES:
        assert add(engine, table, now) == max(ids[table]) + 2

    assert migrations.upgrade(engine).current == "0011"  # and up again
    assert migrations.schema_drift(engine) == []


def test_a_create_all_database_keeps_plain_tables_that_check_and_clean_accept(database):
    from pfd_db.models import Base

    _url, engine = database
    Base.metadata.create_all(engine)
    assert migrations.adopt(engine).at_head  # the plain form passes the comparison
    with Session(engine) as session:
        assert partitions.partitioned_tables(session) == {}
        assert partitions.ensure_partitions(session, now=NOW) == []
    add(engine, "system_logs", CUTOFF - MICROSECOND)
    (report,) = retention.clean(engine, older_than=NOW - CUTOFF, tables=["system_logs"], now=NOW)
    assert (report.rows, report.partitions) == (1, ())
    # ... and going down to 0010 and up again partitions them
    migrations.downgrade(engine, "0010")
    migrations.upgrade(engine)
    with Session(engine) as session:
        assert partitions.partitioned_tables(session) == PARTITIONED


def test_check_reports_a_partitioned_table_not_as_0011_makes_it(migrated):
    _url, engine = migrated
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE api_usage DETACH PARTITION api_usage_default"))
        conn.execute(text("DROP TABLE api_usage_default"))
    assert migrations.schema_drift(engine) == [
        "add_default_partition: api_usage_default on api_usage"
    ]


def test_an_adopted_partitioned_database_passes(migrated):
    _url, engine = migrated
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    assert migrations.adopt(engine).at_head


def test_maintain_is_idempotent_and_its_dry_run_creates_nothing(migrated):
    url, engine = migrated
    add(engine, "login_history", datetime.now(UTC) + timedelta(days=200))  # in the default
    dry = pfd_db("maintain", "--url", url, "--ahead", "8", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True and planned["moved"] == 1
    assert len(planned["created"]) == 4 * 5  # months 4 to 8 ahead, the row's among them
    before = names(engine, "login_history")
    assert not {c["partition"] for c in planned["created"]} & set(before)

    done = pfd_db("maintain", "--url", url, "--ahead", "8", "--json")
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert document["created"] == planned["created"] and document["moved"] == 1
    history = next(t for t in document["tables"] if t["table"] == "login_history")
    listed = [p["partition"] for p in history["partitions"]]
    assert set(listed) == set(before) | {c["partition"] for c in planned["created"]
                                         if c["table"] == "login_history"}  # fmt: skip

    again = pfd_db("maintain", "--url", url, "--ahead", "8")
    assert again.exit_code == 0, again.output
    assert "nothing to create" in again.stdout


def test_clean_dry_run_names_the_partitions_it_would_drop(migrated):
    url, engine = migrated
    old = add(engine, "api_request_logs", datetime.now(UTC) - timedelta(days=200))
    assert pfd_db("maintain", "--url", url).exit_code == 0  # its month's partition
    partition = partition_of(engine, "api_request_logs", old)
    arguments = ("clean", "--url", url, "--table", "api_request_logs")

    dry = pfd_db(*arguments, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    (table,) = json.loads(dry.stdout)["tables"]
    assert [p["partition"] for p in table["partitions_dropped"]] == [partition]
    assert table["rows"] == 1 and partition in names(engine, "api_request_logs")
    shown = pfd_db(*arguments, "--dry-run")
    assert partition in shown.stdout and "(1 partitions to drop whole)" in shown.stdout

    done = pfd_db(*arguments, "--yes")
    assert done.exit_code == 0, done.output
    assert "removed 1 rows from 1 tables (1 partitions dropped whole)" in done.stdout
    assert (
        partition not in names(engine, "api_request_logs")
        and rows(engine, "api_request_logs") == []
    )


def test_status_shows_the_partitions_of_each_table(migrated):
    url, engine = migrated
    add(engine, "system_logs", FAR_PAST)
    result = pfd_db("status", "--url", url, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["partitions"]
    assert set(shown) == set(TABLES)
    assert (
        shown["system_logs"]["partitions"] == 4 and shown["system_logs"]["column"] == "created_at"
    )
    text_output = pfd_db("status", "--url", url).stdout
    assert "4 monthly" in text_output and "default" in text_output


def test_a_copy_into_postgresql_gives_the_copied_rows_their_months(
    migrated, new_database, tmp_path
):
    _source_url, source = migrated
    moment = datetime.now(UTC) - timedelta(days=70)
    for table in TABLES:
        add(source, table, moment)
    middle = make_engine(f"sqlite:///{tmp_path / 'middle.db'}")
    (_url, direct), (_url, back) = new_database(), new_database()
    try:
        copy_database(source, direct)  # PostgreSQL to PostgreSQL
        copy_database(source, middle)  # PostgreSQL to SQLite ...
        copy_database(middle, back)  # ... and back into PostgreSQL
    finally:
        middle.dispose()
    for target in (direct, back):
        for table in TABLES:
            assert rows(target, table) == rows(source, table)
            (row_id,) = [row[0] for row in rows(target, table)]
            assert partition_of(target, table, row_id) == f"{table}_p{moment:%Y_%m}"
        assert migrations.schema_drift(target) == []


@pytest.mark.parametrize("tools", [None, ""], ids=["pg_dump", "without pg_dump"])
def test_backup_and_restore_keep_the_rows_in_their_partitions(
    migrated, new_database, tmp_path, tools
):
    from pfd_db.portability.backup import backup, restore

    _url, source = migrated
    moment = datetime.now(UTC) - timedelta(days=70)
    ids = {table: [add(source, table, moment), add(source, table, FAR_PAST)] for table in TABLES}
    ensure(source)  # the month's partition, as pfd-db maintain makes it
    path = tmp_path / "pfd.backup"
    backup(source, path, tools_path=tools)
    _target_url, target = new_database()
    migrations.upgrade(target)
    add(target, "system_logs", datetime.now(UTC))  # replaced by the restore
    restore(path, target, replace=True, tools_path=tools)
    for table in TABLES:
        assert rows(target, table) == rows(source, table)
        dated, old = ids[table]
        assert partition_of(target, table, dated) == f"{table}_p{moment:%Y_%m}"
        assert partition_of(target, table, old) == f"{table}_default"
    assert migrations.schema_drift(target) == []


def test_a_partition_change_that_cannot_lock_its_table_in_time_changes_nothing(
    migrated, monkeypatch
):
    from pfd_db.errors import Conflict

    _url, engine = migrated
    fill_edges(engine)
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "200ms")
    before = names(engine, "api_usage")
    with engine.connect() as reader:
        reader.execute(text("SELECT count(*) FROM api_usage"))  # holds its lock: a long read
        with Session(engine) as session, pytest.raises(Conflict, match="api_usage is busy"):
            partitions.drop_before(session, CUTOFF, tables=["api_usage"])
        reader.rollback()
    assert names(engine, "api_usage") == before
