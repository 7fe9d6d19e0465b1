"""Do readers stay fast, and writers keep going, when a dashboard and writers share a database?

A dashboard-like mix on one database per dialect, every operation in a default
``get_db_session()`` of its own (the way a web callback or a training script
uses pfd-db), from separate processes:

- 8 reader processes, each a request every ``THINK_SECONDS``: ``search.search``
  (one of a few queries), ``curves.curve`` of a random experiment, or the
  50 latest experiments;
- writer processes, as fast as they can: ``curves.log_epoch`` of the next
  epoch of their own experiment (half of their operations),
  ``tags.tag_experiment`` and ``api_keys.record_usage``, each committed;
- one session that reads, then stays open and idle for ``IDLE_SECONDS`` while
  the 8 writers run (it must hold nobody up).

One run, in three windows: the readers alone, then with 1 writer, then with 8
writers (``MIX_SECONDS``). Printed per dialect: lock errors ("database is
locked", deadlocks; goal 0), reader p50/p99 with 8 writers running divided by
reader p50/p99 alone (goal: p99 ratio at most 3), and the 8 writers' throughput
divided by the 1 writer's (goal: at least 0.7 on SQLite, where writers take
turns at the one write lock).

    python benchmarks/bench_concurrency.py
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from databases import on_each_database
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pfd_db import session as sessions
from pfd_db.engine import make_engine
from pfd_db.models import APIKey, Base, Experiment, ExperimentStatus, Tag
from pfd_db.store.identity import api_keys, users
from pfd_db.store.ml import curves, datasets, experiments, search, tags

READERS = 8
WRITERS = 8
THINK_SECONDS = 0.02  # a reader's pause between requests
SETTLE_SECONDS = 2.0  # after a change of load, before a window is measured
ALONE_SECONDS = 8.0
ONE_WRITER_SECONDS = 8.0
MIX_SECONDS = 20.0
IDLE_SECONDS = 10.0
EXPERIMENTS = 300
CURVE_EPOCHS = 30
TAG_NAMES = [f"tag-{i}" for i in range(12)]
QUERIES = ["bearing", "outer race", "model:cnn1d", "metric.val_accuracy>0.9", "status:running"]
SLOW_QUERY_SECONDS = 60.0  # lock waits are measured here, not logged
GOAL_P99_RATIO = 3.0
GOAL_THROUGHPUT_RATIO = 0.7
LOCK_WORDS = ("locked", "deadlock", "lock timeout", "could not obtain lock")
WORDS = "bearing outer race inner ball cage vibration spectrum envelope fault baseline".split()
MODELS = ["cnn1d", "lstm", "resnet", "transformer"]


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    def holds(self, began: float, took: float) -> bool:
        return began >= self.start and began + took <= self.end


# The schedule, in seconds from the start signal.
ALONE = Window(SETTLE_SECONDS, SETTLE_SECONDS + ALONE_SECONDS)
ONE_WRITER = Window(ALONE.end + SETTLE_SECONDS, ALONE.end + SETTLE_SECONDS + ONE_WRITER_SECONDS)
MIX = Window(ONE_WRITER.end + SETTLE_SECONDS, ONE_WRITER.end + SETTLE_SECONDS + MIX_SECONDS)
IDLE = Window(MIX.start + 2.0, MIX.start + 2.0 + IDLE_SECONDS)
END = MIX.end


@dataclass(frozen=True)
class Sample:
    role: str  # "reader" or "writer"
    began: float  # seconds from the start signal
    took: float
    error: str | None


@dataclass(frozen=True)
class Fixture:
    """Ids the workers use."""

    experiment_ids: list[int]
    writer_experiment_ids: list[int]
    tag_ids: list[int]
    key_ids: list[int]


@dataclass(frozen=True)
class Result:
    dialect: str
    lock_errors: int
    other_errors: list[str]
    alone_p50: float
    alone_p99: float
    mix_p50: float
    mix_p99: float
    one_writer_rate: float
    eight_writer_rate: float
    ops_while_idle_open: int
    longest_write: float

    @property
    def p50_ratio(self) -> float:
        return self.mix_p50 / self.alone_p50

    @property
    def p99_ratio(self) -> float:
        return self.mix_p99 / self.alone_p99

    @property
    def throughput_ratio(self) -> float:
        return self.eight_writer_rate / self.one_writer_rate


def main() -> int:
    """Run the mix on each dialect, print the figures and the verdict."""
    results = on_each_database(bench_dialect)
    print_results(results)
    return 0


def bench_dialect(dialect: str, url: str) -> list[Result]:
    began = time.perf_counter()
    fixture = fill(url)
    progress(f"{dialect}: filled in {time.perf_counter() - began:.1f} s; running the mix")
    samples = run_workers(url, fixture)
    progress(f"{dialect}: done in {time.perf_counter() - began:.1f} s")
    return [summarise(dialect, samples)]


# --- the database ------------------------------------------------------------------


def fill(url: str) -> Fixture:
    """Schema, a dataset, experiments with notes, metrics and curves, tags, one key
    per writer, and an experiment of its own for each writer to log epochs into."""
    rng = random.Random(7)
    engine = make_engine(url, slow_query_seconds=SLOW_QUERY_SECONDS)
    try:
        Base.metadata.create_all(engine)
        with Session(engine, expire_on_commit=False) as session:
            owner = users.create_user(
                session, "bench", "bench@example.com", "a long bench passphrase"
            )
            dataset = datasets.register_dataset(
                session, "cwru", ["normal", "outer_race"], ["low", "high"], "data/cwru.h5"
            )
            made = [
                experiments.create_experiment(
                    session,
                    f"run-{i}",
                    rng.choice(MODELS),
                    dataset,
                    {"lr": 0.001},
                    notes=" ".join(rng.choices(WORDS, k=12)),
                )
                for i in range(EXPERIMENTS + WRITERS)
            ]
            session.flush()
            for experiment in made[:EXPERIMENTS]:
                session.execute(
                    update(Experiment)
                    .where(Experiment.id == experiment.id)
                    .values(
                        status=rng.choice(list(ExperimentStatus)),
                        metrics={"val_accuracy": round(rng.random(), 3)},
                    )
                )
            for experiment in made[:EXPERIMENTS:3]:
                curves.log_epochs(session, experiment, curve_rows(rng, CURVE_EPOCHS))
            tag_ids = [tags.get_or_create_tag(session, name).id for name in TAG_NAMES]
            key_ids = [api_keys.issue(session, owner, f"writer {i}")[1].id for i in range(WRITERS)]
            session.commit()
            return Fixture(
                [e.id for e in made[:EXPERIMENTS]],
                [e.id for e in made[EXPERIMENTS:]],
                tag_ids,
                key_ids,
            )
    finally:
        engine.dispose()


def curve_rows(rng: random.Random, epochs: int) -> list[dict[str, Any]]:
    return [epoch_values(rng, epoch) for epoch in range(epochs)]


def epoch_values(rng: random.Random, epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "train_loss": rng.random(),
        "val_loss": rng.random(),
        "train_accuracy": rng.random(),
        "val_accuracy": rng.random(),
    }


# --- the workers -------------------------------------------------------------------


def run_workers(url: str, fixture: Fixture) -> list[Sample]:
    """Start every worker, release them together, collect their samples."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    start = context.Value("d", 0.0)
    jobs: list[tuple[str, int]] = [("reader", i) for i in range(READERS)]
    jobs += [("writer", i) for i in range(WRITERS)]
    jobs.append(("idle", 0))
    workers = [
        context.Process(target=work, args=(url, fixture, role, i, ready, go, start, results))
        for role, i in jobs
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=300)
    start.value = time.monotonic()
    go.set()
    samples = [sample for _ in workers for sample in results.get(timeout=END + 300)]
    for worker in workers:
        worker.join(timeout=60)
    return samples


def work(url: str, fixture: Fixture, role: str, index: int, ready, go, start, results) -> None:
    """One worker process: configure pfd-db for ``url``, wait for the start, run ``role``."""
    sessions.configure(engine=make_engine(url, slow_query_seconds=SLOW_QUERY_SECONDS))
    rng = random.Random(index * 101 + len(role))
    samples: list[Sample] = []
    try:
        ready.put(index)
        go.wait()
        clock = Clock(start.value)
        if role == "reader":
            samples = loop(clock, Window(0.0, END), "reader", reads(fixture, rng), THINK_SECONDS)
        elif role == "writer":
            active = Window(
                ONE_WRITER.start - SETTLE_SECONDS if index == 0 else MIX.start - SETTLE_SECONDS, END
            )
            samples = loop(clock, active, "writer", writes(fixture, rng, index), 0.0)
        else:
            stay_open_idle(clock)
    finally:
        results.put(samples)
        sessions.reset()


class Clock:
    """Seconds since the start signal, shared by all processes (monotonic time)."""

    def __init__(self, start: float) -> None:
        self.start = start

    def now(self) -> float:
        return time.monotonic() - self.start

    def sleep_until(self, moment: float) -> None:
        time.sleep(max(0.0, moment - self.now()))


def loop(
    clock: Clock, active: Window, role: str, operation: Callable[[], None], think: float
) -> list[Sample]:
    """Run ``operation`` again and again while ``active`` lasts; one sample per run."""
    samples = []
    clock.sleep_until(active.start)
    while (began := clock.now()) < active.end:
        error = None
        try:
            operation()
        except Exception as exc:  # counted and reported, the run goes on
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        samples.append(Sample(role, began, clock.now() - began, error))
        if think:
            time.sleep(think)
    return samples


def reads(fixture: Fixture, rng: random.Random) -> Callable[[], None]:
    def read() -> None:
        with sessions.get_db_session() as session:
            choice = rng.randrange(3)
            if choice == 0:
                search.search(session, rng.choice(QUERIES))
            elif choice == 1:
                experiment = session.get(Experiment, rng.choice(fixture.experiment_ids))
                curves.curve(session, experiment)
            else:
                session.scalars(
                    select(Experiment).order_by(Experiment.created_at.desc()).limit(50)
                ).all()

    return read


def writes(fixture: Fixture, rng: random.Random, index: int) -> Callable[[], None]:
    own_experiment, key_id = fixture.writer_experiment_ids[index], fixture.key_ids[index]
    epochs = iter(range(10**9))
    steps = iter(range(10**9))

    def write() -> None:
        step = next(steps) % 4
        with sessions.get_db_session() as session:
            if step < 2:
                experiment = session.get(Experiment, own_experiment)
                values = epoch_values(rng, next(epochs))
                curves.log_epoch(session, experiment, **values)
            elif step == 2:
                experiment_id = rng.choice(fixture.experiment_ids)
                tags.tag_experiment(session, experiment_id, rng.choice(fixture.tag_ids))
            else:
                key = session.get(APIKey, key_id)
                api_keys.record_usage(session, key, "/api/experiments", "GET", 200, 12)

    return write


def stay_open_idle(clock: Clock) -> None:
    clock.sleep_until(IDLE.start)
    with sessions.get_db_session() as session:
        session.scalars(select(Tag).limit(10)).all()
        clock.sleep_until(IDLE.end)


# --- the figures -------------------------------------------------------------------


def summarise(dialect: str, samples: list[Sample]) -> Result:
    errors = [s.error for s in samples if s.error is not None]
    lock_errors = [e for e in errors if any(word in e.lower() for word in LOCK_WORDS)]
    readers = [s for s in samples if s.role == "reader" and s.error is None]
    writers = [s for s in samples if s.role == "writer" and s.error is None]
    alone = [s.took for s in readers if ALONE.holds(s.began, s.took)]
    mixed = [s.took for s in readers if MIX.holds(s.began, s.took)]
    one = [s for s in writers if ONE_WRITER.holds(s.began, s.took)]
    eight = [s for s in writers if MIX.holds(s.began, s.took)]
    return Result(
        dialect=dialect,
        lock_errors=len(lock_errors),
        other_errors=sorted(set(errors) - set(lock_errors)),
        alone_p50=percentile(alone, 50),
        alone_p99=percentile(alone, 99),
        mix_p50=percentile(mixed, 50),
        mix_p99=percentile(mixed, 99),
        one_writer_rate=len(one) / (ONE_WRITER.end - ONE_WRITER.start),
        eight_writer_rate=len(eight) / (MIX.end - MIX.start),
        ops_while_idle_open=sum(1 for s in writers if IDLE.holds(s.began, s.took)),
        longest_write=max((s.took for s in eight), default=0.0),
    )


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def print_results(results: list[Result]) -> None:
    for r in results:
        print(f"{r.dialect}:")
        print(f"  lock errors: {r.lock_errors} (goal 0); other errors: {len(r.other_errors)}")
        for error in r.other_errors[:5]:
            print(f"    {error}")
        print(
            f"  readers alone p50 {ms(r.alone_p50)} p99 {ms(r.alone_p99)}; with {WRITERS} "
            f"writers p50 {ms(r.mix_p50)} p99 {ms(r.mix_p99)}: ratio p50 {r.p50_ratio:.2f}, "
            f"p99 {r.p99_ratio:.2f} (goal p99 <= {GOAL_P99_RATIO:g}: "
            f"{yes(r.p99_ratio <= GOAL_P99_RATIO)})"
        )
        goal = (
            f"goal >= {GOAL_THROUGHPUT_RATIO:g}: {yes(r.throughput_ratio >= GOAL_THROUGHPUT_RATIO)}"
            if r.dialect == "sqlite"
            else "no goal"
        )
        print(
            f"  writers: 1 writer {r.one_writer_rate:.0f} ops/s, {WRITERS} writers "
            f"{r.eight_writer_rate:.0f} ops/s: ratio {r.throughput_ratio:.2f} ({goal})"
        )
        print(
            f"  a session open and idle for {IDLE_SECONDS:g} s after reading: writers committed "
            f"{r.ops_while_idle_open} operations meanwhile; longest write {ms(r.longest_write)}"
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def yes(holds: bool) -> str:
    return "yes" if holds else "NO"


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
