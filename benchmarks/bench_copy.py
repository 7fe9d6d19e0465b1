"""How fast does ``pfd-db copy`` move a database from SQLite to PostgreSQL?

A SQLite database at head holding ROWS rows (mostly training curves and
signals, the big tables) is copied into an empty PostgreSQL database at head,
two ways:

- copy: ``copy_database(sqlite, postgresql, replace=True)``, all of it: the
  snapshot read of SQLite, the writes (psycopg ``COPY``), the held-back
  foreign keys, reading every table back for its checksum, sequences;
- raw: psycopg ``COPY ... FROM STDIN`` of the same rows, already in memory as
  tuples, table by table, one transaction, nothing read and nothing checked.

The target is emptied before each run (untimed). One untimed warm-up each,
then ROUNDS rounds, alternating; the best round of each counts.
Goal: copy at least 0.3x the raw rows per second.

    python benchmarks/bench_copy.py
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from databases import databases
from sqlalchemy import Engine, insert, text

from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.models import Base, Dataset, Experiment, Signal, TrainingRun, User
from pfd_db.portability.copy import copy_database, snapshot
from pfd_db.portability.rows import layout_of, stream_rows

EXPERIMENTS = 400
EPOCHS = 200
SIGNALS = 40_000
ROUNDS = 3
GOAL_RATIO = 0.3
SLOW_QUERY_SECONDS = 60.0

Tables = list[tuple[str, list[str], list[tuple[Any, ...]]]]


def main() -> int:
    with databases() as targets:
        urls = dict(targets)
        source = make_engine(urls["sqlite"], slow_query_seconds=SLOW_QUERY_SECONDS)
        target = make_engine(urls["postgresql"], slow_query_seconds=SLOW_QUERY_SECONDS)
        try:
            rows = fill(source)
            migrations.upgrade(target)
            tables = read_all(source)
            raw_seconds, copy_seconds = best_times(
                target,
                raw=lambda: raw_copy(target, tables),
                copied=lambda: copy_database(source, target, replace=True),
            )
        finally:
            source.dispose()
            target.dispose()
    print_result(rows, raw_seconds, copy_seconds)
    return 0


def fill(engine: Engine) -> int:
    """Migrate the SQLite source and fill it; the number of rows it holds."""
    migrations.upgrade(engine)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stamp = {"created_at": now, "updated_at": now}
    with engine.begin() as conn:
        conn.execute(insert(User), [{"id": 1, "username": "u", "email": "u@x.io", **stamp}])
        conn.execute(
            insert(Dataset),
            [{"id": 1, "name": "d", "num_signals": SIGNALS, "fault_types": ["normal"],
              "severity_levels": ["mild"], "file_path": "d.h5", "created_by": 1, **stamp}],
        )  # fmt: skip
        conn.execute(
            insert(Signal),
            [{"dataset_id": 1, "signal_id": f"s-{n}", "fault_class": "wear", "severity": "mild",
              "rms": 0.5 + n * 1e-6, "kurtosis": 3.2, "dominant_frequency": 29.5, **stamp}
             for n in range(SIGNALS)],
        )  # fmt: skip
        conn.execute(
            insert(Experiment),
            [{"id": n + 1, "name": f"exp-{n}", "model_type": "cnn1d", "dataset_id": 1,
              "config": {"epochs": EPOCHS, "lr": 1e-3}, "metrics": {"val_accuracy": 0.9},
              "notes": "bearing vibration baseline", "created_by": 1, **stamp}
             for n in range(EXPERIMENTS)],
        )  # fmt: skip
        conn.execute(
            insert(TrainingRun),
            [{"experiment_id": e + 1, "epoch": epoch, "train_loss": 2.0 / (epoch + 1),
              "val_loss": 2.2 / (epoch + 1), "train_accuracy": 1 - 0.9 / (epoch + 1),
              "val_accuracy": 1 - 0.95 / (epoch + 1), "learning_rate": 1e-3,
              "duration_seconds": 41.5, "created_at": now + timedelta(seconds=epoch),
              "updated_at": now + timedelta(seconds=epoch)}
             for e in range(EXPERIMENTS) for epoch in range(EPOCHS)],
        )  # fmt: skip
    return 2 + SIGNALS + EXPERIMENTS + EXPERIMENTS * EPOCHS


def read_all(source: Engine) -> Tables:
    """Every table's rows as the copy writes them, held in memory for the raw COPY."""
    tables: Tables = []
    with snapshot(source) as conn:
        for table in Base.metadata.sorted_tables:
            layout = layout_of(table)
            rows = [row for batch in stream_rows(conn, layout, 5000) for row in batch]
            tables.append((table.name, layout.names, rows))
    return tables


def raw_copy(target: Engine, tables: Tables) -> None:
    """psycopg COPY of every table's rows, one transaction."""
    with target.connect() as conn:
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor:
            for name, columns, rows in tables:
                if not rows:
                    continue
                statement = f'COPY "{name}" ({", ".join(columns)}) FROM STDIN'
                with cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
        driver.commit()


def best_times(
    target: Engine, raw: Callable[[], None], copied: Callable[[], Any]
) -> tuple[float, float]:
    best = {raw: float("inf"), copied: float("inf")}
    for timed in (False, *([True] * ROUNDS)):
        for run in (raw, copied):
            empty(target)
            gc.collect()
            began = time.perf_counter()
            run()
            elapsed = time.perf_counter() - began
            if timed:
                best[run] = min(best[run], elapsed)
        progress(f"round done ({'timed' if timed else 'warm-up'})")
    return best[raw], best[copied]


def empty(target: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with target.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))


def print_result(rows: int, raw_seconds: float, copy_seconds: float) -> None:
    raw_rate, copy_rate = rows / raw_seconds, rows / copy_seconds
    ratio = copy_rate / raw_rate
    verdict = "met" if ratio >= GOAL_RATIO else "MISSED"
    print(f"{rows:,} rows, SQLite -> PostgreSQL, best of {ROUNDS} rounds")
    print(f"{'raw COPY rows/s':>16} {'pfd-db copy rows/s':>19} {'ratio':>6}  goal")
    print(f"{raw_rate:>16,.0f} {copy_rate:>19,.0f} {ratio:>6.2f}  >= {GOAL_RATIO:g}: {verdict}")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
