"""Training curves with any metric: extra per-epoch metrics through log_epoch and
log_epochs, replaced when an epoch is logged again, and curves read back as
plot-ready columns by curve_columns; both dialects."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import func, select

from factories import epoch
from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Dataset, Experiment, TrainingRun
from pfd_db.store.ml import curves, experiments
from pfd_db.store.ml.curves import CURVE_FIXED, METRIC_NAME_MAX
from probes import executions

FIXED = ["epoch", *CURVE_FIXED]


@pytest.fixture
def experiment(db) -> Experiment:
    dataset = Dataset(
        name="cwru", num_signals=0, fault_types=["normal"], severity_levels=["mild"], file_path="d"
    )
    db.add(dataset)
    db.commit()
    made = experiments.create_experiment(db, "resnet-1", "resnet18", dataset, {"lr": 0.001})
    db.commit()
    return made


def stored_metrics(db, experiment) -> list:
    """Each stored epoch's extra metrics, by epoch, as the database holds them."""
    return [run.metrics for run in curves.curve(db, experiment)]


def null_documents(db) -> int:
    """Rows whose extra metrics are SQL NULL (not a JSON null)."""
    return db.scalar(
        select(func.count()).select_from(TrainingRun).where(TrainingRun.metrics.is_(None))
    )


def row_count(db) -> int:
    return db.scalar(select(func.count()).select_from(TrainingRun))


# --- extra metrics ---------------------------------------------------------------------


def test_log_epoch_stores_any_metric(db, experiment):
    curves.log_epoch(
        db, experiment, 0, 0.9, 1.0, 0.6, 0.55, metrics={"f1": 0.81, "precision": 0.79}
    )
    db.commit()
    assert stored_metrics(db, experiment) == [{"f1": 0.81, "precision": 0.79}]


def test_log_epochs_stores_each_rows_metrics_and_none_for_rows_without(db, experiment):
    rows = [epoch(0, metrics={"f1": 0.5}), epoch(1), epoch(2, metrics={"f1": 0.7, "auc": 0.9})]
    assert curves.log_epochs(db, experiment, rows) == 3
    db.commit()
    assert stored_metrics(db, experiment) == [{"f1": 0.5}, None, {"f1": 0.7, "auc": 0.9}]
    assert null_documents(db) == 1  # no metrics: SQL NULL, like the rows logged before 0005


def test_an_empty_mapping_of_metrics_stores_none(db, experiment):
    curves.log_epoch(db, experiment, 0, 0.9, 1.0, 0.6, 0.55, metrics={})
    assert stored_metrics(db, experiment) == [None]
    assert null_documents(db) == 1


def test_whole_numbers_are_stored_as_floats_and_values_come_back_exactly(db, experiment):
    tiny, huge = 5e-324, 1.7976931348623157e308
    metrics = {"count_like": 3, "tiny": tiny, "huge": huge, "negative": -0.1, "third": 1 / 3}
    curves.log_epochs(db, experiment, [epoch(0, metrics=metrics)])
    db.commit()
    [stored] = stored_metrics(db, experiment)
    assert stored == {
        "count_like": 3.0,
        "tiny": tiny,
        "huge": huge,
        "negative": -0.1,
        "third": 1 / 3,
    }
    assert isinstance(stored["count_like"], float)


def test_logging_an_epoch_again_replaces_its_metrics(db, experiment):
    curves.log_epoch(db, experiment, 4, 0.9, 1.0, 0.6, 0.55, metrics={"f1": 0.5, "auc": 0.6})
    db.commit()
    curves.log_epoch(db, experiment, 4, 0.8, 0.9, 0.7, 0.6, metrics={"f1": 0.55})
    db.commit()
    assert stored_metrics(db, experiment) == [{"f1": 0.55}]  # replaced, not merged
    curves.log_epochs(db, experiment, [epoch(4)])
    db.commit()
    assert stored_metrics(db, experiment) == [None]
    assert row_count(db) == 1


@pytest.mark.parametrize(
    "name", ["f1", "top-5.accuracy", "val_f1_macro", "A.B-C_9", "x" * METRIC_NAME_MAX]
)
def test_metric_names_of_letters_digits_and_separators_are_accepted(db, experiment, name):
    curves.log_epoch(db, experiment, 0, 0.9, 1.0, 0.6, 0.55, metrics={name: 0.5})
    assert stored_metrics(db, experiment) == [{name: 0.5}]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"": 0.5}, "metrics has the name ''"),
        ({"f 1": 0.5}, "metrics has the name 'f 1'"),
        ({"f1/macro": 0.5}, "metrics has the name 'f1/macro'"),
        ({"précision": 0.5}, "metrics has the name 'précision'"),
        ({"x" * (METRIC_NAME_MAX + 1): 0.5}, "1 to 100"),
        ({"a\x00": 0.5}, "metrics has the name"),
        ({7: 0.5}, "metrics has the name 7"),
        ({"val_loss": 0.5}, "'val_loss', a column of its own"),
        ({"epoch": 3}, "'epoch', a column of its own"),
        ({"f1": math.nan}, r"metrics\['f1'\] must be a finite number"),
        ({"f1": math.inf}, r"metrics\['f1'\] must be a finite number"),
        ({"f1": "0.8"}, r"metrics\['f1'\] must be a finite number"),
        ({"f1": None}, r"metrics\['f1'\] must be a finite number"),
        ({"f1": True}, r"metrics\['f1'\] must be a finite number"),
        ({"f1": 10**400}, r"metrics\['f1'\] must be a finite number"),
        ({"f1": {"macro": 0.5}}, r"metrics\['f1'\] must be a finite number"),
        ([("f1", 0.5)], "metrics must be a mapping"),
        ("f1=0.5", "metrics must be a mapping"),
    ],
)
def test_bad_metrics_are_refused_naming_them_and_nothing_is_written(
    db, experiment, metrics, message
):
    with pytest.raises(InvalidInput, match=message):
        curves.log_epoch(db, experiment, 0, 0.9, 1.0, 0.6, 0.55, metrics=metrics)
    rows = [epoch(n) for n in range(10)]
    rows[6]["metrics"] = metrics
    with pytest.raises(InvalidInput, match=f"row 6: .*{message}"):
        curves.log_epochs(db, experiment, rows)
    assert row_count(db) == 0


def test_a_bad_row_after_good_ones_keeps_the_earlier_epochs_unchanged(db, experiment):
    curves.log_epochs(db, experiment, [epoch(0, metrics={"f1": 0.1})])
    db.commit()
    rows = [epoch(0, metrics={"f1": 0.9}), epoch(1, metrics={"f1": math.nan})]
    with pytest.raises(InvalidInput, match="row 1"):
        curves.log_epochs(db, experiment, rows)
    assert stored_metrics(db, experiment) == [{"f1": 0.1}]


# --- the per-epoch path ----------------------------------------------------------------


def test_log_epoch_sends_one_insert_and_reads_nothing_back(db, engine, experiment):
    curves.log_epoch(db, experiment, 0, 0.9, 1.0, 0.6, 0.55)  # warm: prepared once
    with executions(engine) as sent:
        curves.log_epoch(db, experiment, 1, 0.8, 0.9, 0.7, 0.6, metrics={"f1": 0.6})
    assert len(sent) == 1
    [(sql, _)] = sent
    assert sql.startswith("INSERT INTO training_runs")
    assert "ON CONFLICT (experiment_id, epoch) DO UPDATE" in sql
    assert "RETURNING" not in sql


def test_log_epoch_after_a_commit_with_expiring_sessions_still_reads_nothing(
    engine, db, experiment
):
    from sqlalchemy.orm import Session

    with Session(engine) as session:  # expire_on_commit=True: the experiment is expired
        held = session.get(Experiment, experiment.id)
        curves.log_epoch(session, held, 0, 0.9, 1.0, 0.6, 0.55)
        session.commit()
        with executions(engine) as sent:
            curves.log_epoch(session, held, 1, 0.8, 0.9, 0.7, 0.6)
            session.commit()
        assert [sql.split()[0] for sql, _ in sent] == ["INSERT"]
    assert [run.epoch for run in curves.curve(db, experiment)] == [0, 1]


def test_log_epoch_sees_an_experiment_created_in_the_same_session(db, experiment):
    fresh = Experiment(
        name="unflushed", model_type="cnn", dataset_id=experiment.dataset_id, config={}
    )
    db.add(fresh)
    curves.log_epoch(db, fresh, 0, 0.9, 1.0, 0.6, 0.55, metrics={"f1": 0.5})
    db.commit()
    assert stored_metrics(db, fresh) == [{"f1": 0.5}]


def test_log_epoch_of_a_missing_experiment_is_not_found(db, experiment):
    with pytest.raises(NotFound):
        curves.log_epoch(db, experiment.id + 1000, 0, 0.9, 1.0, 0.6, 0.55)
    assert row_count(db) == 0


# --- curve_columns ---------------------------------------------------------------------


def test_curve_columns_gives_every_column_by_epoch_with_missing_values_as_none(db, experiment):
    rows = [
        epoch(2, metrics={"f1": 0.7}, learning_rate=0.01),
        epoch(0, metrics={"precision": 0.4}),
        epoch(1, duration_seconds=30.0),
    ]
    curves.log_epochs(db, experiment, rows)
    columns = curves.curve_columns(db, experiment)
    assert list(columns) == [*FIXED, "f1", "precision"]
    assert columns["epoch"] == [0, 1, 2]
    assert columns["val_loss"] == [pytest.approx(1.2), pytest.approx(0.6), pytest.approx(0.4)]
    assert columns["learning_rate"] == [None, None, 0.01]
    assert columns["duration_seconds"] == [None, 30.0, None]
    assert columns["f1"] == [None, None, 0.7]
    assert columns["precision"] == [0.4, None, None]


def test_curve_columns_with_chosen_metrics_gives_epoch_and_those_in_order(db, experiment):
    curves.log_epochs(db, experiment, [epoch(n, metrics={"f1": n / 10}) for n in range(3)])
    columns = curves.curve_columns(db, experiment.id, ["f1", "val_loss", "auc", "f1"])
    assert list(columns) == ["epoch", "f1", "val_loss", "auc"]
    assert columns["f1"] == [0.0, 0.1, 0.2]
    assert columns["auc"] == [None, None, None]
    only_fixed = curves.curve_columns(db, experiment, ("epoch", "train_accuracy"))
    assert only_fixed == {"epoch": [0, 1, 2], "train_accuracy": [0.5, 0.51, 0.52]}


def test_curve_columns_reads_the_extra_metrics_only_when_asked_for(db, engine, experiment):
    curves.log_epochs(db, experiment, [epoch(0, metrics={"f1": 0.5})])
    db.commit()
    with executions(engine) as sent:
        curves.curve_columns(db, experiment, ["val_loss"])
        curves.curve_columns(db, experiment, ["f1"])
    assert ["metrics" in sql for sql, _ in sent] == [False, True]


def test_curve_columns_is_one_select_without_objects(db, engine, experiment):
    curves.log_epochs(db, experiment, [epoch(n) for n in range(5)])
    db.commit()
    db.expunge_all()
    with executions(engine) as sent:
        columns = curves.curve_columns(db, experiment.id)
    assert len(sent) == 1 and sent[0][0].startswith("SELECT")
    assert columns["epoch"] == [0, 1, 2, 3, 4]
    assert not any(isinstance(obj, TrainingRun) for obj in db.identity_map.values())


def test_curve_columns_of_an_experiment_without_epochs_is_empty_columns(db, experiment):
    assert curves.curve_columns(db, experiment.id) == {name: [] for name in FIXED}
    assert curves.curve_columns(db, experiment, ["f1"]) == {"epoch": [], "f1": []}


def test_curve_columns_shows_what_was_logged_since_it_was_last_read(db, experiment):
    curves.log_epochs(db, experiment, [epoch(0, metrics={"f1": 0.1})])
    assert curves.curve_columns(db, experiment)["f1"] == [0.1]
    curves.log_epoch(db, experiment, 0, 0.9, 1.0, 0.6, 0.55, metrics={"f1": 0.2})
    curves.log_epoch(db, experiment, 1, 0.9, 1.0, 0.6, 0.55)
    assert curves.curve_columns(db, experiment)["f1"] == [0.2, None]


@pytest.mark.parametrize("missing", [10_000, 2**31, 2**63, 0, -1])
def test_curve_columns_of_a_missing_experiment_is_not_found(db, experiment, missing):
    with pytest.raises(NotFound, match=str(missing)):
        curves.curve_columns(db, missing)


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ("val_loss", "a list of metric names"),
        (5, "a list of metric names"),
        (["f 1"], "metrics has the name 'f 1'"),
        ([None], "metrics has the name None"),
        (["checkpoint_path"], "checkpoint_path is not a metric"),
    ],
)
def test_curve_columns_refuses_bad_metric_names(db, experiment, metrics, message):
    with pytest.raises(InvalidInput, match=message):
        curves.curve_columns(db, experiment, metrics)


def test_curve_columns_keeps_two_experiments_apart(db, experiment):
    other = experiments.create_experiment(
        db, "resnet-2", "resnet18", experiment.dataset_id, {"lr": 0.01}
    )
    curves.log_epochs(db, experiment, [epoch(0, metrics={"f1": 0.1})])
    curves.log_epochs(db, other, [epoch(0, metrics={"auc": 0.2}), epoch(1)])
    assert curves.curve_columns(db, experiment)["epoch"] == [0]
    columns = curves.curve_columns(db, other)
    assert (columns["epoch"], columns["auc"]) == ([0, 1], [0.2, None])
    assert "f1" not in columns
