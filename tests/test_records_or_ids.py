"""Every store function that takes a record takes the object or its id alike
(pfd_db.store.writes.load): an id works as the object does, an unknown id is
NotFound, anything else is InvalidInput naming the parameter; a refused call
writes nothing. Both dialects."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Base, DatasetGeneration, DatasetImport, HPOCampaign, NASCampaign
from pfd_db.store.identity import api_keys, sessions, twofactor, users
from pfd_db.store.ml import (
    campaigns,
    curves,
    datasets,
    experiments,
    explanations,
    jobs,
    search,
    tags,
)
from pfd_db.store.ops import audit

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def records(db, plaintexts) -> SimpleNamespace:
    """One committed record of each kind the calls below take."""
    user = users.create_user(db, "ada", "ada@example.com", PASSWORD)
    dataset = datasets.register_dataset(db, "cwru", ["normal"], ["mild"], "data/cwru.h5")
    spare = datasets.register_dataset(db, "spare", ["normal"], ["mild"], "data/spare.h5")
    experiment = experiments.create_experiment(
        db, "resnet-1", "cnn", dataset, {}, notes="", created_by=user
    )
    tag = tags.get_or_create_tag(db, "baseline")
    hpo = campaigns.create_hpo_campaign(db, "sweep", "bayesian", "cnn", dataset, {}, {}, 3)
    nas = campaigns.create_nas_campaign(db, "nas", dataset)
    plaintext, key = api_keys.issue(db, user, "ci")
    saved = search.save_search(db, user, "mine", "vibration")
    generation = jobs.create_generation(db, "gen", {})
    running = jobs.start(db, jobs.create_import(db, "imp", {}))
    db.commit()
    plaintexts.extend([PASSWORD, plaintext])
    return SimpleNamespace(
        user=user,
        dataset=dataset,
        spare=spare,
        experiment=experiment,
        tag=tag,
        hpo=hpo,
        nas=nas,
        key=key,
        saved=saved,
        generation=generation,
        running=running,
    )


# (what the call takes, its parameter's name in messages, the call with that record given)
CALLS = {
    "users.change_password": (
        "user",
        "user",
        lambda db, r, u: users.change_password(db, u, PASSWORD + "!"),
    ),
    "users.set_role": ("user", "user", lambda db, r, u: users.set_role(db, u, "admin")),
    "users.deactivate": ("user", "user", lambda db, r, u: users.deactivate(db, u)),
    "sessions.start_session": ("user", "user", lambda db, r, u: sessions.start_session(db, u)),
    "sessions.end_all_sessions": (
        "user",
        "user",
        lambda db, r, u: sessions.end_all_sessions(db, u),
    ),
    "sessions.active_sessions": ("user", "user", lambda db, r, u: sessions.active_sessions(db, u)),
    "api_keys.issue": ("user", "user", lambda db, r, u: api_keys.issue(db, u, "another")),
    "api_keys.list_keys": ("user", "user", lambda db, r, u: api_keys.list_keys(db, u)),
    "api_keys.revoke": ("key", "key", lambda db, r, k: api_keys.revoke(db, k)),
    "api_keys.record_usage": (
        "key",
        "key",
        lambda db, r, k: api_keys.record_usage(db, k, "/x", "GET", 200, 5),
    ),
    "api_keys.check_rate_limit": ("key", "key", lambda db, r, k: api_keys.check_rate_limit(db, k)),
    "twofactor.begin_setup": ("user", "user", lambda db, r, u: twofactor.begin_setup(db, u)),
    "twofactor.disable": ("user", "user", lambda db, r, u: twofactor.disable(db, u)),
    "twofactor.generate_backup_codes": (
        "user",
        "user",
        lambda db, r, u: twofactor.generate_backup_codes(db, u, 2),
    ),
    "twofactor.remaining_backup_codes": (
        "user",
        "user",
        lambda db, r, u: twofactor.remaining_backup_codes(db, u),
    ),
    "datasets.register_dataset": (
        "user",
        "created_by",
        lambda db, r, u: datasets.register_dataset(
            db, "other", ["normal"], ["mild"], "o.h5", created_by=u
        ),
    ),
    "datasets.add_signals": (
        "dataset",
        "dataset",
        lambda db, r, d: datasets.add_signals(
            db, d, [{"signal_id": "s1", "fault_class": "normal"}]
        ),
    ),
    "datasets.fault_class_counts": (
        "dataset",
        "dataset",
        lambda db, r, d: datasets.fault_class_counts(db, d),
    ),
    "datasets.delete_dataset": (
        "spare",
        "dataset",
        lambda db, r, d: datasets.delete_dataset(db, d),
    ),
    "experiments.create_experiment": (
        "dataset",
        "dataset",
        lambda db, r, d: experiments.create_experiment(db, "resnet-2", "cnn", d, {}),
    ),
    "experiments.create_experiment(hpo_campaign)": (
        "hpo",
        "hpo_campaign",
        lambda db, r, h: experiments.create_experiment(
            db, "trial-1", "cnn", r.dataset, {}, hpo_campaign=h
        ),
    ),
    "experiments.start": ("experiment", "experiment", lambda db, r, e: experiments.start(db, e)),
    "experiments.transition": (
        "experiment",
        "experiment",
        lambda db, r, e: experiments.transition(db, e, "cancelled"),
    ),
    "curves.log_epoch": (
        "experiment",
        "experiment",
        lambda db, r, e: curves.log_epoch(db, e, 0, 1.0, 1.0, 0.5, 0.5),
    ),
    "curves.log_epochs": (
        "experiment",
        "experiment",
        lambda db, r, e: curves.log_epochs(
            db,
            e,
            [
                {
                    "epoch": 0,
                    "train_loss": 1,
                    "val_loss": 1,
                    "train_accuracy": 0.5,
                    "val_accuracy": 0.5,
                }
            ],
        ),
    ),
    "curves.curve": ("experiment", "experiment", lambda db, r, e: curves.curve(db, e)),
    "curves.curve_columns": (
        "experiment",
        "experiment",
        lambda db, r, e: curves.curve_columns(db, e),
    ),
    "experiments.delete_experiment": (
        "experiment",
        "experiment",
        lambda db, r, e: experiments.delete_experiment(db, e),
    ),
    "tags.get_or_create_tag": (
        "user",
        "created_by",
        lambda db, r, u: tags.get_or_create_tag(db, "new", created_by=u),
    ),
    "tags.tag_experiment": (
        "experiment",
        "experiment",
        lambda db, r, e: tags.tag_experiment(db, e, r.tag),
    ),
    "tags.tag_experiment(tag)": (
        "tag",
        "tag",
        lambda db, r, t: tags.tag_experiment(db, r.experiment, t),
    ),
    "tags.untag_experiment": (
        "experiment",
        "experiment",
        lambda db, r, e: tags.untag_experiment(db, e, r.tag),
    ),
    "tags.bulk_tag": ("tag", "tag", lambda db, r, t: tags.bulk_tag(db, [r.experiment], t)),
    "tags.bulk_tag(added_by)": (
        "user",
        "added_by",
        lambda db, r, u: tags.bulk_tag(db, [r.experiment], r.tag, u),
    ),
    "tags.bulk_untag": ("tag", "tag", lambda db, r, t: tags.bulk_untag(db, [r.experiment], t)),
    "campaigns.create_hpo_campaign": (
        "dataset",
        "dataset",
        lambda db, r, d: campaigns.create_hpo_campaign(
            db, "sweep-2", "random_search", "cnn", d, {}, {}, 2
        ),
    ),
    "campaigns.create_nas_campaign": (
        "dataset",
        "dataset",
        lambda db, r, d: campaigns.create_nas_campaign(db, "nas-2", d),
    ),
    "campaigns.record_trial": (
        "hpo",
        "campaign",
        lambda db, r, h: campaigns.record_trial(db, h, r.experiment, accuracy=0.9),
    ),
    "campaigns.record_trial(experiment)": (
        "experiment",
        "experiment",
        lambda db, r, e: campaigns.record_trial(db, r.hpo, e, accuracy=0.9),
    ),
    "campaigns.add_trial": (
        "nas",
        "campaign",
        lambda db, r, n: campaigns.add_trial(db, n, {"layers": 2}),
    ),
    "campaigns.trials": ("nas", "campaign", lambda db, r, n: campaigns.trials(db, n)),
    "campaigns.hpo_trials": ("hpo", "campaign", lambda db, r, h: campaigns.hpo_trials(db, h)),
    "explanations.find_explanation": (
        "experiment",
        "experiment",
        lambda db, r, e: explanations.find_explanation(db, e, "s1", "shap"),
    ),
    "search.save_search": (
        "user",
        "user",
        lambda db, r, u: search.save_search(db, u, "other", "bearing"),
    ),
    "search.saved_searches": ("user", "user", lambda db, r, u: search.saved_searches(db, u)),
    "search.run_saved_search": ("saved", "saved", lambda db, r, s: search.run_saved_search(db, s)),
    "search.pin": ("saved", "saved", lambda db, r, s: search.pin(db, s)),
    "search.delete_saved_search": (
        "saved",
        "saved",
        lambda db, r, s: search.delete_saved_search(db, s),
    ),
    "audit.about": ("user", "user", lambda db, r, u: audit.about(db, u, "user.checked")),
    # records of several kinds: an id comes with kind= naming the model
    "campaigns.transition": (
        "nas",
        "campaign",
        lambda db, r, c: campaigns.transition(db, c, "running", kind=NASCampaign),
    ),
    "jobs.start": (
        "generation",
        "job",
        lambda db, r, j: jobs.start(db, j, kind=DatasetGeneration),
    ),
    "jobs.cancel": (
        "generation",
        "job",
        lambda db, r, j: jobs.cancel(db, j, kind=DatasetGeneration),
    ),
    "jobs.update_progress": (
        "running",
        "job",
        lambda db, r, j: jobs.update_progress(db, j, 40, kind=DatasetImport),
    ),
    "jobs.complete": (
        "running",
        "job",
        lambda db, r, j: jobs.complete(db, j, duration_seconds=1.0, kind=DatasetImport),
    ),
    "jobs.fail": (
        "running",
        "job",
        lambda db, r, j: jobs.fail(db, j, "disk full", kind=DatasetImport),
    ),
}


def table_rows(db) -> dict[str, int]:
    """How many rows each table holds, as this session sees it."""
    return {
        table.name: db.scalar(select(func.count()).select_from(table))
        for table in Base.metadata.sorted_tables
    }


@pytest.mark.parametrize("name", CALLS)
def test_a_record_or_its_id_is_taken_and_anything_else_refused(db, records, name):
    """Refused (nothing written): an unknown id with NotFound, a string, a bool,
    a float or a record of another kind with InvalidInput naming the parameter.
    Then the record's id works."""
    kind, field, call = CALLS[name]
    other_kind = records.user if kind == "tag" else records.tag
    before = table_rows(db)
    for unknown in (999_999, 2**40):
        with pytest.raises(NotFound, match=field):
            call(db, records, unknown)
        db.rollback()
    for wrong in ("1", True, 2.0, other_kind):
        with pytest.raises(InvalidInput, match=field):
            call(db, records, wrong)
        db.rollback()
    assert table_rows(db) == before
    call(db, records, getattr(records, kind).id)
    db.commit()


@pytest.mark.parametrize("value", [1, "1", None])
def test_calls_over_several_kinds_need_the_kind_with_an_id(db, records, value):
    """An id alone does not say which model: without kind= it is refused, naming
    the parameter, as is a kind outside the function's models or one the object
    given is not. Nothing is written."""
    before = table_rows(db)
    with pytest.raises(InvalidInput, match="job"):
        jobs.start(db, value)
    with pytest.raises(InvalidInput, match="campaign"):
        campaigns.transition(db, value, "running")
    with pytest.raises(InvalidInput, match="kind"):
        jobs.start(db, records.generation.id, kind=HPOCampaign)
    with pytest.raises(InvalidInput, match="not a DatasetImport"):
        jobs.start(db, records.generation, kind=DatasetImport)
    with pytest.raises(InvalidInput, match="kind"):
        campaigns.transition(db, records.nas.id, "running", kind=DatasetGeneration)
    db.rollback()
    assert table_rows(db) == before
    assert jobs.start(db, records.generation) is records.generation
    assert campaigns.transition(db, records.nas, "running") is records.nas
