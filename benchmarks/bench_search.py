"""How fast is ``search`` on 100 000 experiments?

A two-word full-text query through ``pfd_db.store.ml.search.search`` (first page
of 50 and the total) against two baselines on the same database, each returning
the same columns, a page of 50 and the total:

(a) a scan: ``LIKE '%word1%'`` and ``LIKE '%word2%'`` over name, model type and
    notes (``ILIKE`` on PostgreSQL, as search ignores case like SQLite's LIKE).
    Goal: search at least 20x faster.
(b) the same full-text query written by hand in SQL (``text()``), rows as the
    driver returns them. Goal: search at most 2x its time. Also shown: that
    SQL loaded into ``Experiment`` objects as search returns them
    (``from_statement``), which leaves only search's own overhead (parsing and
    building the statement) in the ratio.

(c) filters, on the short-notes database, where each experiment also has 0 to 3
    of 20 tags: a free word, a tag filter, a metric filter and all three
    together, each against the same query written by hand (``text()``) and that
    SQL loaded into ``Experiment`` objects. Goal: search at most 1.3x the
    hand-written SQL loaded into objects (what search returns); the raw rows'
    ratio is shown too.

Experiments are generated from a fixed vocabulary with a seeded RNG and
inserted with Core ``executemany``, twice: with short notes (a dozen words)
and with paragraph notes (40 to 80 words, what a researcher writes about a
run), because a scan's cost grows with the text it reads and an index's does
not; each call runs in its own session; median
of the timed rounds after a warm-up, the calls interleaved round by round.

    python benchmarks/bench_search.py
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from databases import on_each_database
from sqlalchemy import Engine, Float, Integer, Select, column, insert, select, text
from sqlalchemy.orm import Session

from pfd_db.engine import make_engine
from pfd_db.models import Base, Dataset, Experiment, ExperimentTag, Tag
from pfd_db.store.ml.search import search

EXPERIMENTS = 100_000
BATCH = 5_000
SEED = 20260101
# Two-word queries from selective to ubiquitous (the share of experiments each
# matches is printed): a ranked search must score every match, so its time
# grows with that share while the scan's does not.
QUERIES = (
    ("selective", "cavitation pump"),
    ("typical", "misalignment gearbox"),
    ("broad", "outer race"),
    ("ubiquitous", "bearing vibration"),
)
PAGE = 50
WARMUP_ROUNDS = 3
TIMED_ROUNDS = 15
GOAL_SCAN_SPEEDUP = 20.0
GOAL_HAND_RATIO = 2.0
SLOW_QUERY_SECONDS = 60.0  # the bulk inserts and the scans are slow on purpose

# Domain words, most frequent first (drawn with Zipf weights 1/rank).
VOCABULARY = list(
    dict.fromkeys(
        """
        vibration bearing signals fault accuracy model training baseline spectrum
        shaft rotor outer inner race epoch validation noise sensor window envelope
        kurtosis rms frequency harmonic imbalance misalignment looseness cavitation
        lubrication gearbox gear tooth crack spall wear severity incipient mild
        moderate severe spectra sideband resonance accelerometer channel drive fan
        load speed rpm sampling segment augmentation denoising filter bandpass wavelet
        fft stft spectrogram cepstrum ablation epochs learning rate schedule warmup
        dropout batch normalization attention convolution residual recurrent encoder
        decoder embedding pooling overfitting converged diverged plateau stopping
        checkpoint precision recall confusion oversampling weighting transfer
        pretrained finetuned frozen layers kernel stride dilation receptive split
        fold rig motor pump compressor turbine coupling belt pulley housing
        temperature acoustic emission cage ball roller raceway defect pitting
        bpfo bpfi ftf bsf hilbert kurtogram mel mfcc smote adamw cosine onecycle
        mixup cutmix gradcam shap lime onnx quantized pruned distilled teacher student
        ensemble bagging xgboost svm knn pca tsne umap clipping jitter scaling
        permutation masking contrastive autoencoder anomaly threshold calibration
        drift domain adaptation unbalanced dataset leakage shuffled stratified seed
        """.split()
    )
)
# Everyday words between them, drawn uniformly.
FILLER = """
    the a of on with and after before from was were is this run trained using results
    improved compared previous setup same again better worse than slightly much first
    second third final test retry check looks seems probably because still only
    """.split()
MODEL_TYPES = ("cnn1d", "resnet1d", "lstm", "transformer", "wavenet", "random_forest")
STATUSES = ("completed", "completed", "completed", "failed", "cancelled", "running")
DATASETS = ("CWRU", "Paderborn University", "MFPT", "XJTU-SY")
COLUMNS = ", ".join(
    f"e.{c.name}" for c in Experiment.__table__.columns if c.name != "search_vector"
)

HAND_WRITTEN = {
    "postgresql": f"""
        SELECT {COLUMNS}, ts_rank_cd(e.search_vector, q) AS rank, count(*) OVER () AS total
        FROM experiments AS e, plainto_tsquery('english', :words) AS q
        WHERE e.search_vector @@ q
        ORDER BY rank DESC, e.created_at DESC, e.id DESC
        LIMIT {PAGE}
    """,
    "sqlite": f"""
        SELECT {COLUMNS}, hits.rank, count(*) OVER () AS total
        FROM (
            SELECT rowid, -bm25(experiments_fts, 1.0, 0.4, 0.2) AS rank
            FROM experiments_fts WHERE experiments_fts MATCH :fts
        ) AS hits
        JOIN experiments AS e ON e.id = hits.rowid
        ORDER BY hits.rank DESC, e.created_at DESC, e.id DESC
        LIMIT {PAGE}
    """,
}
LIKE_SCAN = {
    dialect: f"""
    SELECT {COLUMNS}, count(*) OVER () AS total
    FROM experiments AS e
    WHERE (e.name {like} :first OR e.model_type {like} :first OR e.notes {like} :first)
      AND (e.name {like} :second OR e.model_type {like} :second OR e.notes {like} :second)
    ORDER BY e.created_at DESC, e.id DESC
    LIMIT {PAGE}
"""
    for dialect, like in (("sqlite", "LIKE"), ("postgresql", "ILIKE"))
}
TAGS = [f"tag-{n:02d}" for n in range(20)]  # tag-00 most used (Zipf), tag-19 least
GOAL_FILTER_RATIO = 1.3
# Words stand for the query's parts in both forms: (search query, hand parameters).
FILTER_QUERIES = (
    ("free word", "cavitation"),
    ("tag filter", "tag:tag-03"),
    ("metric filter", "metric.accuracy>0.95"),
    ("all three", "cavitation tag:tag-03 metric.accuracy>0.95"),
)
TAGGED = (
    "e.id IN (SELECT et.experiment_id FROM experiment_tags AS et "
    "JOIN tags AS t ON t.id = et.tag_id WHERE t.slug = :slug)"
)
METRIC = {
    "postgresql": "jsonb_typeof(e.metrics -> 'accuracy') = 'number' "
    "AND (e.metrics ->> 'accuracy')::float8 > :above",
    "sqlite": "json_type(e.metrics, '$.accuracy') IN ('integer', 'real') "
    "AND json_extract(e.metrics, '$.accuracy') > :above",
}
NEWEST_FIRST = f"ORDER BY e.created_at DESC, e.id DESC LIMIT {PAGE}"
HAND_FILTERS = {
    ("postgresql", "free word"): HAND_WRITTEN["postgresql"],
    ("sqlite", "free word"): HAND_WRITTEN["sqlite"],
    **{
        (dialect, "tag filter"): f"""
            SELECT {COLUMNS}, 0.0 AS rank, count(*) OVER () AS total FROM experiments AS e
            WHERE {TAGGED} {NEWEST_FIRST}"""
        for dialect in ("postgresql", "sqlite")
    },
    **{
        (dialect, "metric filter"): f"""
            SELECT {COLUMNS}, 0.0 AS rank, count(*) OVER () AS total FROM experiments AS e
            WHERE {METRIC[dialect]} {NEWEST_FIRST}"""
        for dialect in ("postgresql", "sqlite")
    },
    ("postgresql", "all three"): f"""
        SELECT {COLUMNS}, ts_rank_cd(e.search_vector, q) AS rank, count(*) OVER () AS total
        FROM experiments AS e, plainto_tsquery('english', :words) AS q
        WHERE e.search_vector @@ q AND {TAGGED} AND {METRIC["postgresql"]}
        ORDER BY rank DESC, e.created_at DESC, e.id DESC LIMIT {PAGE}""",
    ("sqlite", "all three"): f"""
        SELECT {COLUMNS}, hits.rank, count(*) OVER () AS total
        FROM (
            SELECT rowid, -bm25(experiments_fts, 1.0, 0.4, 0.2) AS rank
            FROM experiments_fts WHERE experiments_fts MATCH :fts
        ) AS hits
        JOIN experiments AS e ON e.id = hits.rowid
        WHERE {TAGGED} AND {METRIC["sqlite"]}
        ORDER BY hits.rank DESC, e.created_at DESC, e.id DESC LIMIT {PAGE}""",
}
FILTER_PARAMETERS = {"words": "cavitation", "fts": '"cavitation"', "slug": "tag-03", "above": 0.95}

# (domain words, everyday words) per note: min and max of each.
NOTE_PROFILES = {"short": ((3, 10), (4, 15)), "paragraph": ((8, 20), (32, 60))}


@dataclass(frozen=True)
class FilterResult:
    dialect: str
    kind: str
    query: str
    matches: int
    search_ms: float
    hand_ms: float
    hand_orm_ms: float

    @property
    def hand_ratio(self) -> float:
        return self.search_ms / self.hand_ms

    @property
    def hand_orm_ratio(self) -> float:
        return self.search_ms / self.hand_orm_ms


@dataclass(frozen=True)
class Result:
    dialect: str
    notes: str
    kind: str
    query: str
    search_ms: float
    hand_ms: float
    hand_orm_ms: float
    scan_ms: float
    fts_matches: int
    like_matches: int

    @property
    def scan_speedup(self) -> float:
        return self.scan_ms / self.search_ms

    @property
    def hand_ratio(self) -> float:
        return self.search_ms / self.hand_ms

    @property
    def hand_orm_ratio(self) -> float:
        return self.search_ms / self.hand_orm_ms


def main() -> int:
    """Build each database, time the queries, print the table and the verdict."""
    measured = on_each_database(bench_dialect)
    results = [r for r in measured if isinstance(r, Result)]
    print_table(results)
    print_verdict(results)
    print_filters([r for r in measured if isinstance(r, FilterResult)])
    return 0


def bench_dialect(dialect: str, url: str) -> list[Result | FilterResult]:
    engine = make_engine(url, slow_query_seconds=SLOW_QUERY_SECONDS)
    results: list[Result | FilterResult] = []
    try:
        for profile in NOTE_PROFILES:
            began = time.perf_counter()
            Base.metadata.drop_all(engine)
            Base.metadata.create_all(engine)
            fill(engine, random.Random(SEED), profile)
            if profile == "short":
                fill_tags(engine, random.Random(SEED))
            analyze(engine)
            took = time.perf_counter() - began
            progress(f"{dialect}: {EXPERIMENTS:,} experiments, {profile} notes, in {took:.1f} s")
            results += [measure(dialect, engine, profile, kind, query) for kind, query in QUERIES]
            if profile == "short":
                results += [measure_filter(dialect, engine, *query) for query in FILTER_QUERIES]
        return results
    finally:
        engine.dispose()


# --- data --------------------------------------------------------------------


def fill(engine: Engine, rng: random.Random, profile: str) -> None:
    """The datasets, then the experiments in batches of Core executemany."""
    with engine.begin() as conn:
        dataset_ids = [
            conn.execute(insert(Dataset).returning(Dataset.id), dataset_row(name)).scalar_one()
            for name in DATASETS
        ]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for first in range(0, EXPERIMENTS, BATCH):
        rows = [
            experiment_row(rng, number, dataset_ids, start, profile)
            for number in range(first, first + BATCH)
        ]
        with engine.begin() as conn:
            conn.execute(insert(Experiment), rows)


def fill_tags(engine: Engine, rng: random.Random) -> None:
    """TAGS, and 0 to 3 of them on each experiment (the first ones most often)."""
    with engine.begin() as conn:
        tag_ids = [
            conn.execute(insert(Tag).returning(Tag.id), {"name": t, "slug": t}).scalar_one()
            for t in TAGS
        ]
        weights = [1 / rank for rank in range(1, len(TAGS) + 1)]
        links = [
            {"experiment_id": experiment_id, "tag_id": tag_id}
            for experiment_id in range(1, EXPERIMENTS + 1)
            for tag_id in set(rng.choices(tag_ids, weights=weights, k=rng.randint(0, 3)))
        ]
        for first in range(0, len(links), BATCH):
            conn.execute(insert(ExperimentTag), links[first : first + BATCH])


def dataset_row(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "num_signals": 1000,
        "fault_types": ["normal", "inner_race", "outer_race", "misalignment"],
        "severity_levels": ["mild", "moderate", "severe"],
        "file_path": f"data/{name.lower().replace(' ', '_')}.h5",
    }


def experiment_row(
    rng: random.Random, number: int, dataset_ids: Sequence[int], start: datetime, profile: str
) -> dict[str, Any]:
    model = rng.choice(MODEL_TYPES)
    accuracy = round(rng.uniform(0.6, 0.995), 4)
    return {
        "name": f"{model}-{rng.choice(VOCABULARY[:40])}-{number:06d}",
        "model_type": model,
        "dataset_id": rng.choice(dataset_ids),
        "status": rng.choice(STATUSES),
        "config": {"epochs": rng.choice((30, 50, 100)), "batch_size": rng.choice((32, 64))},
        "metrics": {"accuracy": accuracy, "f1": round(accuracy - rng.uniform(0, 0.05), 4)},
        "notes": notes(rng, profile),
        "created_at": start + timedelta(minutes=5 * number + rng.randrange(5)),
    }


_WEIGHTS = [1 / rank for rank in range(1, len(VOCABULARY) + 1)]


def notes(rng: random.Random, profile: str) -> str:
    """Domain words among everyday ones, as many as the profile says."""
    (domain_min, domain_max), (filler_min, filler_max) = NOTE_PROFILES[profile]
    words = rng.choices(VOCABULARY, weights=_WEIGHTS, k=rng.randint(domain_min, domain_max))
    words += rng.choices(FILLER, k=rng.randint(filler_min, filler_max))
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def analyze(engine: Engine) -> None:
    """Planner statistics (and on PostgreSQL a flushed GIN pending list), as a
    live database would have."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        statement = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
        conn.execute(text(statement))


# --- timing ------------------------------------------------------------------


def measure(dialect: str, engine: Engine, profile: str, kind: str, query: str) -> Result:
    words = query.split()
    hand_sql = text(HAND_WRITTEN[dialect])
    hand_orm = as_experiments(HAND_WRITTEN[dialect])
    hand_parameters = {"words": query, "fts": " AND ".join(f'"{word}"' for word in words)}
    like = {"first": f"%{words[0]}%", "second": f"%{words[1]}%"}

    def through_search() -> tuple[list[int], int]:
        with Session(engine) as session:
            results = search(session, query, limit=PAGE)
            return [hit.experiment.id for hit in results.rows], results.total

    def by_hand() -> tuple[list[int], int]:
        return page_of(engine, hand_sql, hand_parameters)

    def by_hand_into_objects() -> tuple[list[int], int]:
        with Session(engine) as session:
            rows = session.execute(hand_orm, hand_parameters).all()
            return [row.Experiment.id for row in rows], (rows[0].total if rows else 0)

    def scan() -> tuple[list[int], int]:
        return page_of(engine, text(LIKE_SCAN[dialect]), like)

    found, scanned = through_search(), scan()
    assert found == by_hand() == by_hand_into_objects(), f"the queries disagree on {query!r}"
    times = interleaved_times([through_search, by_hand, by_hand_into_objects, scan])
    search_ms, hand_ms, hand_orm_ms, scan_ms = (statistics.median(t) / 1e6 for t in times)
    progress(f"{dialect}, {profile} notes: {query!r} timed")
    return Result(
        dialect,
        profile,
        kind,
        query,
        search_ms,
        hand_ms,
        hand_orm_ms,
        scan_ms,
        found[1],
        scanned[1],
    )


def measure_filter(dialect: str, engine: Engine, kind: str, query: str) -> FilterResult:
    sql = HAND_FILTERS[dialect, kind]
    hand_sql, hand_orm = text(sql), as_experiments(sql)
    parameters = {name: value for name, value in FILTER_PARAMETERS.items() if f":{name}" in sql}

    def through_search() -> tuple[list[int], int]:
        with Session(engine) as session:
            results = search(session, query, limit=PAGE)
            return [hit.experiment.id for hit in results.rows], results.total

    def by_hand() -> tuple[list[int], int]:
        return page_of(engine, hand_sql, parameters)

    def by_hand_into_objects() -> tuple[list[int], int]:
        with Session(engine) as session:
            rows = session.execute(hand_orm, parameters).all()
            return [row.Experiment.id for row in rows], (rows[0].total if rows else 0)

    found = through_search()
    assert found == by_hand() == by_hand_into_objects(), f"the queries disagree on {query!r}"
    times = interleaved_times([through_search, by_hand, by_hand_into_objects])
    search_ms, hand_ms, hand_orm_ms = (statistics.median(t) / 1e6 for t in times)
    progress(f"{dialect}: filter {query!r} timed")
    return FilterResult(dialect, kind, query, found[1], search_ms, hand_ms, hand_orm_ms)


def as_experiments(sql: str) -> Select[Any]:
    """``sql`` loaded into ``Experiment`` objects with its rank and total."""
    columns = [c for c in Experiment.__table__.columns if c.name != "search_vector"]
    rank, total = column("rank", Float), column("total", Integer)
    return select(Experiment, rank, total).from_statement(text(sql).columns(*columns, rank, total))


def page_of(engine: Engine, statement: Any, parameters: dict[str, str]) -> tuple[list[int], int]:
    """The ids of a page of ``statement`` and its total, in a session of its own."""
    with Session(engine) as session:
        rows = session.execute(statement, parameters).all()
        return [row.id for row in rows], (rows[0].total if rows else 0)


def interleaved_times(calls: list[Callable[[], object]]) -> list[list[int]]:
    """Nanoseconds of each call in each timed round, after the warm-up rounds."""
    for _ in range(WARMUP_ROUNDS):
        for call in calls:
            call()
    gc.collect()
    times: list[list[int]] = [[] for _ in calls]
    for _ in range(TIMED_ROUNDS):
        for call, sink in zip(calls, times, strict=True):
            began = time.perf_counter_ns()
            call()
            sink.append(time.perf_counter_ns() - began)
    return times


# --- report ------------------------------------------------------------------


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def print_table(results: list[Result]) -> None:
    print(
        f"{EXPERIMENTS:,} experiments; page of {PAGE} with the total; median ms of {TIMED_ROUNDS}"
    )
    print(
        f"{'dialect':<11} {'notes':<10} {'query':<21} {'matches':>8} {'search':>7} {'hand':>7} "
        f"{'hand+ORM':>9} {'LIKE':>7} {'LIKE/search':>12} {'search/hand':>12} "
        f"{'search/hand+ORM':>16}"
    )
    for r in results:
        share = f"{100 * r.fts_matches / EXPERIMENTS:.2g}%"
        print(
            f"{r.dialect:<11} {r.notes:<10} {r.query:<21} {share:>8} {r.search_ms:>7.2f} "
            f"{r.hand_ms:>7.2f} {r.hand_orm_ms:>9.2f} {r.scan_ms:>7.2f} {r.scan_speedup:>11.1f}x "
            f"{r.hand_ratio:>11.2f}x {r.hand_orm_ratio:>15.2f}x"
        )


def print_verdict(results: list[Result]) -> None:
    """Both goals, per dialect and query (LIKE also matches inside words, so its
    match counts differ a little from the stemmed full-text ones)."""
    print()
    for r in results:
        print(
            f"{r.dialect} {r.notes} notes {r.kind} "
            f"({r.fts_matches:,} matches, LIKE {r.like_matches:,}): "
            f">= {GOAL_SCAN_SPEEDUP:g}x faster than LIKE: "
            f"{yes(r.scan_speedup >= GOAL_SCAN_SPEEDUP)} ({r.scan_speedup:.1f}x); "
            f"<= {GOAL_HAND_RATIO:g}x by hand: {yes(r.hand_ratio <= GOAL_HAND_RATIO)} "
            f"({r.hand_ratio:.2f}x)"
        )


def print_filters(results: list[FilterResult]) -> None:
    print()
    print(
        f"filters ({EXPERIMENTS:,} experiments, short notes, 20 tags); median ms of {TIMED_ROUNDS}"
    )
    print(
        f"{'dialect':<11} {'query':<44} {'matches':>8} {'search':>7} {'hand':>7} "
        f"{'hand+ORM':>9} {'search/hand':>12} {'search/hand+ORM':>16}  goal"
    )
    for r in results:
        verdict = "met" if r.hand_orm_ratio <= GOAL_FILTER_RATIO else "MISSED"
        print(
            f"{r.dialect:<11} {r.query:<44} {r.matches:>8,} {r.search_ms:>7.2f} {r.hand_ms:>7.2f} "
            f"{r.hand_orm_ms:>9.2f} {r.hand_ratio:>11.2f}x {r.hand_orm_ratio:>15.2f}x  "
            f"<= {GOAL_FILTER_RATIO:g}x: {verdict}"
        )


def yes(holds: bool) -> str:
    return "yes" if holds else "NO"


if __name__ == "__main__":
    sys.exit(main())
