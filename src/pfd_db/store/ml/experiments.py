"""Experiments: create them, move them through their status machine, finish and
delete them. Their training curves are :mod:`pfd_db.store.ml.curves`.

Status changes are conditional updates (``... WHERE id = :id AND status =
:expected``), so two sessions can never both make a change from the same state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Dataset, Experiment, ExperimentStatus, HPOCampaign, TrainingRun, User
from pfd_db.store.ml import tags
from pfd_db.store.status import move_status, reread
from pfd_db.store.validation import (
    optional_object,
    require_member,
    require_non_negative,
    require_object,
    require_str,
    require_text,
)
from pfd_db.store.writes import add_unique, id_of, load

NAME_MAX = 255
MODEL_TYPE_MAX = 50

S = ExperimentStatus
ALLOWED: dict[ExperimentStatus, frozenset[ExperimentStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.PAUSED, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.PAUSED: frozenset({S.RUNNING}),
}
FINAL = (S.COMPLETED, S.FAILED, S.CANCELLED)


# --- experiments -------------------------------------------------------------------


def create_experiment(
    session: Session,
    name: str,
    model_type: str,
    dataset: Dataset | int,
    config: Mapping[str, Any],
    *,
    hyperparameters: Mapping[str, Any] | None = None,
    notes: str | None = None,
    created_by: User | int | None = None,
    hpo_campaign: HPOCampaign | int | None = None,
) -> Experiment:
    """A new, pending experiment on ``dataset``. ``config`` (and
    ``hyperparameters``, if given) must be JSON objects. :class:`InvalidInput`
    naming the field, or :class:`Conflict` if the name is taken; either way
    nothing is written."""
    fields = {
        "name": require_text(name, "name", NAME_MAX),
        "model_type": require_text(model_type, "model_type", MODEL_TYPE_MAX),
        "config": require_object(config, "config"),
        "hyperparameters": optional_object(hyperparameters, "hyperparameters"),
        "notes": _optional_notes(notes),
        "created_by": id_of(session, User, created_by, "created_by"),
        "dataset_id": id_of(session, Dataset, dataset, "dataset"),
        "hpo_campaign_id": id_of(session, HPOCampaign, hpo_campaign, "hpo_campaign"),
    }
    experiment = Experiment(**fields)
    add_unique(
        session,
        experiment,
        {Experiment.name: experiment.name},
        conflict=f"an experiment named {experiment.name!r} already exists",
    )
    return experiment


def get_experiment(session: Session, name: str) -> Experiment:
    """The experiment called ``name``; :class:`NotFound` naming it otherwise."""
    name = require_str(name, "name")
    experiment = session.scalar(select(Experiment).where(Experiment.name == name))
    if experiment is None:
        raise NotFound(f"no experiment named {name!r}")
    return experiment


def delete_experiment(session: Session, experiment: Experiment | int) -> None:
    """Delete ``experiment``; the database cascades to its training runs,
    explanations and tag links.

    The experiment's row is locked, then its tags are detached
    (:func:`pfd_db.store.ml.tags.detach_all`: links locked in id order, and the
    session's link collections read again). Tag usage counts follow by
    themselves, however an experiment is deleted (see
    :mod:`pfd_db.models.tag_counts`).
    """
    experiment = load(session, Experiment, experiment, "experiment")
    session.flush()
    _lock(session, experiment)
    tags.detach_all(session, [experiment.id])
    session.expire(experiment, ["training_runs"])  # the database deletes them, not the ORM
    session.delete(experiment)
    session.flush()


def _lock(session: Session, experiment: Experiment) -> None:
    """Lock the experiment's row until the transaction ends (on SQLite: take the
    write lock); NotFound if it is gone."""
    reread(session, experiment, lock=True)


# --- status ------------------------------------------------------------------------


def transition(
    session: Session, experiment: Experiment | int, new_status: ExperimentStatus | str
) -> Experiment:
    """Move ``experiment`` to ``new_status``: pending → running | cancelled;
    running → paused | completed | failed | cancelled; paused → running.
    Anything else raises :class:`InvalidTransition`.

    Safe against a concurrent change (see :mod:`pfd_db.store.status`): the row
    is updated only if its status is still the one ``experiment`` shows. If
    another session changed it first, ``experiment`` is read again and
    :class:`InvalidTransition` says what its status is now; so of two workers
    starting one pending experiment, exactly one succeeds.
    """
    experiment = load(session, Experiment, experiment, "experiment")
    new = require_member(new_status, ExperimentStatus, "status")
    return move_status(session, experiment, new, ALLOWED)


def start(session: Session, experiment: Experiment | int) -> Experiment:
    """pending or paused → running (see :func:`transition`)."""
    return transition(session, experiment, S.RUNNING)


def pause(session: Session, experiment: Experiment | int) -> Experiment:
    """running → paused."""
    return transition(session, experiment, S.PAUSED)


def resume(session: Session, experiment: Experiment | int) -> Experiment:
    """paused → running."""
    return transition(session, experiment, S.RUNNING)


def cancel(session: Session, experiment: Experiment | int) -> Experiment:
    """pending or running → cancelled."""
    return transition(session, experiment, S.CANCELLED)


def fail(session: Session, experiment: Experiment | int) -> Experiment:
    """running → failed (:func:`finish` with ``status=FAILED`` also records results)."""
    return transition(session, experiment, S.FAILED)


def finish(
    session: Session,
    experiment: Experiment | int,
    metrics: Mapping[str, Any] | None = None,
    *,
    duration_seconds: float | None = None,
    status: ExperimentStatus | str = ExperimentStatus.COMPLETED,
) -> Experiment:
    """End ``experiment`` (completed by default; failed or cancelled also
    allowed) and record its results: ``metrics`` merged into the stored ones,
    ``best_epoch`` (highest ``val_accuracy`` in its curve, the earliest on a
    tie), ``total_epochs`` (epochs logged) and ``duration_seconds`` if given.
    The status change is checked and applied as in :func:`transition`, in the
    same statement as the results."""
    experiment = load(session, Experiment, experiment, "experiment")
    final = _final_status(status)
    results: dict[str, Any] = {
        "metrics": {**(experiment.metrics or {}), **(optional_object(metrics, "metrics") or {})}
    }
    if duration_seconds is not None:
        results["duration_seconds"] = require_non_negative(duration_seconds, "duration_seconds")
    results.update(_curve_summary())
    return move_status(session, experiment, final, ALLOWED, **results)


def _final_status(status: object) -> ExperimentStatus:
    final = require_member(status, ExperimentStatus, "status")
    if final not in FINAL:
        raise InvalidInput(f"status must be one of {', '.join(FINAL)} to finish (got {final})")
    return final


def _curve_summary() -> dict[str, Any]:
    """``best_epoch`` and ``total_epochs`` of the experiment being updated, as
    subqueries of the UPDATE: read in the statement that stores them."""
    of_experiment = TrainingRun.experiment_id == Experiment.id
    best = (
        select(TrainingRun.epoch)
        .where(of_experiment)
        .order_by(TrainingRun.val_accuracy.desc(), TrainingRun.epoch)
        .limit(1)
        .scalar_subquery()
    )
    total = select(func.count()).select_from(TrainingRun).where(of_experiment).scalar_subquery()
    return {"best_epoch": best, "total_epochs": total}


def _optional_notes(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"notes must be a string or None (got {type(value).__name__})")
    return value
