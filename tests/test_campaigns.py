"""HPO and NAS campaigns: creation, trials, best-result tracking and status, with
concurrent trials, on both dialects."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from pfd_db.models import (
    Dataset,
    Experiment,
    ExperimentStatus,
    HPOCampaign,
    HPOMethod,
    NASCampaign,
    NASTrial,
    User,
)
from pfd_db.store.ml import campaigns
from probes import run_together

SEARCH_SPACE = {"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "batch_size": [32, 64]}
BUDGET = {"max_hours": 4}
ARCHITECTURE = {"layers": [{"type": "conv1d", "filters": 32}, {"type": "dense", "units": 10}]}


@pytest.fixture
def dataset(db) -> Dataset:
    dataset = Dataset(
        name="cwru", num_signals=10, fault_types=["normal"], severity_levels=["mild"], file_path="x"
    )
    db.add(dataset)
    db.commit()
    return dataset


@pytest.fixture
def hpo(db, dataset) -> HPOCampaign:
    campaign = make_hpo(db, dataset, trials_total=3)
    db.commit()
    return campaign


@pytest.fixture
def nas(db, dataset) -> NASCampaign:
    campaign = campaigns.create_nas_campaign(db, "search", dataset)
    db.commit()
    return campaign


def make_hpo(db, dataset, name: str = "tune-cnn", **options) -> HPOCampaign:
    arguments = {
        "method": HPOMethod.BAYESIAN,
        "base_model_type": "cnn1d",
        "search_space": SEARCH_SPACE,
        "budget": BUDGET,
        "trials_total": 3,
        **options,
    }
    return campaigns.create_hpo_campaign(db, name, dataset=dataset, **arguments)


def make_experiment(db, dataset, name: str, metrics: dict | None = None) -> Experiment:
    experiment = Experiment(
        name=name, model_type="cnn1d", dataset_id=dataset.id, config={}, metrics=metrics
    )
    db.add(experiment)
    db.commit()
    return experiment


def count_rows(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


# --- HPO: creating ----------------------------------------------------------------------


def test_create_hpo_campaign(db, dataset):
    owner = User(username="ada", email="ada@example.com")
    db.add(owner)
    campaign = make_hpo(db, dataset, method="grid_search", trials_total=5, created_by=owner)
    db.commit()
    db.refresh(campaign)
    assert campaign.method is HPOMethod.GRID_SEARCH
    assert campaign.status is ExperimentStatus.PENDING
    assert (campaign.trials_completed, campaign.trials_total) == (0, 5)
    assert (campaign.search_space, campaign.budget) == (SEARCH_SPACE, BUDGET)
    assert (campaign.dataset_id, campaign.created_by) == (dataset.id, owner.id)
    assert campaign.best_experiment_id is None and campaign.best_accuracy is None


def test_create_hpo_campaign_takes_a_dataset_id(db, dataset):
    assert make_hpo(db, dataset.id).dataset_id == dataset.id


def test_create_hpo_campaign_with_an_unknown_dataset_raises_not_found(db):
    with pytest.raises(NotFound, match="dataset"):
        make_hpo(db, 4242)


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("name", " ", "name"),
        ("name", "n" * 256, "name"),
        ("method", "grid", "method"),
        ("base_model_type", "", "base_model_type"),
        ("search_space", ["lr"], "search_space"),
        ("search_space", {"lr": {1e-3, 1e-2}}, "search_space"),
        ("budget", {"hours": float("nan")}, "budget"),
        ("trials_total", 0, "trials_total"),
        ("trials_total", True, "trials_total"),
        ("trials_total", "3", "trials_total"),
        ("dataset", "cwru", "dataset"),
    ],
)
def test_create_hpo_campaign_refuses_bad_input(db, dataset, option, value, field):
    arguments = {"name": "tune", "dataset": dataset, option: value}
    with pytest.raises(InvalidInput, match=field):
        make_hpo(db, **arguments)
    db.rollback()
    assert count_rows(db, HPOCampaign) == 0


def test_a_taken_name_raises_conflict_and_leaves_the_transaction_usable(db, dataset, hpo):
    with pytest.raises(Conflict, match="tune-cnn"):
        make_hpo(db, dataset, name="tune-cnn")
    make_hpo(db, dataset, name="tune-lstm")
    db.commit()
    assert count_rows(db, HPOCampaign) == 2


def test_concurrent_creation_of_one_name_makes_one_campaign(db, engine, dataset):
    def create(_index: int) -> str:
        with Session(engine, expire_on_commit=False) as session:
            try:
                make_hpo(session, dataset.id, name="race")
            except Conflict:
                return "conflict"
            session.commit()
            return "created"

    outcomes, errors = run_together(6, create)
    assert errors == []
    assert sorted(outcomes) == ["conflict"] * 5 + ["created"]


# --- HPO: recording trials --------------------------------------------------------------


def test_record_trial_links_counts_and_tracks_the_best(db, dataset, hpo):
    experiment = make_experiment(db, dataset, "t1")
    returned = campaigns.record_trial(db, hpo, experiment, accuracy=0.8)
    db.commit()
    assert returned is hpo
    assert experiment.hpo_campaign_id == hpo.id
    assert hpo.trials_completed == 1
    assert (hpo.best_experiment_id, hpo.best_accuracy) == (experiment.id, 0.8)
    assert hpo.status is ExperimentStatus.RUNNING


def test_only_a_better_trial_becomes_the_best(db, dataset, hpo):
    first, worse, tie = (make_experiment(db, dataset, n) for n in ("t1", "t2", "t3"))
    campaigns.record_trial(db, hpo, first, accuracy=0.9)
    campaigns.record_trial(db, hpo, worse, accuracy=0.7)
    campaigns.record_trial(db, hpo, tie, accuracy=0.9)
    assert (hpo.best_experiment_id, hpo.best_accuracy) == (first.id, 0.9)
    better_hpo = make_hpo(db, dataset, name="second")
    campaigns.record_trial(db, better_hpo, make_experiment(db, dataset, "u1"), accuracy=0.5)
    best = make_experiment(db, dataset, "u2")
    campaigns.record_trial(db, better_hpo, best, accuracy=0.6)
    assert (better_hpo.best_experiment_id, better_hpo.best_accuracy) == (best.id, 0.6)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"val_accuracy": 0.91, "accuracy": 0.99}, 0.91),
        ({"accuracy": 0.87}, 0.87),
        ({"val_accuracy": None, "accuracy": 0.5}, 0.5),
        ({"val_accuracy": 1}, 1.0),
    ],
)
def test_accuracy_defaults_to_the_experiments_metrics(db, dataset, hpo, metrics, expected):
    campaigns.record_trial(db, hpo, make_experiment(db, dataset, "t1", metrics))
    assert hpo.best_accuracy == expected


@pytest.mark.parametrize(
    ("metrics", "accuracy"),
    [
        (None, None),
        ({"loss": 0.1}, None),
        ({"val_accuracy": "high"}, None),
        ({"val_accuracy": 0.9}, float("nan")),
        ({"val_accuracy": 0.9}, float("inf")),
        ({"val_accuracy": 0.9}, True),
    ],
)
def test_record_trial_refuses_a_missing_or_bad_accuracy(db, dataset, hpo, metrics, accuracy):
    experiment = make_experiment(db, dataset, "t1", metrics)
    with pytest.raises(InvalidInput, match="accuracy"):
        campaigns.record_trial(db, hpo, experiment, accuracy=accuracy)
    db.rollback()
    db.refresh(experiment)
    db.refresh(hpo)
    assert experiment.hpo_campaign_id is None and hpo.trials_completed == 0


def test_recording_a_trial_twice_counts_it_once(db, dataset, hpo):
    experiment = make_experiment(db, dataset, "t1")
    campaigns.record_trial(db, hpo, experiment, accuracy=0.5)
    campaigns.record_trial(db, hpo, experiment, accuracy=0.99)
    db.commit()
    assert hpo.trials_completed == 1 and hpo.best_accuracy == 0.5


def test_the_last_trial_of_the_budget_completes_the_campaign(db, dataset, hpo):
    trials = [make_experiment(db, dataset, f"t{i}") for i in range(4)]
    for trial in trials[:3]:
        campaigns.record_trial(db, hpo, trial, accuracy=0.5)
    db.commit()
    assert (hpo.trials_completed, hpo.status) == (3, ExperimentStatus.COMPLETED)
    assert campaigns.record_trial(db, hpo, trials[2], accuracy=0.5) is hpo  # a retry is fine
    with pytest.raises(Conflict, match="completed"):
        campaigns.record_trial(db, hpo, trials[3], accuracy=0.5)
    db.rollback()
    db.refresh(trials[3])
    assert trials[3].hpo_campaign_id is None


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_closed_campaign_takes_no_trials(db, dataset, hpo, status):
    if status == "failed":
        campaigns.transition(db, hpo, "running")
    campaigns.transition(db, hpo, status)
    with pytest.raises(Conflict, match=status):
        campaigns.record_trial(db, hpo, make_experiment(db, dataset, "t1"), accuracy=0.5)


def test_a_trial_of_another_campaign_raises_conflict(db, dataset, hpo):
    experiment = make_experiment(db, dataset, "t1")
    campaigns.record_trial(db, make_hpo(db, dataset, name="other"), experiment, accuracy=0.5)
    with pytest.raises(Conflict, match="another"):
        campaigns.record_trial(db, hpo, experiment, accuracy=0.5)
    assert hpo.trials_completed == 0


def test_record_trial_for_a_deleted_experiment_raises_not_found(db, engine, dataset, hpo):
    experiment = make_experiment(db, dataset, "t1")
    with engine.begin() as conn:
        conn.execute(Experiment.__table__.delete())
    with pytest.raises(NotFound, match="t1"):
        campaigns.record_trial(db, hpo, experiment, accuracy=0.5)


def test_record_trial_returns_what_other_writers_stored(db, engine, dataset, hpo):
    with Session(engine, expire_on_commit=False) as other:
        theirs = make_experiment(other, dataset, "theirs")
        campaigns.record_trial(other, other.get(HPOCampaign, hpo.id), theirs, accuracy=0.9)
        other.commit()
    campaigns.record_trial(db, hpo, make_experiment(db, dataset, "ours"), accuracy=0.1)
    assert hpo.trials_completed == 2
    assert (hpo.best_experiment_id, hpo.best_accuracy) == (theirs.id, 0.9)


def test_concurrent_trials_keep_the_count_and_the_true_best(db, engine, dataset):
    """8 workers, one session each, record one trial each at the same moment."""
    campaign = make_hpo(db, dataset, trials_total=8)
    trials = [make_experiment(db, dataset, f"t{i}") for i in range(8)]
    scores = [random.random() for _ in trials]

    def record(index: int) -> None:
        with Session(engine, expire_on_commit=False) as session:
            mine = session.get(HPOCampaign, campaign.id)
            campaigns.record_trial(
                session, mine, session.get(Experiment, trials[index].id), scores[index]
            )
            session.commit()

    _, errors = run_together(8, record)
    assert errors == []
    db.refresh(campaign)
    best = max(range(8), key=scores.__getitem__)
    assert campaign.trials_completed == 8
    assert (campaign.best_experiment_id, campaign.best_accuracy) == (trials[best].id, scores[best])
    assert campaign.status is ExperimentStatus.COMPLETED
    assert db.scalars(select(Experiment.hpo_campaign_id)).all() == [campaign.id] * 8


def test_concurrent_records_of_one_trial_count_it_once(db, engine, dataset, hpo):
    experiment = make_experiment(db, dataset, "t1")

    def record(index: int) -> None:
        with Session(engine, expire_on_commit=False) as session:
            mine = session.get(HPOCampaign, hpo.id)
            campaigns.record_trial(
                session, mine, session.get(Experiment, experiment.id), 0.1 * index
            )
            session.commit()

    _, errors = run_together(6, record)
    assert errors == []
    db.refresh(hpo)
    assert (hpo.trials_completed, hpo.status) == (1, ExperimentStatus.RUNNING)


# --- status -----------------------------------------------------------------------------


def test_transitions_follow_the_state_machine(db, hpo, nas):
    for campaign in (hpo, nas):
        for status in ("running", "paused", "running", "completed"):
            campaigns.transition(db, campaign, status)
        db.commit()
        assert campaign.status == "completed"
    db.refresh(nas)
    assert nas.status == "completed"


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ([], "completed"),
        ([], "paused"),
        (["running", "paused"], "completed"),
        (["cancelled"], "running"),
        (["running", "failed"], "running"),
    ],
)
def test_transitions_outside_the_state_machine_are_refused(db, hpo, nas, path, refused):
    for campaign in (hpo, nas):
        for status in path:
            campaigns.transition(db, campaign, status)
        with pytest.raises(InvalidTransition, match=refused):
            campaigns.transition(db, campaign, refused)


def test_transition_to_an_unknown_status_is_refused(db, hpo):
    with pytest.raises(InvalidInput, match="status"):
        campaigns.transition(db, hpo, "finished")


# --- NAS --------------------------------------------------------------------------------


def test_create_nas_campaign_with_defaults(db, dataset, nas):
    db.refresh(nas)
    assert (nas.name, nas.dataset_id, nas.status) == ("search", dataset.id, "pending")
    assert (nas.search_algorithm, nas.num_trials, nas.max_epochs_per_trial) == ("random", 20, 10)
    assert nas.search_space_config is None and nas.best_trial_id is None


def test_create_nas_campaign_with_options(db, dataset):
    campaign = campaigns.create_nas_campaign(
        db,
        "evolve",
        dataset.id,
        search_algorithm="evolution",
        num_trials=5,
        max_epochs_per_trial=3,
        search_space_config={"depth": [2, 4]},
    )
    db.commit()
    db.refresh(campaign)
    assert (campaign.search_algorithm, campaign.num_trials) == ("evolution", 5)
    assert (campaign.max_epochs_per_trial, campaign.search_space_config) == (3, {"depth": [2, 4]})


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("name", "", "name"),
        ("search_algorithm", "grid", "search_algorithm"),
        ("num_trials", 0, "num_trials"),
        ("max_epochs_per_trial", 2.5, "max_epochs_per_trial"),
        ("search_space_config", "depth", "search_space_config"),
    ],
)
def test_create_nas_campaign_refuses_bad_input(db, dataset, option, value, field):
    arguments = {"name": "search", "dataset": dataset, option: value}
    with pytest.raises(InvalidInput, match=field):
        campaigns.create_nas_campaign(db, **arguments)
    db.rollback()
    assert count_rows(db, NASCampaign) == 0


def test_architecture_hash_is_sha256_of_canonical_json():
    canonical = '{"layers":[{"filters":32,"type":"conv1d"},{"type":"dense","units":10}]}'
    assert (
        campaigns.architecture_hash(ARCHITECTURE) == hashlib.sha256(canonical.encode()).hexdigest()
    )
    reordered = json.loads(json.dumps(ARCHITECTURE, sort_keys=True))
    assert campaigns.architecture_hash(reordered) == campaigns.architecture_hash(ARCHITECTURE)


def test_add_trial_numbers_trials_and_stores_results(db, nas):
    results = {
        "validation_accuracy": 0.9,
        "validation_loss": 0.3,
        "training_time": 12,
        "num_parameters": 5_000_000_000,
        "flops": 10**12,
        "model_size_mb": 1.5,
        "metrics": {"f1": 0.88},
    }
    first = campaigns.add_trial(db, nas, ARCHITECTURE, results)
    second = campaigns.add_trial(db, nas, {"layers": []})
    db.commit()
    db.refresh(first)
    assert (first.trial_number, second.trial_number) == (1, 2)
    assert first.architecture == ARCHITECTURE
    assert first.architecture_hash == campaigns.architecture_hash(ARCHITECTURE)
    assert {key: getattr(first, key) for key in results} == results
    assert second.validation_accuracy is None and second.metrics is None


def test_a_repeated_architecture_returns_the_existing_trial(db, nas):
    first = campaigns.add_trial(db, nas, ARCHITECTURE, {"validation_accuracy": 0.5})
    reordered = json.loads(json.dumps(ARCHITECTURE, sort_keys=True))
    again = campaigns.add_trial(db, nas, reordered, {"validation_accuracy": 0.99})
    db.commit()
    assert again is first and again.validation_accuracy == 0.5
    assert count_rows(db, NASTrial) == 1
    assert nas.best_accuracy == 0.5


def test_the_same_architecture_in_two_campaigns_makes_two_trials(db, dataset, nas):
    other = campaigns.create_nas_campaign(db, "other", dataset)
    ours = campaigns.add_trial(db, nas, ARCHITECTURE)
    theirs = campaigns.add_trial(db, other, ARCHITECTURE)
    assert ours.id != theirs.id and theirs.trial_number == 1


def test_add_trial_tracks_the_best_trial(db, nas):
    campaigns.add_trial(db, nas, {"depth": 1}, {"validation_accuracy": 0.6})
    best = campaigns.add_trial(db, nas, {"depth": 2}, {"validation_accuracy": 0.8})
    campaigns.add_trial(db, nas, {"depth": 3}, {"validation_accuracy": 0.7})
    campaigns.add_trial(db, nas, {"depth": 4}, {"validation_loss": 0.1})
    db.commit()
    db.refresh(nas)
    assert (nas.best_trial_id, nas.best_accuracy) == (best.id, 0.8)


def test_trials_are_listed_by_number(db, nas):
    added = [campaigns.add_trial(db, nas, {"depth": d}) for d in (3, 1, 2)]
    db.commit()
    assert [t.id for t in campaigns.trials(db, nas)] == [t.id for t in added]
    assert [t.trial_number for t in nas.trials] == [1, 2, 3]


@pytest.mark.parametrize(
    ("architecture", "results", "field"),
    [
        ({}, None, "architecture"),
        (["conv"], None, "architecture"),
        ({"width": {1, 2}}, None, "architecture"),
        ({"depth": 1}, {"accuracy": 0.9}, "accuracy"),
        ({"depth": 1}, {"validation_accuracy": "0.9"}, "validation_accuracy"),
        ({"depth": 1}, {"validation_loss": float("nan")}, "validation_loss"),
        ({"depth": 1}, {"num_parameters": -1}, "num_parameters"),
        ({"depth": 1}, {"flops": 1.5}, "flops"),
        ({"depth": 1}, {"metrics": [0.9]}, "metrics"),
        ({"depth": 1}, ["validation_accuracy"], "results"),
    ],
)
def test_add_trial_refuses_bad_input(db, nas, architecture, results, field):
    with pytest.raises(InvalidInput, match=field):
        campaigns.add_trial(db, nas, architecture, results)
    db.rollback()
    assert count_rows(db, NASTrial) == 0


def test_add_trial_to_a_deleted_campaign_raises_not_found(db, engine, nas):
    with engine.begin() as conn:
        conn.execute(NASCampaign.__table__.delete())
    with pytest.raises(NotFound, match="search"):
        campaigns.add_trial(db, nas, ARCHITECTURE)


def test_concurrent_adds_of_one_architecture_make_one_trial(db, engine, nas):
    def add(_index: int) -> int:
        with Session(engine, expire_on_commit=False) as session:
            trial = campaigns.add_trial(session, session.get(NASCampaign, nas.id), ARCHITECTURE)
            session.commit()
            return trial.id

    ids, errors = run_together(6, add)
    assert errors == []
    assert len(set(ids)) == 1
    assert count_rows(db, NASTrial) == 1


def test_concurrent_adds_number_trials_without_gaps_and_keep_the_best(db, engine, nas):
    scores = [random.random() for _ in range(8)]

    def add(index: int) -> int:
        with Session(engine, expire_on_commit=False) as session:
            trial = campaigns.add_trial(
                session,
                session.get(NASCampaign, nas.id),
                {"depth": index},
                {"validation_accuracy": scores[index]},
            )
            session.commit()
            return trial.id

    ids, errors = run_together(8, add)
    assert errors == []
    assert [t.trial_number for t in campaigns.trials(db, nas)] == list(range(1, 9))
    db.refresh(nas)
    best = max(range(8), key=scores.__getitem__)
    assert (nas.best_trial_id, nas.best_accuracy) == (ids[best], scores[best])
