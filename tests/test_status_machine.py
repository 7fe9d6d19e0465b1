"""The one status machine of experiments, HPO and NAS campaigns, and data jobs
(pfd_db.store.status): moves are conditional UPDATEs, so racing workers can
neither both make a change from one status nor move a job's progress back.
Races run on threads (PostgreSQL) and on processes (SQLite), on both dialects."""

from __future__ import annotations

import random
from functools import partial

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput, InvalidTransition, NotFound
from pfd_db.models import (
    Dataset,
    DatasetGeneration,
    DatasetImport,
    Experiment,
    ExperimentStatus,
    HPOCampaign,
    HPOMethod,
    JobStatus,
    NASCampaign,
)
from pfd_db.store.ml import campaigns, experiments, jobs
from pfd_db.store.status import describe, move_status, update_if, update_where
from probes import statements
from racing import race

S = ExperimentStatus
KINDS = ("experiment", "hpo", "nas", "generation", "import")
MODELS = {
    "experiment": Experiment,
    "hpo": HPOCampaign,
    "nas": NASCampaign,
    "generation": DatasetGeneration,
    "import": DatasetImport,
}
WORKERS = {"postgresql": 8, "sqlite": 4}


# --- each kind through one interface ------------------------------------------------------


def start(session: Session, row) -> None:
    """Move ``row`` from pending to running through its own module's function."""
    if isinstance(row, Experiment):
        experiments.start(session, row)
    elif isinstance(row, HPOCampaign | NASCampaign):
        campaigns.transition(session, row, S.RUNNING)
    else:
        jobs.start(session, row)


def status_of(row) -> str:
    return str(row.status)  # NASCampaign keeps text, the others enum members


def stored_status(engine: Engine, kind: str, row_id: int) -> str:
    model = MODELS[kind]
    with Session(engine) as fresh:
        return str(fresh.scalar(select(model.status).where(model.id == row_id)))


@pytest.fixture
def dataset(db) -> Dataset:
    made = Dataset(
        name="cwru", num_signals=0, fault_types=["normal"], severity_levels=["mild"], file_path="x"
    )
    db.add(made)
    db.commit()
    return made


def make(db, kind: str, dataset: Dataset):
    """A committed, pending row of ``kind``."""
    if kind == "experiment":
        row = experiments.create_experiment(db, "resnet-1", "resnet18", dataset, {})
    elif kind == "hpo":
        row = campaigns.create_hpo_campaign(
            db, "sweep", HPOMethod.BAYESIAN, "cnn1d", dataset, {"lr": [0.1]}, {}, trials_total=5
        )
    elif kind == "nas":
        row = campaigns.create_nas_campaign(db, "search", dataset)
    elif kind == "generation":
        row = jobs.create_generation(db, "nightly", {"n": 10})
    else:
        row = jobs.create_import(db, "upload", {"files": 3})
    db.commit()
    return row


@pytest.fixture(params=KINDS)
def pending(request, db, dataset):
    return make(db, request.param, dataset)


# --- one session -------------------------------------------------------------------------


def test_a_move_is_one_conditional_update_and_the_object_shows_it(db, engine, pending):
    before = pending.updated_at
    with statements(engine) as sent:
        start(db, pending)
    writes = [s for s in sent if s.lstrip().upper().startswith("UPDATE")]
    assert len(writes) == 1 and "status =" in writes[0] and "RETURNING" in writes[0]
    assert not [s for s in sent if s.lstrip().upper().startswith("SELECT")]
    assert status_of(pending) == "running"  # loaded back from the statement
    assert pending.updated_at >= before
    db.commit()
    assert stored_status(engine, kind_of(pending), pending.id) == "running"


def kind_of(row) -> str:
    return next(kind for kind, model in MODELS.items() if isinstance(row, model))


def test_a_stale_object_is_refused_and_read_again(db, engine, pending):
    kind = kind_of(pending)
    with Session(engine) as other:
        start(other, other.get(MODELS[kind], pending.id))
        other.commit()
    # this session still shows "pending": the UPDATE finds no such row
    with pytest.raises(InvalidTransition, match="is running now, not pending"):
        start(db, pending)
    assert status_of(pending) == "running"  # read again
    db.rollback()
    assert stored_status(engine, kind, pending.id) == "running"


def test_an_expired_object_moves_from_what_is_stored_without_reading_it_first(db, engine, pending):
    db.expire(pending)
    with statements(engine) as sent:
        start(db, pending)
    assert [s.split()[0].upper() for s in sent] == ["UPDATE"]
    assert status_of(pending) == "running"
    db.commit()
    db.expire(pending)
    with pytest.raises(InvalidTransition, match="cannot go from running to running"):
        start(db, pending)  # the stored status is not one running can be reached from


def test_a_move_of_a_deleted_row_is_not_found(db, engine, pending):
    model = type(pending)
    with Session(engine) as other:
        other.delete(other.get(model, pending.id))
        other.commit()
    with pytest.raises(NotFound, match="no longer exists"):
        start(db, pending)


def test_an_illegal_move_sends_nothing(db, engine, pending):
    allowed = {S.PENDING: frozenset({S.RUNNING})}
    with statements(engine) as sent, pytest.raises(InvalidTransition, match="pending to paused"):
        move_status(db, pending, S.PAUSED, allowed)
    assert sent == []


def test_update_if_leaves_a_row_that_fails_the_condition_alone(db, engine, dataset):
    job = make(db, "generation", dataset)
    assert not update_if(db, job, DatasetGeneration.status == JobStatus.RUNNING, progress=40)
    assert job.progress == 0
    assert update_if(db, job, DatasetGeneration.status == JobStatus.PENDING, progress=40)
    assert job.progress == 40
    db.commit()


def test_update_where_changes_the_rows_that_meet_the_condition_and_counts_them(db, engine, dataset):
    jobs_made = [jobs.create_generation(db, f"nightly-{n}", {"n": n}) for n in range(3)]
    db.commit()
    jobs.start(db, jobs_made[0])
    db.commit()
    assert [job.progress for job in jobs_made] == [0, 0, 0]  # loaded in this session
    pending_only = DatasetGeneration.status == JobStatus.PENDING
    assert update_where(db, DatasetGeneration, [pending_only], progress=5) == 2
    assert [job.progress for job in jobs_made] == [0, 5, 5]  # the session's copies follow
    assert update_where(db, DatasetGeneration, [pending_only, DatasetGeneration.progress < 5],
                        progress=9) == 0  # fmt: skip
    db.commit()
    with Session(engine) as fresh:
        stored = fresh.scalars(select(DatasetGeneration.progress).order_by(DatasetGeneration.id))
        assert list(stored) == [0, 5, 5]


def test_update_where_refuses_to_change_every_row(db):
    with pytest.raises(ValueError, match="at least one condition"):
        update_where(db, DatasetGeneration, [], progress=1)


def test_messages_name_the_kind_and_the_row(db, dataset):
    names = {kind: describe(make(db, kind, dataset)) for kind in KINDS}
    assert names == {
        "experiment": "experiment 'resnet-1'",
        "hpo": "HPO campaign 'sweep'",
        "nas": "NAS campaign 'search'",
        "generation": "dataset generation 'nightly'",
        "import": "dataset import 'upload'",
    }


# --- races ---------------------------------------------------------------------------------


def try_to_start(rows: dict[str, int], engine: Engine, _index: int, ready) -> dict[str, str]:
    """Load one pending row of each kind, commit (holding nothing), wait for the
    other workers, then start each: "started" or "refused", by kind."""
    outcomes = {}
    with Session(engine, expire_on_commit=False) as own:
        loaded = {kind: own.get(MODELS[kind], row_id) for kind, row_id in rows.items()}
        own.commit()
        ready()
        for kind, row in loaded.items():
            try:
                start(own, row)
                own.commit()
                outcomes[kind] = "started"
            except InvalidTransition:
                own.rollback()
                outcomes[kind] = "refused"
    return outcomes


def test_of_workers_starting_one_pending_row_exactly_one_succeeds(
    db, engine, db_url, dialect, dataset
):
    rows = {kind: make(db, kind, dataset).id for kind in KINDS}
    count = WORKERS[dialect]
    outcomes = race(dialect, engine, db_url, count, partial(try_to_start, rows))
    for kind, row_id in rows.items():
        seen = sorted(outcome[kind] for outcome in outcomes)
        assert seen == ["refused"] * (count - 1) + ["started"], kind
        assert stored_status(engine, kind, row_id) == "running"


ENDINGS = {"pause": S.PAUSED, "complete": S.COMPLETED, "fail": S.FAILED, "cancel": S.CANCELLED}


def try_to_end(experiment_id: int, engine: Engine, index: int, ready) -> tuple[str, str]:
    """Move a running experiment on, each worker to its own next status."""
    target = list(ENDINGS.values())[index % len(ENDINGS)]
    with Session(engine, expire_on_commit=False) as own:
        experiment = own.get(Experiment, experiment_id)
        own.commit()
        ready()
        try:
            experiments.transition(own, experiment, target)
            own.commit()
        except InvalidTransition:
            return target.value, "refused"
        return target.value, "moved"


def test_of_workers_moving_one_running_experiment_on_only_one_moves_it(
    db, engine, db_url, dialect, dataset
):
    experiment = make(db, "experiment", dataset)
    experiments.start(db, experiment)
    db.commit()
    count = WORKERS[dialect]
    outcomes = race(dialect, engine, db_url, count, partial(try_to_end, experiment.id))
    moved = [target for target, outcome in outcomes if outcome == "moved"]
    assert len(moved) == 1, outcomes  # the others found it no longer running
    assert stored_status(engine, "experiment", experiment.id) == moved[0]


def report_progress(
    job_id: int, log_path: str, engine: Engine, index: int, ready
) -> tuple[list[int], list[int]]:
    """Report random progress values, each in its own transaction; an accepted
    value is logged while the job's row is still locked by its UPDATE, so the
    log is in the order the values were stored. Returns (accepted, refused)."""
    rng = random.Random(index)
    values = [rng.randint(0, 100) for _ in range(15)]
    accepted, refused = [], []
    with Session(engine, expire_on_commit=False) as own:
        job = own.get(DatasetGeneration, job_id)
        own.commit()
        ready()
        for value in values:
            try:
                jobs.update_progress(own, job, value)
            except InvalidInput as exc:
                assert "backwards" in str(exc), exc
                own.rollback()
                refused.append(value)
                continue
            with open(log_path, "a") as log:
                log.write(f"{value}\n")
            own.commit()
            accepted.append(value)
    return accepted, refused


def test_racing_progress_reports_end_at_the_highest_and_never_go_back(
    db, engine, db_url, dialect, dataset, tmp_path
):
    job = make(db, "generation", dataset)
    jobs.start(db, job)
    db.commit()
    log_path = tmp_path / "accepted.log"
    count = WORKERS[dialect]
    outcomes = race(dialect, engine, db_url, count, partial(report_progress, job.id, str(log_path)))
    in_commit_order = [int(line) for line in log_path.read_text().split()]
    attempted = [v for accepted, refused in outcomes for v in accepted + refused]
    assert len(attempted) == 15 * count
    assert in_commit_order == sorted(in_commit_order)  # never moved backwards
    assert sorted(in_commit_order) == sorted(v for accepted, _ in outcomes for v in accepted)
    db.expire_all()
    assert job.progress == max(attempted) == in_commit_order[-1]
    assert all(v < job.progress for _, refused in outcomes for v in refused)


def try_to_claim(job_id: int, engine: Engine, index: int, ready) -> int:
    """Claim a pending job by a guarded change of its progress: how many rows it changed."""
    with Session(engine) as own:
        ready()
        claimed = update_where(
            own,
            DatasetGeneration,
            [DatasetGeneration.id == job_id, DatasetGeneration.progress == 0],
            progress=index + 1,
        )
        own.commit()
        return claimed


def test_of_workers_making_one_guarded_change_with_update_where_exactly_one_counts_it(
    db, engine, db_url, dialect
):
    job = jobs.create_generation(db, "nightly", {"n": 1})
    db.commit()
    count = WORKERS[dialect]
    outcomes = race(dialect, engine, db_url, count, partial(try_to_claim, job.id))
    assert sorted(outcomes) == [0] * (count - 1) + [1]
    db.refresh(job)
    assert job.progress == outcomes.index(1) + 1  # the one that counted it changed it
