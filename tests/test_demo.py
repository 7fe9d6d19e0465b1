"""pfd-db demo: realistic, reproducible sample data, on both dialects."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from pfd_db import migrations
from pfd_db.cli import app
from pfd_db.engine import make_engine
from pfd_db.models import (
    Experiment,
    ExperimentStatus,
    HPOCampaign,
    NASTrial,
    SavedSearch,
    Signal,
    Tag,
    TrainingRun,
)
from pfd_db.store.ml import curves, search

runner = CliRunner()


@pytest.fixture
def demo_engine(fresh_url):
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    yield fresh_url, engine
    engine.dispose()


def run_demo(url: str, *args: str):
    return runner.invoke(app, ["demo", *args, "--url", url])


def count(session: Session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_demo_fills_every_domain(demo_engine):
    url, engine = demo_engine
    result = run_demo(url, "--experiments", "12", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "added 12 experiments" in result.output
    with Session(engine) as session:
        assert count(session, Experiment) == 12
        assert count(session, TrainingRun) >= 12 * 20
        assert count(session, Signal) == 11 * 4 * 8
        assert count(session, Tag) == 5
        assert count(session, NASTrial) >= 1
        assert count(session, SavedSearch) == 3
        campaign = session.scalars(select(HPOCampaign)).one()
        trial_accuracies = session.scalars(
            select(Experiment.metrics).where(Experiment.hpo_campaign_id == campaign.id)
        ).all()
        assert campaign.best_accuracy == max(m["val_accuracy"] for m in trial_accuracies)
        statuses = set(session.scalars(select(Experiment.status)))
        assert ExperimentStatus.COMPLETED in statuses


def test_demo_curves_look_like_training(demo_engine):
    url, engine = demo_engine
    run_demo(url, "--experiments", "6", "--seed", "5")
    with Session(engine) as session:
        for experiment in session.scalars(select(Experiment)):
            curve = experiment.training_runs
            assert curve[-1].train_loss < curve[0].train_loss
            assert curve[-1].val_accuracy > curve[0].val_accuracy
            assert experiment.best_epoch is not None
            assert experiment.total_epochs == len(curve)


def test_demo_logs_f1_and_auc_per_epoch_and_experiment_show_charts_them(demo_engine):
    url, engine = demo_engine
    assert run_demo(url, "--experiments", "3", "--seed", "7").exit_code == 0
    with Session(engine) as session:
        experiment = session.scalars(select(Experiment).order_by(Experiment.id)).first()
        columns = curves.curve_columns(session, experiment)
        name, epochs = experiment.name, experiment.total_epochs
    for metric in ("val_f1", "val_auc"):
        assert len(columns[metric]) == epochs and None not in columns[metric]
        assert all(0 <= value <= 1 for value in columns[metric])
    assert columns["val_auc"][-1] > columns["val_auc"][0]
    assert all(f1 < acc for f1, acc in zip(columns["val_f1"], columns["val_accuracy"], strict=True))
    shown = runner.invoke(app, ["experiment", "show", name, "--url", url])
    assert shown.exit_code == 0, shown.output
    charts = shown.output.split("other metrics", 1)
    assert len(charts) == 2 and "val_f1" in charts[1] and "val_auc" in charts[1]


def test_demo_saved_searches_run(demo_engine):
    url, engine = demo_engine
    run_demo(url, "--experiments", "8", "--seed", "9")
    with Session(engine) as session:
        for saved in session.scalars(select(SavedSearch)):
            assert search.search(session, saved.query).total >= 0


def test_the_same_seed_gives_the_same_data(demo_engine, tmp_path):
    url, engine = demo_engine
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    other = make_engine(other_url)
    migrations.upgrade(other)
    for target in (url, other_url):
        assert run_demo(target, "--experiments", "5", "--seed", "11").exit_code == 0

    def curves(eng):
        with Session(eng) as session:
            rows = session.execute(
                select(Experiment.name, TrainingRun.epoch, TrainingRun.val_accuracy)
                .join(TrainingRun)
                .order_by(Experiment.name, TrainingRun.epoch)
            )
            return [tuple(row) for row in rows]

    assert curves(engine) == curves(other)
    other.dispose()


def test_running_the_same_seed_twice_is_refused_and_changes_nothing(demo_engine):
    url, engine = demo_engine
    run_demo(url, "--experiments", "4", "--seed", "2")
    with Session(engine) as session:
        before = count(session, TrainingRun)
    again = run_demo(url, "--experiments", "4", "--seed", "2")
    assert again.exit_code == 2
    assert "use another --seed" in again.stderr
    with Session(engine) as session:
        assert count(session, TrainingRun) == before
    assert run_demo(url, "--experiments", "4", "--seed", "4").exit_code == 0


def test_demo_needs_a_migrated_database(fresh_url):
    result = run_demo(fresh_url)
    assert result.exit_code == 2 and "run pfd-db init" in result.stderr
    assert result.stderr.count("\n") == 1
