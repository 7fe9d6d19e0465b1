"""How fast does a dashboard get a training curve to plot?

One experiment's curve of 200 epochs, each with the fixed metrics and three
extra ones (``f1``, ``precision``, ``recall``), among 50 other curves, on a
SQLite file and on PostgreSQL. Three ways to read it, in one session each call:

- ``curves.curve_columns(session, experiment)``: ``{"epoch": [...], ...}``;
- ``curves.curve(session, experiment)``: a ``TrainingRun`` per epoch;
- the baseline: a raw SQLAlchemy Core ``select`` of the same columns (epoch, the
  six fixed ones, the extra-metrics document), rows as Core returns them.

Each call is timed CALLS times in a row, per round; rounds interleave the three,
the median round counts. Printed: ``curve_columns`` ÷ Core (goal at most 1.2)
and ``curve`` ÷ Core (shown, no goal: it builds objects).

    python benchmarks/bench_curve.py
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from databases import on_each_database
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pfd_db.engine import make_engine
from pfd_db.models import Base, Dataset, Experiment, TrainingRun
from pfd_db.store.ml import curves

EPOCHS = 200
CURVES = 51
CALLS = 50
WARMUP_ROUNDS = 2
TIMED_ROUNDS = 9
GOAL_COLUMNS = 1.2
TABLE = TrainingRun.__table__
SAME_COLUMNS = [
    TABLE.c[name]
    for name in ("epoch", *curves.CURVE_FIXED, "metrics")  # what curve_columns reads
]


@dataclass(frozen=True)
class Result:
    dialect: str
    core_ms: float
    columns_ms: float
    objects_ms: float


def main() -> int:
    results = on_each_database(lambda dialect, url: [bench_dialect(dialect, url)])
    print_table(results)
    return 0


def bench_dialect(dialect: str, url: str) -> Result:
    engine = make_engine(url)
    try:
        Base.metadata.create_all(engine)
        experiment_id = fill(engine)
        core, columns, objects = readers(engine, experiment_id)
        assert_same_curve(core(), columns(), objects())
        times = interleaved(core, columns, objects)
        progress(f"{dialect}: timed")
        return Result(dialect, *(statistics.median(t) * 1e3 / CALLS for t in times))
    finally:
        engine.dispose()


def fill(engine: Engine) -> int:
    """CURVES curves of EPOCHS epochs; the id of the middle one."""
    with Session(engine) as session:
        dataset = Dataset(
            name="bench", num_signals=0, fault_types=["n"], severity_levels=["m"], file_path="b"
        )
        owners = [
            Experiment(name=f"curve-{n}", model_type="cnn1d", dataset=dataset, config={})
            for n in range(CURVES)
        ]
        session.add_all(owners)
        session.commit()
        for n, owner in enumerate(owners):
            curves.log_epochs(session, owner, curve(n))
        session.commit()
        return owners[CURVES // 2].id


def curve(seed: int) -> list[dict[str, Any]]:
    return [
        {
            "epoch": epoch,
            "train_loss": 2.0 / (epoch + 1) + seed * 1e-6,
            "val_loss": 2.2 / (epoch + 1),
            "train_accuracy": 1 - 0.9 / (epoch + 1),
            "val_accuracy": 1 - 0.95 / (epoch + 1),
            "learning_rate": 1e-3,
            "duration_seconds": 41.5,
            "metrics": {"f1": 0.9 - 0.5 / (epoch + 1), "precision": 0.91, "recall": 0.89},
        }
        for epoch in range(EPOCHS)
    ]


def readers(engine: Engine, experiment_id: int) -> list[Callable[[], Any]]:
    statement = (
        select(*SAME_COLUMNS).where(TABLE.c.experiment_id == experiment_id).order_by(TABLE.c.epoch)
    )

    def core() -> Any:
        with Session(engine) as session:
            return session.execute(statement).all()

    def columns() -> Any:
        with Session(engine) as session:
            return curves.curve_columns(session, experiment_id)

    def objects() -> Any:
        with Session(engine) as session:
            return curves.curve(session, experiment_id)

    return [core, columns, objects]


def assert_same_curve(rows: Any, columns: dict[str, list[Any]], runs: Any) -> None:
    assert columns["epoch"] == [row.epoch for row in rows] == [run.epoch for run in runs]
    assert columns["f1"] == [row.metrics["f1"] for row in rows]
    assert len(columns) == 1 + len(curves.CURVE_FIXED) + 3


def interleaved(*calls: Callable[[], Any]) -> list[list[float]]:
    """Seconds of CALLS calls of each, per timed round, after the warm-up rounds."""
    times: list[list[float]] = [[] for _ in calls]
    for round_ in range(WARMUP_ROUNDS + TIMED_ROUNDS):
        for call, sink in zip(calls, times, strict=True):
            gc.collect()
            began = time.perf_counter()
            for _ in range(CALLS):
                call()
            if round_ >= WARMUP_ROUNDS:
                sink.append(time.perf_counter() - began)
    return times


def print_table(results: list[Result]) -> None:
    print(f"one curve of {EPOCHS} epochs (3 extra metrics); median ms per call")
    print(
        f"{'dialect':<11} {'Core':>7} {'curve_columns':>14} {'curve':>7} "
        f"{'columns/Core':>13} {'curve/Core':>11}  goal"
    )
    for r in results:
        ratio = r.columns_ms / r.core_ms
        verdict = "met" if ratio <= GOAL_COLUMNS else "MISSED"
        print(
            f"{r.dialect:<11} {r.core_ms:>7.3f} {r.columns_ms:>14.3f} {r.objects_ms:>7.3f} "
            f"{ratio:>12.2f}x {r.objects_ms / r.core_ms:>10.2f}x  "
            f"curve_columns <= {GOAL_COLUMNS:g}x: {verdict}"
        )


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
