"""Experiments: create them, move them through their status machine, log their
training curves (one epoch, or thousands at once), finish and delete them.

Status changes are conditional updates (``... WHERE id = :id AND status =
:expected``), so two sessions can never both make a change from the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from sqlalchemy import Executable, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Dataset, Experiment, ExperimentStatus, HPOCampaign, TrainingRun, User
from pfd_db.store import tags
from pfd_db.store.status import move_status, reread
from pfd_db.store.validation import (
    optional_finite,
    optional_object,
    optional_text,
    require_count,
    require_finite,
    require_member,
    require_object,
    require_text,
)
from pfd_db.store.writes import add_unique, id_of, insert_for, load
from pfd_db.types import utcnow

NAME_MAX = 255
MODEL_TYPE_MAX = 50
PATH_MAX = 500

S = ExperimentStatus
ALLOWED: dict[ExperimentStatus, frozenset[ExperimentStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.PAUSED, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.PAUSED: frozenset({S.RUNNING}),
}
FINAL = (S.COMPLETED, S.FAILED, S.CANCELLED)

METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
OPTIONAL_NUMBERS = ("learning_rate", "duration_seconds")
EPOCH_KEYS = frozenset({"epoch", *METRICS, *OPTIONAL_NUMBERS, "checkpoint_path"})
PER_ROW = ("epoch", *METRICS, *OPTIONAL_NUMBERS, "checkpoint_path")
SHARED = ("experiment_id", "created_at", "updated_at")  # the same for every row of a call
COLUMNS = (*PER_ROW, *SHARED)
REPLACED = (*METRICS, *OPTIONAL_NUMBERS, "checkpoint_path", "updated_at")
CONFLICT_KEY = ["experiment_id", "epoch"]  # the unique index ix_training_runs_experiment_epoch
EPOCH_BATCH = 2_500  # x 11 columns = 27 500 bound parameters, under SQLite's 32 766


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
    experiment = session.scalar(select(Experiment).where(Experiment.name == name))
    if experiment is None:
        raise NotFound(f"no experiment named {name!r}")
    return experiment


def delete_experiment(session: Session, experiment: Experiment | int) -> None:
    """Delete ``experiment``; the database cascades to its training runs,
    explanations and tag links.

    The experiment's row is locked, then its tags are detached
    (:func:`pfd_db.store.tags.detach_all`: links locked in id order, and the
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
        results["duration_seconds"] = _non_negative(duration_seconds, "duration_seconds")
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


# --- training curves ----------------------------------------------------------------


def log_epoch(
    session: Session,
    experiment: Experiment | int,
    epoch: int,
    train_loss: float,
    val_loss: float,
    train_accuracy: float,
    val_accuracy: float,
    *,
    learning_rate: float | None = None,
    duration_seconds: float | None = None,
    checkpoint_path: str | None = None,
) -> TrainingRun:
    """Record one epoch of ``experiment``'s curve. Logging an epoch again (after
    a resume, say) replaces its values; the row keeps its ``created_at``."""
    experiment = load(session, Experiment, experiment, "experiment")
    row = _valid_epoch(
        {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "train_accuracy": train_accuracy,
            "val_accuracy": val_accuracy,
            "learning_rate": learning_rate,
            "duration_seconds": duration_seconds,
            "checkpoint_path": checkpoint_path,
        }
    )
    session.flush()
    upsert = _replacing(insert_for(session, TrainingRun).values({**row, **_owner(experiment)}))
    run = session.scalars(
        upsert.returning(TrainingRun), execution_options={"populate_existing": True}
    ).one()
    session.expire(experiment, ["training_runs"])
    return run


def log_epochs(
    session: Session, experiment: Experiment | int, rows: Iterable[Mapping[str, Any]]
) -> int:
    """Record many epochs of ``experiment``'s curve at once; returns how many.

    The fast path for bulk loads. Each row has ``epoch`` (an int, at least 0),
    ``train_loss``, ``val_loss``, ``train_accuracy`` and ``val_accuracy``
    (finite numbers), and may have ``learning_rate``, ``duration_seconds`` and
    ``checkpoint_path``. All rows are checked first (an epoch may appear only
    once): the first bad one raises :class:`InvalidInput` naming its index and
    field, and nothing is written. Then each batch of ``EPOCH_BATCH`` rows is
    one ``INSERT ... ON CONFLICT (experiment_id, epoch) DO UPDATE`` statement,
    so epochs already logged are replaced (keeping their ``created_at``).
    """
    experiment = load(session, Experiment, experiment, "experiment")
    checked = _valid_rows(rows)
    if not checked:
        return 0
    session.flush()
    owner = _owner(experiment)
    dialect = session.get_bind().dialect.name
    for start in range(0, len(checked), EPOCH_BATCH):
        _write_batch(session, dialect, owner, checked[start : start + EPOCH_BATCH])
    session.expire(experiment, ["training_runs"])
    return len(checked)


def curve(session: Session, experiment: Experiment | int) -> list[TrainingRun]:
    """The experiment's training runs, by epoch, as stored now."""
    experiment = load(session, Experiment, experiment, "experiment")
    return list(
        session.scalars(
            select(TrainingRun)
            .where(TrainingRun.experiment_id == experiment.id)
            .order_by(TrainingRun.epoch),
            execution_options={"populate_existing": True},
        )
    )


def _owner(experiment: Experiment) -> dict[str, Any]:
    """The columns every row written now for ``experiment`` shares."""
    now = utcnow()
    return {"experiment_id": experiment.id, "created_at": now, "updated_at": now}


def _write_batch(
    session: Session, dialect: str, owner: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    if dialect == "postgresql":
        columns = {name: [row[name] for row in rows] for name in PER_ROW}
        session.execute(_bulk_upsert(dialect), {**columns, **owner})
    else:
        session.execute(_bulk_upsert(dialect), [{**row, **owner} for row in rows])


@cache
def _bulk_upsert(dialect: str) -> Executable:
    """One ``INSERT ... ON CONFLICT DO UPDATE`` statement for a whole batch.

    PostgreSQL receives one array per column that varies by row, unnests them
    and adds the shared columns once: a fixed statement of 11 parameters,
    whatever the batch size. On SQLite the statement has RETURNING so that
    SQLAlchemy's "insertmanyvalues" renders the batch as one multi-row VALUES
    (this driver gets it only for statements with RETURNING); ``EPOCH_BATCH``
    keeps that under the bound-parameter limit.
    """
    table = TrainingRun.metadata.tables[TrainingRun.__tablename__]
    if dialect == "postgresql":
        arrays = [bindparam(name, type_=postgresql.ARRAY(table.c[name].type)) for name in PER_ROW]
        batch = func.unnest(*arrays).table_valued(*PER_ROW).render_derived()
        shared = {name: bindparam(name, type_=table.c[name].type) for name in SHARED}
        rows = select(*(shared[name] if name in shared else batch.c[name] for name in COLUMNS))
        return _replacing(postgresql.insert(table).from_select(COLUMNS, rows))
    return (
        _replacing(sqlite.insert(table))
        .returning(table.c.id)
        .execution_options(insertmanyvalues_page_size=EPOCH_BATCH)
    )


def _replacing(
    statement: postgresql.Insert | sqlite.Insert,
) -> postgresql.Insert | sqlite.Insert:
    """``statement`` with ON CONFLICT (experiment_id, epoch) DO UPDATE of the values."""
    return statement.on_conflict_do_update(
        index_elements=CONFLICT_KEY,
        set_={name: statement.excluded[name] for name in REPLACED},
    )


# --- checks ------------------------------------------------------------------------


def _valid_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows, checked, or InvalidInput naming the first bad row's index and field."""
    checked: list[dict[str, Any]] = []
    first_seen: dict[int, int] = {}
    for index, row in enumerate(rows):
        try:
            epoch = _valid_epoch(row)
        except InvalidInput as exc:
            raise InvalidInput(f"row {index}: {exc}") from None
        earlier = first_seen.setdefault(epoch["epoch"], index)
        if earlier != index:
            raise InvalidInput(f"row {index}: epoch {epoch['epoch']} repeats row {earlier}")
        checked.append(epoch)
    return checked


def _valid_epoch(values: Mapping[str, Any]) -> dict[str, Any]:
    """The epoch's columns, checked; InvalidInput naming the first bad field."""
    if not isinstance(values, Mapping):
        raise InvalidInput("must be a mapping of column names to values")
    if not EPOCH_KEYS.issuperset(values):
        unknown = sorted(set(values) - EPOCH_KEYS)
        raise InvalidInput(f"unknown fields {unknown} (expected some of {sorted(EPOCH_KEYS)})")
    checked: dict[str, Any] = {"epoch": require_count(values.get("epoch"), "epoch")}
    for name in METRICS:
        checked[name] = require_finite(values.get(name), name)
    for name in OPTIONAL_NUMBERS:
        checked[name] = optional_finite(values.get(name), name)
    checked["checkpoint_path"] = optional_text(
        values.get("checkpoint_path"), "checkpoint_path", PATH_MAX
    )
    return checked


def _non_negative(value: object, field: str) -> float:
    number = require_finite(value, field)
    if number < 0:
        raise InvalidInput(f"{field} must be at least 0 (got {number})")
    return number


def _optional_notes(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"notes must be a string or None (got {type(value).__name__})")
    return value
