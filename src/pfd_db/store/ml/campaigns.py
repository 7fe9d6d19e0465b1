"""Hyper-parameter (HPO) and neural-architecture (NAS) search campaigns.

Many workers report trials of one campaign at once, so every change to a
campaign's counters happens in the database, atomically: ``trials_completed``
moves by ``+ 1`` in an UPDATE, and the best result is replaced only by a
conditional UPDATE (``WHERE best_accuracy IS NULL OR best_accuracy < :new``),
so the true best survives any interleaving. Recording a trial also locks the
campaign's row first (``SELECT ... FOR UPDATE``, which on SQLite takes the
database's write lock): the checks that decide
whether a trial counts, and NAS trial numbering, then see a settled campaign.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict, InvalidInput, NotFound
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
from pfd_db.models.enums import NASAlgorithm
from pfd_db.store.status import move_status, reread, update_if
from pfd_db.store.validation import (
    require_count,
    require_finite,
    require_member,
    require_object,
    require_text,
)
from pfd_db.store.writes import add_unique, id_of, load, load_one_of
from pfd_db.values import INT64_MAX

Campaign = TypeVar("Campaign", HPOCampaign, NASCampaign)
KINDS = (HPOCampaign, NASCampaign)  # an id alone does not say which: kind= names it

S = ExperimentStatus
TRANSITIONS: dict[ExperimentStatus, frozenset[ExperimentStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.PAUSED, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.PAUSED: frozenset({S.RUNNING}),
}
OPEN = frozenset({S.PENDING, S.RUNNING, S.PAUSED})
ACCURACY_KEYS = ("val_accuracy", "accuracy")
REAL_RESULTS = ("validation_accuracy", "validation_loss", "training_time", "model_size_mb")
COUNT_RESULTS = ("num_parameters", "flops")
RESULT_KEYS = frozenset({*REAL_RESULTS, *COUNT_RESULTS, "metrics"})


# --- both kinds ------------------------------------------------------------------


def transition(
    session: Session,
    campaign: Campaign | int,
    status: ExperimentStatus | str,
    *,
    kind: type[Campaign] | None = None,
) -> Campaign:
    """Move ``campaign`` (the object, or its id with ``kind=HPOCampaign`` or
    ``NASCampaign``: an id alone does not say which) to ``status``: pending →
    running | cancelled, running → paused | completed | failed | cancelled,
    paused → running; anything else raises InvalidTransition.

    One conditional UPDATE from the status ``campaign`` shows (see
    :mod:`pfd_db.store.status`): if another session moved it first,
    ``campaign`` is read again and InvalidTransition names its status now."""
    found = cast(Campaign, load_one_of(session, KINDS, campaign, kind, "campaign"))
    new = require_member(status, ExperimentStatus, "status")
    return move_status(session, found, new, TRANSITIONS)


def _lock_campaign(session: Session, campaign: HPOCampaign | NASCampaign) -> ExperimentStatus:
    """Lock the campaign's row for this transaction (the write lock on SQLite),
    so that trials are counted and numbered against a settled campaign; its
    stored status, which ``campaign`` shows too."""
    return ExperimentStatus(reread(session, campaign, lock=True).status)


# --- hyper-parameter search ----------------------------------------------------------


def create_hpo_campaign(
    session: Session,
    name: str,
    method: HPOMethod | str,
    base_model_type: str,
    dataset: Dataset | int,
    search_space: Mapping[str, Any],
    budget: Mapping[str, Any],
    trials_total: int,
    created_by: User | int | None = None,
) -> HPOCampaign:
    """A new, pending HPO campaign of ``trials_total`` trials. Conflict if the
    name is taken (also when another caller takes it at the same moment)."""
    values = {
        "name": require_text(name, "name", 255),
        "method": require_member(method, HPOMethod, "method"),
        "base_model_type": require_text(base_model_type, "base_model_type", 50),
        "search_space": _require_json_object(search_space, "search_space"),
        "budget": _require_json_object(budget, "budget"),
        "trials_total": require_count(trials_total, "trials_total", minimum=1),
        "dataset_id": id_of(session, Dataset, dataset, "dataset"),
        "created_by": id_of(session, User, created_by, "created_by"),
    }
    campaign = HPOCampaign(**values)
    add_unique(
        session,
        campaign,
        {HPOCampaign.name: campaign.name},
        conflict=f"an HPO campaign named {campaign.name!r} already exists",
    )
    return campaign


def record_trial(
    session: Session,
    campaign: HPOCampaign | int,
    experiment: Experiment | int,
    accuracy: float | None = None,
) -> HPOCampaign:
    """Count ``experiment`` as a finished trial of ``campaign``, returned updated.

    Links the experiment to the campaign, adds one to ``trials_completed``,
    makes it the best trial if its accuracy beats the best so far, and
    completes the campaign when the count reaches ``trials_total`` (a pending
    campaign becomes running with its first trial). ``accuracy`` defaults to
    the experiment's ``val_accuracy`` metric, then its ``accuracy`` metric.

    An experiment already linked to this campaign counts as recorded: a second
    call changes nothing (so leave ``hpo_campaign_id`` unset when creating a
    trial's experiment). Conflict if the experiment belongs to another campaign
    or the campaign is no longer open (completed, failed, cancelled).
    """
    campaign = load(session, HPOCampaign, campaign, "campaign")
    experiment = load(session, Experiment, experiment, "experiment")
    score = _trial_accuracy(experiment, accuracy)
    if experiment.id is None:
        session.flush()
    status = _lock_campaign(session, campaign)
    owner = _campaign_id_of(session, experiment)
    if owner == campaign.id:
        return campaign  # recorded already; as stored now, since the lock read it again
    if owner is not None:
        raise Conflict(f"experiment {experiment.name!r} is a trial of another HPO campaign")
    if status not in OPEN:
        raise Conflict(f"HPO campaign {campaign.name!r} is {status.value}: it takes no more trials")
    _link(session, experiment, campaign)
    _offer_best(session, campaign, experiment.id, score)
    _count_trial(session, campaign)
    return campaign


def _trial_accuracy(experiment: Experiment, accuracy: float | None) -> float:
    if accuracy is None:
        metrics = experiment.metrics or {}
        accuracy = next((metrics[k] for k in ACCURACY_KEYS if metrics.get(k) is not None), None)
        if accuracy is None:
            raise InvalidInput(
                "accuracy: not given, and the experiment's metrics have neither "
                "val_accuracy nor accuracy"
            )
    return require_finite(accuracy, "accuracy")


def _campaign_id_of(session: Session, experiment: Experiment) -> int | None:
    found = session.execute(
        select(Experiment.hpo_campaign_id).where(Experiment.id == experiment.id)
    ).one_or_none()
    if found is None:
        raise NotFound(f"experiment {experiment.name!r} no longer exists")
    return found[0]


def _link(session: Session, experiment: Experiment, campaign: HPOCampaign) -> None:
    """Set the experiment's campaign, only if it still has none."""
    unlinked = Experiment.hpo_campaign_id.is_(None)
    if not update_if(session, experiment, unlinked, hpo_campaign_id=campaign.id):
        raise Conflict(f"experiment {experiment.name!r} is a trial of another HPO campaign")


def _count_trial(session: Session, campaign: HPOCampaign) -> None:
    """Add one to the campaign's trial count and move its status on; reload it."""
    budget_spent = HPOCampaign.trials_completed + 1 >= HPOCampaign.trials_total
    status = case(
        (budget_spent, S.COMPLETED.value),
        (HPOCampaign.status == S.PENDING, S.RUNNING.value),
        else_=HPOCampaign.status,
    )
    if not update_if(
        session, campaign, trials_completed=HPOCampaign.trials_completed + 1, status=status
    ):
        raise NotFound(f"HPO campaign {campaign.name!r} no longer exists")


@dataclass(frozen=True)
class HPOTrial:
    """One experiment of an HPO campaign, as :func:`hpo_trials` lists it."""

    experiment: Experiment
    accuracy: float | None
    """Its score: ``val_accuracy`` of its final metrics, else ``accuracy``; None
    when neither is a number (not finished, say)."""
    best: bool
    """Whether it is the campaign's recorded best trial."""

    @property
    def config(self) -> dict[str, Any]:
        return self.experiment.config

    @property
    def hyperparameters(self) -> dict[str, Any] | None:
        return self.experiment.hyperparameters

    @property
    def metrics(self) -> dict[str, Any] | None:
        return self.experiment.metrics


def hpo_trials(session: Session, campaign: HPOCampaign | int) -> list[HPOTrial]:
    """The experiments of ``campaign`` with their configs and final metrics, best
    first: by score (see :attr:`HPOTrial.accuracy`), highest first, those without
    one last, then in the order they were created. Reads only."""
    campaign = load(session, HPOCampaign, campaign, "campaign")
    found = session.scalars(
        select(Experiment).where(Experiment.hpo_campaign_id == campaign.id).order_by(Experiment.id)
    )
    trials = [
        HPOTrial(
            experiment, _score(experiment.metrics), experiment.id == campaign.best_experiment_id
        )
        for experiment in found
    ]
    return sorted(trials, key=lambda t: (t.accuracy is None, -(t.accuracy or 0.0)))


def _score(metrics: Mapping[str, Any] | None) -> float | None:
    """The first of ``ACCURACY_KEYS`` in ``metrics`` that holds a finite number."""
    for key in ACCURACY_KEYS:
        value = (metrics or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


# --- neural architecture search ------------------------------------------------------


def create_nas_campaign(
    session: Session,
    name: str,
    dataset: Dataset | int,
    *,
    search_algorithm: NASAlgorithm | str = NASAlgorithm.RANDOM,
    num_trials: int = 20,
    max_epochs_per_trial: int = 10,
    search_space_config: Mapping[str, Any] | None = None,
) -> NASCampaign:
    """A new, pending NAS campaign (names need not be unique)."""
    campaign = NASCampaign(
        name=require_text(name, "name", 200),
        search_algorithm=require_member(search_algorithm, NASAlgorithm, "search_algorithm").value,
        num_trials=require_count(num_trials, "num_trials", minimum=1),
        max_epochs_per_trial=require_count(max_epochs_per_trial, "max_epochs_per_trial", minimum=1),
        search_space_config=(
            None
            if search_space_config is None
            else _require_json_object(search_space_config, "search_space_config")
        ),
        dataset_id=id_of(session, Dataset, dataset, "dataset"),
    )
    session.add(campaign)
    session.flush()
    return campaign


def architecture_hash(architecture: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the architecture's canonical JSON: sorted keys, no spaces."""
    document = require_object(architecture, "architecture")
    return hashlib.sha256(_canonical_json(document, "architecture").encode()).hexdigest()


def add_trial(
    session: Session,
    campaign: NASCampaign | int,
    architecture: Mapping[str, Any],
    results: Mapping[str, Any] | None = None,
) -> NASTrial:
    """Add a trial of ``architecture`` to ``campaign``, numbered next, with
    ``results`` (validation_accuracy, validation_loss, training_time,
    num_parameters, flops, model_size_mb, metrics). If the campaign already has
    this architecture, that trial is returned unchanged instead. A trial that
    beats the campaign's best accuracy becomes its best trial."""
    campaign = load(session, NASCampaign, campaign, "campaign")
    shape = _require_json_object(architecture, "architecture")
    if not shape:
        raise InvalidInput("architecture must not be empty")
    fields = _trial_results(results)
    digest = architecture_hash(shape)
    _lock_campaign(session, campaign)
    existing = _trial_with_hash(session, campaign, digest)
    if existing is not None:
        return existing
    trial = NASTrial(
        campaign_id=campaign.id,
        trial_number=_next_trial_number(session, campaign),
        architecture=shape,
        architecture_hash=digest,
        **fields,
    )
    session.add(trial)
    session.flush()
    session.expire(campaign, ["trials"])
    if trial.validation_accuracy is not None:
        _offer_best(session, campaign, trial.id, trial.validation_accuracy)
    return trial


def trials(session: Session, campaign: NASCampaign | int) -> list[NASTrial]:
    """The campaign's trials in trial-number order."""
    campaign = load(session, NASCampaign, campaign, "campaign")
    return list(
        session.scalars(
            select(NASTrial)
            .where(NASTrial.campaign_id == campaign.id)
            .order_by(NASTrial.trial_number)
        )
    )


def _trial_results(results: Mapping[str, Any] | None) -> dict[str, Any]:
    given = require_object(results or {}, "results")
    unknown = sorted(set(given) - RESULT_KEYS)
    if unknown:
        raise InvalidInput(
            f"results has unknown keys {unknown} (expected some of {sorted(RESULT_KEYS)})"
        )
    checked: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            checked[key] = None
        elif key in REAL_RESULTS:
            checked[key] = require_finite(value, f"results[{key!r}]")
        elif key in COUNT_RESULTS:
            checked[key] = require_count(value, f"results[{key!r}]", 0, INT64_MAX)
        else:
            checked[key] = _require_json_object(value, f"results[{key!r}]")
    return checked


def _trial_with_hash(session: Session, campaign: NASCampaign, digest: str) -> NASTrial | None:
    return session.scalars(
        select(NASTrial)
        .where(NASTrial.campaign_id == campaign.id, NASTrial.architecture_hash == digest)
        .order_by(NASTrial.trial_number)
        .limit(1)
    ).one_or_none()


def _next_trial_number(session: Session, campaign: NASCampaign) -> int:
    highest = session.scalar(
        select(func.max(NASTrial.trial_number)).where(NASTrial.campaign_id == campaign.id)
    )
    return (highest or 0) + 1


def _offer_best(session: Session, campaign: Campaign, best_id: int, score: float) -> None:
    """Make ``best_id`` the campaign's best if ``score`` beats the stored best; one
    conditional UPDATE, so concurrent trials keep the true best."""
    model = type(campaign)
    best = "best_experiment_id" if model is HPOCampaign else "best_trial_id"
    beaten = or_(model.best_accuracy.is_(None), model.best_accuracy < score)
    update_if(session, campaign, beaten, **{best: best_id, "best_accuracy": score})


def _require_json_object(value: object, field: str) -> dict[str, Any]:
    """``value`` if it is a JSON object that serialises to standard JSON."""
    document = require_object(value, field)
    _canonical_json(document, field)
    return document


def _canonical_json(document: Mapping[str, Any], field: str) -> str:
    try:
        return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{field} is not plain JSON: {exc}") from None
