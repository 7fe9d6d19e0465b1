"""Experiments: create, the status machine, training curves, finish, delete; both dialects."""

from __future__ import annotations

import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import product

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from pfd_db.models import (
    Dataset,
    Experiment,
    ExperimentStatus,
    ExperimentTag,
    Explanation,
    HPOCampaign,
    HPOMethod,
    Tag,
    TrainingRun,
)
from pfd_db.store.ml import curves, experiments, tags
from pfd_db.store.ml.curves import COLUMNS, EPOCH_BATCH
from pfd_db.store.ml.experiments import ALLOWED
from probes import executions

S = ExperimentStatus
LEGAL = sorted((old, new) for old, targets in ALLOWED.items() for new in targets)
ILLEGAL = sorted(set(product(S, S)) - set(LEGAL))
# A legal way into each status from pending.
PATH_TO = {
    S.PENDING: [],
    S.RUNNING: [S.RUNNING],
    S.PAUSED: [S.RUNNING, S.PAUSED],
    S.COMPLETED: [S.RUNNING, S.COMPLETED],
    S.FAILED: [S.RUNNING, S.FAILED],
    S.CANCELLED: [S.CANCELLED],
}


@pytest.fixture
def dataset(db) -> Dataset:
    made = Dataset(
        name="cwru",
        num_signals=0,
        fault_types=["normal"],
        severity_levels=["mild"],
        file_path="data/cwru.h5",
    )
    db.add(made)
    db.commit()
    return made


@pytest.fixture
def experiment(db, dataset) -> Experiment:
    """A committed, pending experiment."""
    made = experiments.create_experiment(db, "resnet-1", "resnet18", dataset, {"lr": 0.001})
    db.commit()
    return made


def create(db, dataset, **overrides):
    arguments = {"name": "cnn-1", "model_type": "cnn1d", "dataset": dataset, "config": {}}
    arguments.update(overrides)
    return experiments.create_experiment(db, **arguments)


def count(db, model) -> int:
    """Rows of ``model`` this session sees (its own uncommitted writes included)."""
    return db.scalar(select(func.count()).select_from(model))


def stored_status(db, experiment) -> ExperimentStatus:
    return db.scalar(select(Experiment.status).where(Experiment.id == experiment.id))


def move_to(db, experiment, status: ExperimentStatus) -> None:
    for step in PATH_TO[status]:
        experiments.transition(db, experiment, step)
    db.commit()


def epoch_rows(epochs, bump: float = 0.0) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 1 / (e + 1) + bump,
            "val_loss": 1.2 / (e + 1) + bump,
            "train_accuracy": min(0.99, 0.5 + e / 200),
            "val_accuracy": min(0.98, 0.45 + e / 210),
            "learning_rate": 1e-3,
            "duration_seconds": 12.5,
        }
        for e in epochs
    ]


def stored_runs(db, experiment) -> list[tuple]:
    """(epoch, train_loss, val_accuracy) of each stored run, by epoch."""
    table = TrainingRun.__table__
    return db.execute(
        select(table.c.epoch, table.c.train_loss, table.c.val_accuracy)
        .where(table.c.experiment_id == experiment.id)
        .order_by(table.c.epoch)
    ).all()


def rows_in(parameters) -> int:
    """How many training runs one statement's parameters carry: one array per
    column (PostgreSQL), or one tuple per row for the driver's executemany (SQLite)."""
    if isinstance(parameters, dict):
        return len(parameters["epoch"])
    assert all(isinstance(row, tuple) and len(row) == len(COLUMNS) for row in parameters)
    return len(parameters)


# --- create ----------------------------------------------------------------------------


def test_create_stores_every_field_and_starts_pending(db, dataset):
    campaign = HPOCampaign(
        name="sweep",
        method=HPOMethod.RANDOM_SEARCH,
        base_model_type="cnn1d",
        dataset_id=dataset.id,
        search_space={},
        budget={},
        trials_total=5,
    )
    db.add(campaign)
    made = create(
        db,
        dataset,
        name="  cnn-7  ",
        config={"layers": 4},
        hyperparameters={"lr": 0.01},
        notes="first try",
        hpo_campaign=campaign,
    )
    db.commit()
    db.expire_all()
    stored = db.get(Experiment, made.id)
    assert (stored.name, stored.model_type, stored.dataset_id, stored.status) == (
        "cnn-7",
        "cnn1d",
        dataset.id,
        S.PENDING,
    )
    assert (stored.config, stored.hyperparameters, stored.notes) == (
        {"layers": 4},
        {"lr": 0.01},
        "first try",
    )
    assert (stored.hpo_campaign_id, stored.metrics, stored.best_epoch) == (campaign.id, None, None)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"model_type": " "}, "model_type"),
        ({"model_type": "m" * 51}, "model_type"),
        ({"config": None}, "config"),
        ({"config": ["layers", 4]}, "config"),
        ({"config": "{}"}, "config"),
        ({"config": {1: "a"}}, "config"),
        ({"hyperparameters": [0.1]}, "hyperparameters"),
        ({"notes": 42}, "notes"),
    ],
)
def test_create_refuses_bad_input_naming_the_field_and_writes_nothing(
    db, dataset, overrides, field
):
    with pytest.raises(InvalidInput, match=field):
        create(db, dataset, **overrides)
    assert count(db, Experiment) == 0


def test_a_taken_name_is_a_conflict_and_the_session_stays_usable(db, dataset, experiment):
    with pytest.raises(Conflict, match="resnet-1"):
        create(db, dataset, name="resnet-1")
    assert count(db, Experiment) == 1
    create(db, dataset, name="resnet-2")
    db.commit()
    assert count(db, Experiment) == 2


def test_get_experiment_finds_it_by_name(db, experiment):
    assert experiments.get_experiment(db, "resnet-1") is experiment


def test_get_experiment_names_the_missing_one(db):
    with pytest.raises(NotFound, match="'ghost'"):
        experiments.get_experiment(db, "ghost")


# --- status ---------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), LEGAL, ids=[f"{o}-{n}" for o, n in LEGAL])
def test_every_legal_transition_is_stored(db, experiment, old, new):
    move_to(db, experiment, old)
    before = experiment.updated_at
    assert experiments.transition(db, experiment, new) is experiment
    db.commit()
    assert experiment.status == new == stored_status(db, experiment)
    assert experiment.updated_at >= before


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=[f"{o}-{n}" for o, n in ILLEGAL])
def test_every_illegal_transition_is_refused_and_changes_nothing(db, experiment, old, new):
    move_to(db, experiment, old)
    with pytest.raises(InvalidTransition, match=f"from {old} to {new}"):
        experiments.transition(db, experiment, new)
    assert experiment.status == old == stored_status(db, experiment)


def test_the_table_of_transitions_is_the_documented_one():
    assert len(LEGAL) == 7 and len(ILLEGAL) == 29
    assert (S.PAUSED, S.COMPLETED) in ILLEGAL  # paused must resume before it can finish


def test_a_status_given_as_text_is_accepted(db, experiment):
    experiments.transition(db, experiment, "running")
    assert stored_status(db, experiment) == S.RUNNING


def test_an_unknown_status_names_the_field(db, experiment):
    with pytest.raises(InvalidInput, match="status must be one of"):
        experiments.transition(db, experiment, "done")


def test_the_named_steps_follow_the_machine(db, experiment):
    experiments.start(db, experiment)
    experiments.pause(db, experiment)
    experiments.resume(db, experiment)
    experiments.fail(db, experiment)
    assert stored_status(db, experiment) == S.FAILED
    with pytest.raises(InvalidTransition):
        experiments.cancel(db, experiment)


def test_cancel_of_a_pending_experiment(db, experiment):
    experiments.cancel(db, experiment)
    assert stored_status(db, experiment) == S.CANCELLED


def test_a_change_made_meanwhile_by_another_session_wins(db, engine, experiment):
    with Session(bind=engine, expire_on_commit=False) as other:
        experiments.start(other, other.get(Experiment, experiment.id))
        other.commit()
    # this session still holds "pending": the conditional update finds no such row
    with pytest.raises(InvalidTransition, match="running now, not pending"):
        experiments.start(db, experiment)
    assert experiment.status == S.RUNNING  # re-read
    db.rollback()
    experiments.pause(db, experiment)  # and from the true status, it moves on
    db.commit()
    assert stored_status(db, experiment) == S.PAUSED


def test_of_many_workers_starting_one_experiment_exactly_one_succeeds(engine, experiment):
    workers = 8
    ready = threading.Barrier(workers)

    def try_to_start(_: int) -> str:
        with Session(bind=engine, expire_on_commit=False) as own:
            mine = own.get(Experiment, experiment.id)
            own.commit()  # hold no lock while waiting for the others
            ready.wait(timeout=30)
            try:
                experiments.start(own, mine)
                own.commit()
            except InvalidTransition:
                return "refused"
            return "started"

    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(try_to_start, range(workers)))
    assert sorted(outcomes) == ["refused"] * (workers - 1) + ["started"]


def test_a_transition_of_a_deleted_experiment_is_not_found(db, engine, experiment):
    with Session(bind=engine) as other:
        experiments.delete_experiment(other, other.get(Experiment, experiment.id))
        other.commit()
    with pytest.raises(NotFound, match="resnet-1"):
        experiments.start(db, experiment)


# --- one epoch ----------------------------------------------------------------------------


def test_log_epoch_stores_the_epoch(db, experiment):
    returned = curves.log_epoch(
        db,
        experiment,
        0,
        0.9,
        1.0,
        0.6,
        0.55,
        learning_rate=0.01,
        duration_seconds=30.0,
        checkpoint_path="ckpt/0.pt",
    )
    db.commit()
    assert returned is None  # nothing is read back
    [run] = curves.curve(db, experiment)
    assert (run.experiment_id, run.epoch, run.train_loss, run.val_loss) == (
        experiment.id,
        0,
        0.9,
        1.0,
    )
    assert (run.train_accuracy, run.val_accuracy, run.learning_rate) == (0.6, 0.55, 0.01)
    assert (run.duration_seconds, run.checkpoint_path, run.metrics) == (30.0, "ckpt/0.pt", None)
    assert run.created_at.tzinfo is not None
    assert [r.epoch for r in experiment.training_runs] == [0]


def test_log_epoch_again_replaces_the_epoch(db, experiment):
    curves.log_epoch(db, experiment, 3, 0.9, 1.0, 0.6, 0.55, checkpoint_path="a")
    db.commit()
    [first] = curves.curve(db, experiment)
    created = first.created_at
    curves.log_epoch(db, experiment, 3, 0.5, 0.6, 0.8, 0.75)
    db.commit()
    [again] = curves.curve(db, experiment)
    assert again is first  # the same row, refreshed
    assert (again.train_loss, again.val_accuracy, again.checkpoint_path) == (0.5, 0.75, None)
    assert again.created_at == created and again.updated_at >= created
    assert stored_runs(db, experiment) == [(3, 0.5, 0.75)]


def test_log_epoch_of_an_experiment_given_by_id_reads_it_once(db, engine, experiment):
    with executions(engine) as sent:
        curves.log_epoch(db, experiment.id, 0, 0.9, 1.0, 0.6, 0.55)
        curves.log_epoch(db, experiment.id, 1, 0.8, 0.9, 0.7, 0.6)
    assert [sql.split()[0] for sql, _ in sent].count("SELECT") == 0  # held by the session
    assert [epoch for epoch, _, _ in stored_runs(db, experiment)] == [0, 1]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ((-1, 0.9, 1.0, 0.6, 0.5), "epoch"),
        ((1.5, 0.9, 1.0, 0.6, 0.5), "epoch"),
        ((True, 0.9, 1.0, 0.6, 0.5), "epoch"),
        ((0, math.nan, 1.0, 0.6, 0.5), "train_loss"),
        ((0, 0.9, "1.0", 0.6, 0.5), "val_loss"),
        ((0, 0.9, 1.0, None, 0.5), "train_accuracy"),
        ((0, 0.9, 1.0, 0.6, math.inf), "val_accuracy"),
    ],
)
def test_log_epoch_refuses_bad_values_naming_the_field(db, experiment, arguments, field):
    with pytest.raises(InvalidInput, match=field):
        curves.log_epoch(db, experiment, *arguments)
    assert count(db, TrainingRun) == 0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"duration_seconds": "long"}, "duration_seconds"),
        ({"checkpoint_path": "p" * 501}, "checkpoint_path"),
    ],
)
def test_log_epoch_refuses_bad_options_naming_the_field(db, experiment, options, field):
    with pytest.raises(InvalidInput, match=field):
        curves.log_epoch(db, experiment, 0, 0.9, 1.0, 0.6, 0.5, **options)
    assert count(db, TrainingRun) == 0


# --- many epochs --------------------------------------------------------------------------


def test_log_epochs_inserts_then_replaces_what_is_logged_again(db, experiment):
    assert curves.log_epochs(db, experiment, epoch_rows(range(100))) == 100
    db.commit()
    assert curves.log_epochs(db, experiment, epoch_rows(range(25, 75), bump=10.0)) == 50
    db.commit()
    stored = stored_runs(db, experiment)
    assert [epoch for epoch, _, _ in stored] == list(range(100))
    replaced = [epoch for epoch, loss, _ in stored if loss > 10]
    assert replaced == list(range(25, 75))
    assert stored[30][1] == pytest.approx(1 / 31 + 10.0)
    assert stored[80][1] == pytest.approx(1 / 81)


def test_log_epochs_keeps_created_at_and_moves_updated_at(db, experiment):
    curves.log_epochs(db, experiment, epoch_rows(range(3)))
    db.commit()
    first = {
        run.epoch: (run.created_at, run.updated_at) for run in curves.curve(db, experiment)
    }
    curves.log_epochs(db, experiment, epoch_rows([1], bump=1.0))
    db.commit()
    after = {
        run.epoch: (run.created_at, run.updated_at) for run in curves.curve(db, experiment)
    }
    assert first[0] == after[0] and first[2] == after[2]
    assert after[1][0] == first[1][0]
    assert after[1][1] > first[1][1]
    assert all(created.tzinfo is not None for created, _ in after.values())


def test_log_epochs_writes_one_statement_per_batch(db, engine, experiment):
    rows = epoch_rows(range(2 * EPOCH_BATCH + 10))
    with executions(engine) as sent:
        assert curves.log_epochs(db, experiment, rows) == len(rows)
    inserts = [(sql, params) for sql, params in sent if sql.startswith("INSERT INTO training_runs")]
    assert all("ON CONFLICT (experiment_id, epoch) DO UPDATE" in sql for sql, _ in inserts)
    assert [rows_in(params) for _, params in inserts] == [EPOCH_BATCH, EPOCH_BATCH, 10]
    assert count(db, TrainingRun) == len(rows)


def test_log_epochs_of_two_experiments_keep_apart(db, dataset, experiment):
    other = create(db, dataset)
    curves.log_epochs(db, experiment, epoch_rows(range(5)))
    curves.log_epochs(db, other, epoch_rows(range(5), bump=1.0))
    assert len(stored_runs(db, experiment)) == len(stored_runs(db, other)) == 5
    assert all(loss > 1 for _, loss, _ in stored_runs(db, other))


def test_log_epochs_refuses_an_epoch_given_twice_and_writes_nothing(db, experiment):
    rows = epoch_rows([0, 1, 2, 3, 1])
    with pytest.raises(InvalidInput, match="row 4: epoch 1 repeats row 1"):
        curves.log_epochs(db, experiment, rows)
    assert count(db, TrainingRun) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"epoch": -1}, "epoch"),
        ({"epoch": "7"}, "epoch"),
        ({"epoch": None}, "epoch"),
        ({"train_loss": math.nan}, "train_loss"),
        ({"val_loss": -math.inf}, "val_loss"),
        ({"train_accuracy": None}, "train_accuracy"),
        ({"val_accuracy": "0.9"}, "val_accuracy"),
        ({"learning_rate": math.inf}, "learning_rate"),
        ({"checkpoint_path": 7}, "checkpoint_path"),
        ({"val_acc": 0.9}, "val_acc"),
    ],
)
def test_a_bad_epoch_row_is_named_by_index_and_field_and_nothing_is_written(
    db, experiment, change, field
):
    rows = epoch_rows(range(100))
    rows[77] = {**rows[77], **change}
    with pytest.raises(InvalidInput, match=rf"row 77: .*{field}"):
        curves.log_epochs(db, experiment, rows)
    assert count(db, TrainingRun) == 0


def test_a_missing_metric_is_named(db, experiment):
    row = epoch_rows([0])[0]
    del row["val_loss"]
    with pytest.raises(InvalidInput, match="row 0: val_loss"):
        curves.log_epochs(db, experiment, [row])


def test_no_rows_log_nothing(db, experiment):
    assert curves.log_epochs(db, experiment, []) == 0
    assert count(db, TrainingRun) == 0


def test_the_relationship_sees_epochs_logged_in_bulk(db, experiment):
    assert experiment.training_runs == []
    curves.log_epochs(db, experiment, epoch_rows(range(4)))
    assert [run.epoch for run in experiment.training_runs] == [0, 1, 2, 3]


# --- curve ------------------------------------------------------------------------------


def test_curve_is_ordered_by_epoch_whatever_the_logging_order(db, experiment):
    epochs = list(range(60))
    random.Random(5).shuffle(epochs)
    curves.log_epochs(db, experiment, epoch_rows(epochs))
    assert [run.epoch for run in curves.curve(db, experiment)] == list(range(60))


def test_curve_shows_values_replaced_since_it_was_last_read(db, experiment):
    curves.log_epochs(db, experiment, epoch_rows(range(3)))
    assert curves.curve(db, experiment)[1].train_loss == pytest.approx(0.5)
    curves.log_epochs(db, experiment, epoch_rows([1], bump=2.0))
    assert curves.curve(db, experiment)[1].train_loss == pytest.approx(2.5)


def test_curve_of_an_experiment_without_epochs_is_empty(db, experiment):
    assert curves.curve(db, experiment) == []


def test_curve_is_one_query(db, engine, experiment):
    curves.log_epochs(db, experiment, epoch_rows(range(10)))
    db.commit()
    with executions(engine) as sent:
        curves.curve(db, experiment)
    assert len([sql for sql, _ in sent if sql.startswith("SELECT")]) == 1


# --- finish -------------------------------------------------------------------------------


def accuracies(values: list[float]) -> list[dict]:
    rows = epoch_rows(range(len(values)))
    for row, value in zip(rows, values, strict=True):
        row["val_accuracy"] = value
    return rows


def test_finish_records_best_epoch_total_epochs_metrics_and_duration(db, experiment):
    experiment.metrics = {"test_accuracy": 0.8, "note": "kept"}
    db.commit()
    experiments.start(db, experiment)
    curves.log_epochs(db, experiment, accuracies([0.5, 0.7, 0.9, 0.85, 0.9, 0.6]))
    experiments.finish(db, experiment, {"test_accuracy": 0.88}, duration_seconds=420.0)
    db.commit()
    db.expire_all()
    stored = db.get(Experiment, experiment.id)
    assert stored.status == S.COMPLETED
    assert (stored.best_epoch, stored.total_epochs, stored.duration_seconds) == (2, 6, 420.0)
    assert stored.metrics == {"test_accuracy": 0.88, "note": "kept"}


def test_finish_can_end_in_failure(db, experiment):
    experiments.start(db, experiment)
    curves.log_epochs(db, experiment, accuracies([0.3, 0.2]))
    experiments.finish(db, experiment, status=S.FAILED)
    assert (experiment.status, experiment.best_epoch, experiment.total_epochs) == (S.FAILED, 0, 2)
    assert stored_status(db, experiment) == S.FAILED


def test_finish_without_epochs_records_none_and_zero(db, experiment):
    experiments.start(db, experiment)
    experiments.finish(db, experiment)
    assert (experiment.best_epoch, experiment.total_epochs, experiment.metrics) == (None, 0, {})
    assert experiment.duration_seconds is None


def test_finish_must_be_a_legal_transition(db, experiment):
    with pytest.raises(InvalidTransition, match="from pending to completed"):
        experiments.finish(db, experiment, {"acc": 1.0})
    db.expire_all()
    assert (experiment.status, experiment.metrics, experiment.total_epochs) == (
        S.PENDING,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"status": S.PAUSED}, "status"),
        ({"status": "finished"}, "status"),
        ({"metrics": [0.9]}, "metrics"),
        ({"duration_seconds": -1.0}, "duration_seconds"),
        ({"duration_seconds": math.nan}, "duration_seconds"),
    ],
)
def test_finish_refuses_bad_input_naming_the_field(db, experiment, options, field):
    experiments.start(db, experiment)
    db.commit()
    with pytest.raises(InvalidInput, match=field):
        experiments.finish(db, experiment, **options)
    assert stored_status(db, experiment) == S.RUNNING


# --- delete -------------------------------------------------------------------------------


def test_delete_cascades_to_runs_explanations_and_tag_links(db, dataset, experiment):
    keeper = create(db, dataset, name="keeper")
    curves.log_epochs(db, experiment, epoch_rows(range(20)))
    curves.log_epochs(db, keeper, epoch_rows(range(3)))
    db.add(
        Explanation(experiment_id=experiment.id, signal_id="s1", method="shap", explanation_data={})
    )
    tag = tags.get_or_create_tag(db, "baseline")
    tags.tag_experiment(db, experiment, tag)
    tags.tag_experiment(db, keeper, tag)
    db.commit()
    experiment.training_runs  # loaded runs must not be deleted one by one (nor twice)  # noqa: B018
    experiment.experiment_tags  # noqa: B018

    experiments.delete_experiment(db, experiment)
    db.commit()

    assert count(db, Experiment) == 1
    assert count(db, TrainingRun) == 3  # the keeper's
    assert count(db, Explanation) == 0
    assert count(db, ExperimentTag) == 1
    assert db.scalar(select(Tag.usage_count).where(Tag.id == tag.id)) == 1
    assert tag.usage_count == 1


def test_delete_of_an_experiment_deleted_meanwhile_is_not_found(db, engine, experiment):
    with Session(bind=engine) as other:
        other.delete(other.get(Experiment, experiment.id))
        other.commit()
    with pytest.raises(NotFound, match="resnet-1"):
        experiments.delete_experiment(db, experiment)
