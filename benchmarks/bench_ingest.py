"""How fast do ``curves.log_epochs`` and ``log_epoch`` write training curves?

Into the same ``training_runs`` table of the same database, SQLite file and
PostgreSQL, against baselines measured in the same run, each a ratio of rows
per second (bigger is better, 1.0 is the baseline's speed):

1. **calls of 100 rows** (500 experiments x 100 epochs, one call and one commit
   per experiment, what a training script does at the end of a run):
   ``log_epochs`` ÷ SQLAlchemy Core ``executemany`` of the same rows per
   experiment (goal 0.5), and ÷ one Core ``executemany`` of all 50 000 rows
   in one commit (goal 0.5);
2. **one bulk call** (one experiment, 50 000 epochs, one commit):
   ``log_epochs`` ÷ the driver's limit, ``sqlite3``'s own ``executemany`` of
   the same tuples (goal 0.3) or psycopg's ``COPY`` (goal 0.5);
3. **one epoch at a time** (20 experiments x 100 epochs, a commit after each
   epoch, what a training loop does): ``log_epoch`` + commit ÷ a Core insert +
   commit per epoch (goal 0.5, aim 0.8); on SQLite also ÷ Optuna's per-step
   write (``trial.report`` of one value, which commits), on its own SQLite file
   with the same settings (WAL, ``synchronous=NORMAL``), when Optuna is
   installed (``pip install -e '.[bench]'``): goal above 1.

Every row is built before the clock starts (the baselines' rows already carry
the ``experiment_id`` and the timestamps the store adds itself, converted as
the driver takes them). One untimed warm-up each, then ROUNDS rounds, store and
baseline alternating, each into an emptied table; the best round of each
counts, which keeps other load on the machine out of the ratio.

    python benchmarks/bench_ingest.py
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from databases import on_each_database
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session

from pfd_db.engine import make_engine
from pfd_db.models import Base, Dataset, Experiment, TrainingRun
from pfd_db.store.ml import curves
from pfd_db.types import utcnow

EXPERIMENTS = 500
EPOCHS = 100
BULK_EPOCHS = EXPERIMENTS * EPOCHS
STEP_EXPERIMENTS = 20
ROUNDS = 3
SLOW_QUERY_SECONDS = 60.0  # bulk writes are slow on purpose: keep the log quiet
TABLE = TrainingRun.__table__
DRIVER_COLUMNS = [c.name for c in TABLE.columns if c.name != "id"]

Curve = list[dict[str, Any]]


@dataclass(frozen=True)
class Ratio:
    dialect: str
    what: str
    store_seconds: float
    baseline_seconds: float
    goal: float
    rows: int

    @property
    def ratio(self) -> float:
        return self.baseline_seconds / self.store_seconds


def main() -> int:
    """Measure each dialect, then print the table and the verdicts."""
    print_table(on_each_database(bench_dialect))
    return 0


def bench_dialect(dialect: str, url: str) -> list[Ratio]:
    engine = make_engine(url, slow_query_seconds=SLOW_QUERY_SECONDS)
    try:
        Base.metadata.create_all(engine)
        with Session(engine, expire_on_commit=False) as session:
            owners = make_experiments(session, EXPERIMENTS)
            results = calls_of_a_curve(engine, session, owners)
            results.append(one_bulk_call(engine, session, owners[0]))
            results += one_epoch_at_a_time(engine, session, owners[:STEP_EXPERIMENTS])
        return results
    finally:
        engine.dispose()


# --- 1. calls of 100 rows -------------------------------------------------------------


def calls_of_a_curve(engine: Engine, session: Session, owners: list[Experiment]) -> list[Ratio]:
    dialect = engine.dialect.name
    drawn = [curve(n, EPOCHS) for n in range(len(owners))]
    table_rows = [as_table_rows(o, rows) for o, rows in zip(owners, drawn, strict=True)]
    all_rows = [row for rows in table_rows for row in rows]

    def store() -> None:
        for owner, rows in zip(owners, drawn, strict=True):
            curves.log_epochs(session, owner, rows)
            session.commit()

    def core_per_call() -> None:
        for rows in table_rows:
            with engine.begin() as conn:
                conn.execute(insert(TABLE), rows)

    def core_all_at_once() -> None:
        with engine.begin() as conn:
            conn.execute(insert(TABLE), all_rows)

    store_s, per_call_s, at_once_s = best_times(engine, store, core_per_call, core_all_at_once)
    rows = len(all_rows)
    return [
        Ratio(dialect, "log_epochs, 100 rows/call ÷ Core executemany per call", store_s,
              per_call_s, 0.5, rows),
        Ratio(dialect, "log_epochs, 100 rows/call ÷ one Core executemany of all", store_s,
              at_once_s, 0.5, rows),
    ]  # fmt: skip


# --- 2. one bulk call -----------------------------------------------------------------


def one_bulk_call(engine: Engine, session: Session, owner: Experiment) -> Ratio:
    dialect = engine.dialect.name
    rows = curve(0, BULK_EPOCHS)
    tuples = as_driver_tuples(engine, owner, rows)

    def store() -> None:
        curves.log_epochs(session, owner, rows)
        session.commit()

    def driver() -> None:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            if dialect == "postgresql":
                copy_rows(cursor, tuples)
            else:
                placeholders = ", ".join("?" * len(DRIVER_COLUMNS))
                cursor.execute("BEGIN")
                cursor.executemany(
                    f"INSERT INTO training_runs ({', '.join(DRIVER_COLUMNS)}) "
                    f"VALUES ({placeholders})",
                    tuples,
                )
            raw.commit()
        finally:
            raw.close()

    store_s, driver_s = best_times(engine, store, driver)
    limit, goal = ("COPY", 0.5) if dialect == "postgresql" else ("sqlite3 executemany", 0.3)
    return Ratio(dialect, f"log_epochs, one call ÷ {limit}", store_s, driver_s, goal, len(rows))


def copy_rows(cursor: Any, tuples: list[tuple[Any, ...]]) -> None:
    with cursor.copy(f"COPY training_runs ({', '.join(DRIVER_COLUMNS)}) FROM STDIN") as copy:
        for row in tuples:
            copy.write_row(row)


# --- 3. one epoch at a time -----------------------------------------------------------


def one_epoch_at_a_time(engine: Engine, session: Session, owners: list[Experiment]) -> list[Ratio]:
    dialect = engine.dialect.name
    drawn = [curve(n, EPOCHS) for n in range(len(owners))]
    table_rows = [as_table_rows(o, rows) for o, rows in zip(owners, drawn, strict=True)]
    rows = sum(map(len, drawn))

    def store() -> None:
        for owner, epochs in zip(owners, drawn, strict=True):
            for epoch in epochs:
                curves.log_epoch(session, owner, **epoch)
                session.commit()

    def core() -> None:
        statement = insert(TABLE)
        for epochs in table_rows:
            for row in epochs:
                with engine.begin() as conn:
                    conn.execute(statement, row)

    store_s, core_s = best_times(engine, store, core)
    results = [
        Ratio(dialect, "log_epoch + commit ÷ Core insert + commit", store_s, core_s, 0.5, rows)
    ]
    if dialect == "sqlite" and importlib.util.find_spec("optuna") is not None:
        optuna_s = optuna_per_step(drawn)
        results.append(
            Ratio(dialect, "log_epoch + commit ÷ Optuna trial.report", store_s, optuna_s, 1.0,
                  rows)
        )  # fmt: skip
    return results


def optuna_per_step(curves: list[Curve]) -> float:
    """Best seconds of Optuna reporting every epoch's val_loss, one trial per
    curve, on a SQLite file of its own with pfd-db's settings."""
    import optuna
    from optuna.storages import RDBStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = float("inf")
    with tempfile.TemporaryDirectory(prefix="pfd_bench_optuna_") as directory:
        storage = RDBStorage(f"sqlite:///{Path(directory) / 'optuna.db'}")
        event.listen(storage.engine, "connect", same_sqlite_settings)
        storage.engine.dispose()  # reconnect with the settings
        for round_ in range(1 + ROUNDS):
            study = optuna.create_study(storage=storage, study_name=f"bench-{round_}")
            trials = [study.ask() for _ in curves]
            gc.collect()
            began = time.perf_counter()
            for trial, epochs in zip(trials, curves, strict=True):
                for epoch in epochs:
                    trial.report(epoch["val_loss"], epoch["epoch"])
            if round_:
                best = min(best, time.perf_counter() - began)
        storage.engine.dispose()
    return best


def same_sqlite_settings(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# --- data -----------------------------------------------------------------------------


def make_experiments(session: Session, count: int) -> list[Experiment]:
    dataset = Dataset(
        name="bench", num_signals=0, fault_types=["normal"], severity_levels=["mild"], file_path="b"
    )
    owners = [
        Experiment(name=f"bench-{n:03d}", model_type="cnn1d", dataset=dataset, config={})
        for n in range(count)
    ]
    session.add_all(owners)
    session.commit()
    return owners


def curve(seed: int, epochs: int) -> Curve:
    """A training curve, as a training script would log it."""
    return [
        {
            "epoch": epoch,
            "train_loss": 2.0 / (epoch + 1) + seed * 1e-6,
            "val_loss": 2.2 / (epoch + 1),
            "train_accuracy": 1 - 0.9 / (epoch + 1),
            "val_accuracy": 1 - 0.95 / (epoch + 1),
            "learning_rate": 1e-3,
            "duration_seconds": 41.5,
        }
        for epoch in range(epochs)
    ]


def as_table_rows(owner: Experiment, rows: Curve) -> Curve:
    """The same rows as complete ``training_runs`` rows, for Core."""
    now = utcnow()
    stamp = {"experiment_id": owner.id, "created_at": now, "updated_at": now}
    return [{**row, "checkpoint_path": None, "metrics": None, **stamp} for row in rows]


def as_driver_tuples(engine: Engine, owner: Experiment, rows: Curve) -> list[tuple[Any, ...]]:
    """The same rows as the driver takes them, in ``DRIVER_COLUMNS`` order."""
    dialect = engine.dialect
    stamp = TABLE.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    now = stamp(utcnow()) if stamp else utcnow()
    full = [{**row, "checkpoint_path": None, "metrics": None} for row in rows]
    shared = {"experiment_id": owner.id, "created_at": now, "updated_at": now}
    return [tuple({**row, **shared}[name] for name in DRIVER_COLUMNS) for row in full]


# --- timing ---------------------------------------------------------------------------


def best_times(engine: Engine, *writes: Callable[[], None]) -> list[float]:
    """Best seconds of each of ``writes`` over ROUNDS alternating rounds, each into
    an emptied table, after one untimed run of each."""
    best = [float("inf")] * len(writes)
    for timed in (False, *([True] * ROUNDS)):
        for index, write in enumerate(writes):
            empty_training_runs(engine)
            gc.collect()
            began = time.perf_counter()
            write()
            elapsed = time.perf_counter() - began
            if timed:
                best[index] = min(best[index], elapsed)
        progress(f"{engine.dialect.name}: round done ({'timed' if timed else 'warm-up'})")
    return best


def empty_training_runs(engine: Engine) -> None:
    """Empty the table (and, on PostgreSQL, its files: no dead rows left behind)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE training_runs"))
        else:
            conn.execute(text("DELETE FROM training_runs"))


# --- report ---------------------------------------------------------------------------


def print_table(results: list[Ratio]) -> None:
    print(f"training_runs rows per second, store ÷ baseline (best of {ROUNDS} rounds)")
    print(f"{'dialect':<11} {'measure':<58} {'rows':>7} {'store/s':>10} {'ratio':>6}  goal")
    for r in results:
        verdict = "met" if r.ratio >= r.goal else "MISSED"
        print(
            f"{r.dialect:<11} {r.what:<58} {r.rows:>7,} {r.rows / r.store_seconds:>10,.0f} "
            f"{r.ratio:>6.2f}  >= {r.goal:g}: {verdict}"
        )
    if importlib.util.find_spec("optuna") is None:
        print("(Optuna is not installed: pip install -e '.[bench]' to compare with it)")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
