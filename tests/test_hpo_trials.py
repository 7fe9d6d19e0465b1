"""campaigns.hpo_trials: an HPO campaign's experiments with their configs and final
metrics, best first; both dialects."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Dataset, HPOCampaign, NASCampaign
from pfd_db.store.ml import campaigns, experiments
from probes import executions


@pytest.fixture
def dataset(db) -> Dataset:
    dataset = Dataset(
        name="cwru", num_signals=10, fault_types=["normal"], severity_levels=["mild"], file_path="x"
    )
    db.add(dataset)
    db.commit()
    return dataset


@pytest.fixture
def campaign(db, dataset) -> HPOCampaign:
    made = campaigns.create_hpo_campaign(
        db, "tune-cnn", "bayesian", "cnn1d", dataset, {"lr": [0.1, 0.01]}, {"max_hours": 1}, 5
    )
    db.commit()
    return made


def trial(db, dataset, campaign, name: str, lr: float, metrics: dict | None, record: bool = True):
    """An experiment of ``campaign`` with config ``{"lr": lr}``, finished with
    ``metrics`` and recorded as a trial (when it has a score and ``record``)."""
    experiment = experiments.create_experiment(
        db, name, "cnn1d", dataset, {"lr": lr}, hyperparameters={"lr": lr}
    )
    if metrics is not None:
        experiments.start(db, experiment)
        experiments.finish(db, experiment, metrics)
    if record and metrics is not None:
        campaigns.record_trial(db, campaign, experiment)
    else:
        experiment.hpo_campaign_id = campaign.id
    db.commit()
    return experiment


def test_trials_are_listed_best_first_with_configs_and_final_metrics(db, dataset, campaign):
    trial(db, dataset, campaign, "a", 0.1, {"val_accuracy": 0.81, "f1": 0.8})
    trial(db, dataset, campaign, "b", 0.01, {"val_accuracy": 0.93})
    trial(db, dataset, campaign, "c", 0.05, {"accuracy": 0.88})  # no val_accuracy: accuracy
    trial(db, dataset, campaign, "d", 0.2, None)  # still running: no score, listed last
    listed = campaigns.hpo_trials(db, campaign)
    assert [t.experiment.name for t in listed] == ["b", "c", "a", "d"]
    assert [t.accuracy for t in listed] == [0.93, 0.88, 0.81, None]
    assert [t.best for t in listed] == [True, False, False, False]
    first = listed[0]
    assert first.config == {"lr": 0.01} and first.hyperparameters == {"lr": 0.01}
    assert first.metrics == {"val_accuracy": 0.93}
    assert listed[2].metrics == {"val_accuracy": 0.81, "f1": 0.8}
    assert listed[3].metrics is None


def test_ties_keep_the_order_the_trials_were_created_in(db, dataset, campaign):
    for name in ("first", "second", "third"):
        trial(db, dataset, campaign, name, 0.1, {"val_accuracy": 0.9})
    assert [t.experiment.name for t in campaigns.hpo_trials(db, campaign)] == [
        "first",
        "second",
        "third",
    ]


def test_a_metric_that_is_no_number_gives_no_score(db, dataset, campaign):
    odd = trial(db, dataset, campaign, "odd", 0.1, {"val_accuracy": "high"}, record=False)
    trial(db, dataset, campaign, "fine", 0.1, {"val_accuracy": 0.5})
    listed = campaigns.hpo_trials(db, campaign.id)
    assert [(t.experiment.id, t.accuracy) for t in listed][-1] == (odd.id, None)


def test_only_the_campaigns_own_experiments_are_listed(db, dataset, campaign):
    other = campaigns.create_hpo_campaign(
        db, "tune-lstm", "random_search", "lstm", dataset, {}, {}, 2
    )
    trial(db, dataset, campaign, "mine", 0.1, {"val_accuracy": 0.7})
    trial(db, dataset, other, "theirs", 0.1, {"val_accuracy": 0.99})
    experiments.create_experiment(db, "loose", "cnn1d", dataset, {})
    assert [t.experiment.name for t in campaigns.hpo_trials(db, campaign)] == ["mine"]
    assert [t.experiment.name for t in campaigns.hpo_trials(db, other)] == ["theirs"]


def test_a_campaign_without_trials_lists_none(db, campaign):
    assert campaigns.hpo_trials(db, campaign) == []


def test_listing_is_one_query_and_reads_only(db, engine, dataset, campaign):
    trial(db, dataset, campaign, "a", 0.1, {"val_accuracy": 0.8})
    with Session(engine) as fresh, executions(engine) as sent:
        listed = campaigns.hpo_trials(fresh, campaign)
    assert [sql.split()[0] for sql, _ in sent] == ["SELECT"]
    assert listed[0].experiment.name == "a"


def test_a_missing_campaign_is_not_found_and_other_kinds_are_refused(db, dataset, campaign):
    with pytest.raises(NotFound, match="HPOCampaign with id 999"):
        campaigns.hpo_trials(db, 999)
    nas = campaigns.create_nas_campaign(db, "search", dataset)
    with pytest.raises(InvalidInput, match="campaign must be a HPOCampaign"):
        campaigns.hpo_trials(db, nas)
    assert isinstance(nas, NASCampaign)
