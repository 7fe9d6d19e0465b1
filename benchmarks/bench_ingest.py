"""How fast does ``experiments.log_epochs`` write training curves?

50 000 epoch rows (500 experiments x 100 epochs) on a SQLite file and on
PostgreSQL, two ways into the same ``training_runs`` table of the same database:

- store: ``experiments.log_epochs(session, experiment, rows)``, which checks
  every row and upserts each batch in one ``INSERT ... ON CONFLICT DO UPDATE``;
- raw: SQLAlchemy Core ``connection.execute(insert(TrainingRun.__table__),
  rows)``, a plain executemany of the same rows with no checks and no upsert.

Both make one call and one commit per experiment, and start from an emptied
table; every row is built before the clock starts (the raw rows already carry
the ``experiment_id`` and timestamps the store adds itself). One untimed
warm-up each, then ROUNDS rounds, raw and store alternating; the best round of
each counts, which keeps other load on the machine out of the ratio.
Goal: the store at least 0.5x the raw rows per second.

    python benchmarks/bench_ingest.py
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from databases import on_each_database
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from pfd_db.engine import make_engine
from pfd_db.models import Base, Dataset, Experiment, TrainingRun
from pfd_db.store import experiments
from pfd_db.types import utcnow

EXPERIMENTS = 500
EPOCHS = 100
ROUNDS = 3
GOAL_RATIO = 0.5
SLOW_QUERY_SECONDS = 60.0  # bulk writes are slow on purpose: keep the log quiet

Curve = list[dict[str, Any]]


@dataclass(frozen=True)
class Result:
    dialect: str
    rows: int
    raw_seconds: float
    store_seconds: float

    @property
    def raw_rate(self) -> float:
        return self.rows / self.raw_seconds

    @property
    def store_rate(self) -> float:
        return self.rows / self.store_seconds

    @property
    def ratio(self) -> float:
        return self.store_rate / self.raw_rate


def main() -> int:
    """Measure each dialect, then print the table and the verdict."""
    results = on_each_database(lambda dialect, url: [bench_dialect(dialect, url)])
    print_table(results)
    return 0


def bench_dialect(dialect: str, url: str) -> Result:
    engine = make_engine(url, slow_query_seconds=SLOW_QUERY_SECONDS)
    try:
        Base.metadata.create_all(engine)
        with Session(engine, expire_on_commit=False) as session:
            owners = make_experiments(session)
            curves = [curve(n) for n in range(EXPERIMENTS)]
            raw_rows = [as_table_rows(o, rows) for o, rows in zip(owners, curves, strict=True)]

            def store() -> None:
                for owner, rows in zip(owners, curves, strict=True):
                    experiments.log_epochs(session, owner, rows)
                    session.commit()

            def raw() -> None:
                for rows in raw_rows:
                    with engine.begin() as conn:
                        conn.execute(insert(TrainingRun.__table__), rows)

            raw_seconds, store_seconds = best_times(engine, raw, store)
            return Result(dialect, EXPERIMENTS * EPOCHS, raw_seconds, store_seconds)
    finally:
        engine.dispose()


def make_experiments(session: Session) -> list[Experiment]:
    dataset = Dataset(
        name="bench", num_signals=0, fault_types=["normal"], severity_levels=["mild"], file_path="b"
    )
    owners = [
        Experiment(name=f"bench-{n:03d}", model_type="cnn1d", dataset=dataset, config={})
        for n in range(EXPERIMENTS)
    ]
    session.add_all(owners)
    session.commit()
    return owners


def curve(seed: int) -> Curve:
    """A training curve of EPOCHS epochs, as a training script would log it."""
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
        for epoch in range(EPOCHS)
    ]


def as_table_rows(owner: Experiment, rows: Curve) -> Curve:
    """The same rows as complete ``training_runs`` rows, for the raw insert."""
    now = utcnow()
    stamp = {"experiment_id": owner.id, "created_at": now, "updated_at": now}
    return [{**row, "checkpoint_path": None, **stamp} for row in rows]


def best_times(
    engine: Engine, raw: Callable[[], None], store: Callable[[], None]
) -> tuple[float, float]:
    """Best seconds of ``raw`` and of ``store`` over ROUNDS alternating rounds,
    each into an emptied table, after one untimed run of each."""
    best = {raw: float("inf"), store: float("inf")}
    for timed in (False, *([True] * ROUNDS)):
        for write in (raw, store):
            empty_training_runs(engine)
            gc.collect()
            began = time.perf_counter()
            write()
            elapsed = time.perf_counter() - began
            if timed:
                best[write] = min(best[write], elapsed)
        progress(f"{engine.dialect.name}: round done ({'timed' if timed else 'warm-up'})")
    return best[raw], best[store]


def empty_training_runs(engine: Engine) -> None:
    """Empty the table (and, on PostgreSQL, its files: no dead rows left behind)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE training_runs"))
        else:
            conn.execute(text("DELETE FROM training_runs"))


def print_table(results: list[Result]) -> None:
    print(
        f"{EXPERIMENTS * EPOCHS:,} epoch rows ({EXPERIMENTS} experiments x {EPOCHS} epochs), "
        f"best of {ROUNDS} rounds"
    )
    print(f"{'dialect':<11} {'raw rows/s':>11} {'log_epochs rows/s':>18} {'ratio':>6}  goal")
    for r in results:
        verdict = "met" if r.ratio >= GOAL_RATIO else "MISSED"
        print(
            f"{r.dialect:<11} {r.raw_rate:>11,.0f} {r.store_rate:>18,.0f} {r.ratio:>6.2f}  "
            f">= {GOAL_RATIO:g}: {verdict}"
        )


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
