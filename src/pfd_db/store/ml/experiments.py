"""Experiments: create them, move them through their status machine, log their
training curves (one epoch, or thousands at once), finish and delete them.

Status changes are conditional updates (``... WHERE id = :id AND status =
:expected``), so two sessions can never both make a change from the same state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache, partial
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Dialect,
    Executable,
    Select,
    Table,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Dataset, Experiment, ExperimentStatus, HPOCampaign, TrainingRun, User
from pfd_db.store.ml import tags
from pfd_db.store.status import move_status, reread
from pfd_db.store.validation import (
    optional_finite,
    optional_object,
    optional_text,
    require_count,
    require_finite,
    require_member,
    require_non_negative,
    require_object,
    require_str,
    require_text,
)
from pfd_db.store.writes import add_unique, id_of, load, require_id, unread_id
from pfd_db.types import utcnow
from pfd_db.values import shown

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
PER_ROW = ("epoch", *METRICS, *OPTIONAL_NUMBERS, "checkpoint_path", "metrics")
EPOCH_KEYS = frozenset(PER_ROW)
SHARED = ("experiment_id", "created_at", "updated_at")  # the same for every row of a call
COLUMNS = (*PER_ROW, *SHARED)
REPLACED = (*PER_ROW[1:], "updated_at")
CONFLICT_KEY = ["experiment_id", "epoch"]  # the unique index ix_training_runs_experiment_epoch
EPOCH_BATCH = 2_500  # rows per statement: bounds the memory a huge call takes
CURVE_FIXED = (*METRICS, *OPTIONAL_NUMBERS)  # curve_columns' columns besides epoch
FIXED_FIELDS = frozenset({"epoch", *CURVE_FIXED, "checkpoint_path"})  # no extra metric's name
METRIC_NAME_MAX = 100
METRIC_NAME = re.compile(rf"[A-Za-z0-9_.\-]{{1,{METRIC_NAME_MAX}}}")
EXTRA_METRICS_TEXT = JSON(none_as_null=True)  # SQLite: extra metrics as JSON text, None as NULL
EXTRA_METRICS_JSONB = postgresql.JSONB(none_as_null=True)  # PostgreSQL: None as NULL
EXTRA_METRICS_ARRAY = postgresql.ARRAY(EXTRA_METRICS_JSONB)


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
    metrics: Mapping[str, float] | None = None,
) -> None:
    """Record one epoch of ``experiment``'s curve: the four fixed metrics, and any
    others in ``metrics`` (``{"f1": 0.81}``: names of ASCII letters, digits,
    ``_ . -``, at most 100 characters, other than the fixed columns' names;
    finite numbers). Logging an epoch again (after a resume, say) replaces all
    its values, extra metrics included; the row keeps its ``created_at``.

    The path a training loop takes once per epoch: one statement prepared once
    per dialect, and nothing read back (read the curve with :func:`curve` or
    :func:`curve_columns`). :class:`InvalidInput` naming the field, before
    anything is written.
    """
    experiment_id = require_id(session, Experiment, experiment, "experiment")
    writer = _writer_for(session.get_bind().dialect)
    row = _checked(
        writer.document,
        epoch,
        train_loss,
        val_loss,
        train_accuracy,
        val_accuracy,
        learning_rate,
        duration_seconds,
        checkpoint_path,
        metrics,
    )
    writer.write(session.connection(), experiment_id, [row])
    _forget_curve(session, experiment_id)


def log_epochs(
    session: Session, experiment: Experiment | int, rows: Iterable[Mapping[str, Any]]
) -> int:
    """Record many epochs of ``experiment``'s curve at once; returns how many.

    The fast path for bulk loads. Each row has ``epoch`` (an int, at least 0),
    ``train_loss``, ``val_loss``, ``train_accuracy`` and ``val_accuracy``
    (finite numbers), and may have ``learning_rate``, ``duration_seconds``,
    ``checkpoint_path`` and ``metrics`` (other metrics, as in :func:`log_epoch`).
    All rows are checked first (an epoch may appear only once): the first bad
    one raises :class:`InvalidInput` naming its index and field, and nothing is
    written. Then each batch of ``EPOCH_BATCH`` rows is one ``INSERT ... ON
    CONFLICT (experiment_id, epoch) DO UPDATE``, so epochs already logged are
    replaced (keeping their ``created_at``): on SQLite the driver's own
    executemany of one prepared statement, on PostgreSQL one statement that
    unnests an array per column.
    """
    experiment_id = require_id(session, Experiment, experiment, "experiment")
    writer = _writer_for(session.get_bind().dialect)
    checked = _valid_rows(rows, writer.document)
    if not checked:
        return 0
    connection = session.connection()
    for start in range(0, len(checked), EPOCH_BATCH):
        writer.write(connection, experiment_id, checked[start : start + EPOCH_BATCH])
    _forget_curve(session, experiment_id)
    return len(checked)


def curve(session: Session, experiment: Experiment | int) -> list[TrainingRun]:
    """The experiment's training runs, by epoch, as stored now (each run's
    ``metrics`` holds its extra metrics, or None)."""
    experiment = load(session, Experiment, experiment, "experiment")
    return list(
        session.scalars(
            select(TrainingRun)
            .where(TrainingRun.experiment_id == experiment.id)
            .order_by(TrainingRun.epoch),
            execution_options={"populate_existing": True},
        )
    )


def curve_columns(
    session: Session, experiment: Experiment | int, metrics: Iterable[str] | None = None
) -> dict[str, list[Any]]:
    """The experiment's curve as columns, ready to plot: ``{"epoch": [0, 1, ...],
    "val_loss": [...], ...}``, one value per epoch in epoch order, ``None`` where
    an epoch has no value.

    Without ``metrics``: ``epoch``, the fixed columns (``train_loss``,
    ``val_loss``, ``train_accuracy``, ``val_accuracy``, ``learning_rate``,
    ``duration_seconds``), then every extra metric any epoch has, by name. With
    ``metrics`` (names of fixed columns or extra metrics): ``epoch`` and those, in
    the order given; a name no epoch has is a column of ``None``. One select of
    the columns asked for (given an id, the experiment is read only when it has
    no epochs, to tell an empty curve from a missing experiment); builds no
    objects. Reads only.
    """
    experiment_id = unread_id(session, Experiment, experiment, "experiment")
    wanted = None if metrics is None else _wanted_metrics(metrics)
    fixed = CURVE_FIXED if wanted is None else tuple(n for n in wanted if n in CURVE_FIXED)
    extra = wanted is None or len(fixed) < len(wanted)
    rows = session.connection().execute(
        _curve_select(fixed, extra), {"experiment_id": experiment_id}
    )
    stored = list(zip(*rows.all(), strict=True))
    if not stored:
        if not isinstance(experiment, Experiment):  # no epochs, or no such experiment?
            load(session, Experiment, experiment_id, "experiment")
        stored = [()] * (1 + len(fixed) + extra)
    columns = {name: list(values) for name, values in zip(("epoch", *fixed), stored, strict=False)}
    if extra:
        documents: Sequence[dict[str, float] | None] = stored[-1]
        if wanted is None:
            names: Iterable[str] = sorted(set().union(*(doc for doc in documents if doc)))
        else:
            names = (name for name in wanted if name not in CURVE_FIXED)
        for name in names:
            columns[name] = [doc.get(name) if doc else None for doc in documents]
    if wanted is None:
        return columns
    return {"epoch": columns["epoch"], **{name: columns[name] for name in wanted}}


def _forget_curve(session: Session, experiment_id: int) -> None:
    """Expire the session's copy of the experiment's runs, changed by a statement."""
    held = session.identity_map.get(session.identity_key(Experiment, experiment_id))
    if held is not None:
        session.expire(held, ["training_runs"])


def _wanted_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    if isinstance(metrics, str) or not isinstance(metrics, Iterable):
        raise InvalidInput("metrics must be a list of metric names")
    wanted = tuple(metrics)
    for name in wanted:
        if name == "checkpoint_path":
            raise InvalidInput("metrics: checkpoint_path is not a metric (see curve())")
        if name != "epoch" and name not in CURVE_FIXED:
            _require_metric_name(name, "metrics")
    return tuple(dict.fromkeys(n for n in wanted if n != "epoch"))


@lru_cache(maxsize=256)
def _curve_select(fixed: tuple[str, ...], extra: bool) -> Select[Any]:
    """``SELECT epoch, <fixed>[, metrics] FROM training_runs WHERE experiment_id = :id
    ORDER BY epoch`` (served by the unique index on (experiment_id, epoch))."""
    table = _training_runs()
    columns = [table.c.epoch, *(table.c[name] for name in fixed)]
    if extra:
        columns.append(table.c.metrics)
    return (
        select(*columns)
        .where(table.c.experiment_id == bindparam("experiment_id"))
        .order_by(table.c.epoch)
    )


# --- writing epochs, per dialect -----------------------------------------------------

Row = tuple[Any, ...]
"""One epoch, checked: its values in ``PER_ROW`` order, extra metrics as the
driver takes them."""


@dataclass(frozen=True)
class _Writer:
    """How epochs reach ``training_runs`` through one dialect, prepared once."""

    write: Callable[[Connection, int, list[Row]], None]
    """Upsert rows of one experiment, all in one statement."""
    document: Callable[[Mapping[str, float]], Any]
    """Extra metrics as :attr:`write` takes them."""


@lru_cache(maxsize=16)
def _writer_for(dialect: Dialect) -> _Writer:
    """The writer for ``dialect`` (an engine's, with its own JSON serializer)."""
    if dialect.name == "postgresql":
        return _Writer(_write_postgresql, _as_is)
    document = EXTRA_METRICS_TEXT.dialect_impl(dialect).bind_processor(dialect)
    stamp = _training_runs().c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert document is not None and stamp is not None  # SQLite stores both as text
    return _Writer(partial(_write_sqlite, stamp), document)


def _as_is(metrics: Mapping[str, float]) -> Mapping[str, float]:
    return metrics


def _write_sqlite(
    stamp: Callable[[datetime], Any], connection: Connection, experiment_id: int, rows: list[Row]
) -> None:
    """The driver's own executemany of :func:`_sqlite_upsert`, rows as tuples; the
    values every row shares (the experiment, the two timestamps) converted once."""
    now = stamp(utcnow())
    owner, shared = (experiment_id,), (now, now)
    if len(rows) == 1:
        connection.exec_driver_sql(_sqlite_upsert(connection.dialect), owner + rows[0] + shared)
    else:
        upsert = _sqlite_upsert(connection.dialect)
        connection.exec_driver_sql(upsert, [owner + row + shared for row in rows])


def _write_postgresql(connection: Connection, experiment_id: int, rows: list[Row]) -> None:
    """One row: :func:`_values_upsert`. More: :func:`_unnest_upsert`, with one array
    per column. The shared values once either way."""
    now = utcnow()
    shared = {"experiment_id": experiment_id, "created_at": now, "updated_at": now}
    if len(rows) == 1:
        connection.execute(_values_upsert(), {**dict(zip(PER_ROW, rows[0], strict=True)), **shared})
        return
    columns = zip(*rows, strict=True)
    arrays = {name: list(column) for name, column in zip(PER_ROW, columns, strict=True)}
    connection.execute(_unnest_upsert(), {**arrays, **shared})


@lru_cache(maxsize=16)
def _sqlite_upsert(dialect: Dialect) -> str:
    """The upsert of one epoch compiled for ``dialect``, its parameters (``?``) in
    the order the rows' tuples have: experiment, ``PER_ROW``, the two timestamps."""
    table = _training_runs()
    order = ["experiment_id", *PER_ROW, "created_at", "updated_at"]
    compiled = _replacing(sqlite.insert(table).values({n: bindparam(n) for n in order})).compile(
        dialect=dialect
    )
    if compiled.positiontup != order:
        raise AssertionError(f"unexpected parameter order {compiled.positiontup}")
    return compiled.string


@cache
def _values_upsert() -> Executable:
    """``INSERT ... VALUES (...) ON CONFLICT (experiment_id, epoch) DO UPDATE`` of one row."""
    table = _training_runs()
    types = {name: table.c[name].type for name in COLUMNS} | {"metrics": EXTRA_METRICS_JSONB}
    values = {name: bindparam(name, type_=types[name]) for name in COLUMNS}
    return _replacing(postgresql.insert(table).values(values).inline())  # inline: no RETURNING


@cache
def _unnest_upsert() -> Executable:
    """``INSERT ... SELECT * FROM unnest(:epoch, :train_loss, ...) ON CONFLICT
    (experiment_id, epoch) DO UPDATE``: a fixed statement of 12 parameters,
    whatever the number of rows, the shared columns added once."""
    table = _training_runs()
    arrays = [bindparam(name, type_=_array_of(name, table.c[name].type)) for name in PER_ROW]
    batch = func.unnest(*arrays).table_valued(*PER_ROW).render_derived()
    shared = {name: bindparam(name, type_=table.c[name].type) for name in SHARED}
    rows = select(*(shared[name] if name in shared else batch.c[name] for name in COLUMNS))
    return _replacing(postgresql.insert(table).from_select(COLUMNS, rows))


def _replacing(
    statement: postgresql.Insert | sqlite.Insert,
) -> postgresql.Insert | sqlite.Insert:
    """``statement`` with ON CONFLICT (experiment_id, epoch) DO UPDATE of the values."""
    return statement.on_conflict_do_update(
        index_elements=CONFLICT_KEY,
        set_={name: statement.excluded[name] for name in REPLACED},
    )


def _training_runs() -> Table:
    return TrainingRun.metadata.tables[TrainingRun.__tablename__]


def _array_of(name: str, item: TypeEngine[Any]) -> TypeEngine[Any]:
    """The array type that carries column ``name`` (extra metrics: None as NULL)."""
    return EXTRA_METRICS_ARRAY if name == "metrics" else postgresql.ARRAY(item)


# --- checks ------------------------------------------------------------------------


def _valid_rows(
    rows: Iterable[Mapping[str, Any]], document: Callable[[Mapping[str, float]], Any]
) -> list[Row]:
    """The rows, checked, or InvalidInput naming the first bad row's index and field."""
    if isinstance(rows, Mapping) or not isinstance(rows, Iterable):
        raise InvalidInput("rows must be a list of mappings of column names to values")
    checked: list[Row] = []
    first_seen: dict[int, int] = {}
    for index, values in enumerate(rows):
        try:
            row = _valid_epoch(values, document)
        except InvalidInput as exc:
            raise InvalidInput(f"row {index}: {exc}") from None
        earlier = first_seen.setdefault(row[0], index)
        if earlier != index:
            raise InvalidInput(f"row {index}: epoch {row[0]} repeats row {earlier}")
        checked.append(row)
    return checked


def _valid_epoch(values: Mapping[str, Any], document: Callable[[Mapping[str, float]], Any]) -> Row:
    """The epoch's columns, checked; InvalidInput naming the first bad field."""
    if not isinstance(values, Mapping):
        raise InvalidInput("must be a mapping of column names to values")
    if not EPOCH_KEYS.issuperset(values):
        unknown = sorted(map(str, set(values) - EPOCH_KEYS))
        raise InvalidInput(f"unknown fields {unknown} (expected some of {sorted(EPOCH_KEYS)})")
    get = values.get
    return _checked(document, *(get(name) for name in PER_ROW))


def _checked(
    document: Callable[[Mapping[str, float]], Any],
    epoch: object,
    train_loss: object,
    val_loss: object,
    train_accuracy: object,
    val_accuracy: object,
    learning_rate: object,
    duration_seconds: object,
    checkpoint_path: object,
    metrics: object,
) -> Row:
    extra = _valid_extra_metrics(metrics)
    return (
        require_count(epoch, "epoch"),
        require_finite(train_loss, "train_loss"),
        require_finite(val_loss, "val_loss"),
        require_finite(train_accuracy, "train_accuracy"),
        require_finite(val_accuracy, "val_accuracy"),
        optional_finite(learning_rate, "learning_rate"),
        optional_finite(duration_seconds, "duration_seconds"),
        optional_text(checkpoint_path, "checkpoint_path", PATH_MAX),
        None if extra is None else document(extra),
    )


def _valid_extra_metrics(metrics: object) -> dict[str, float] | None:
    """``metrics`` checked: names (see :data:`METRIC_NAME`) to finite numbers;
    None when there are none."""
    if metrics is None:
        return None
    if not isinstance(metrics, Mapping):
        raise InvalidInput(
            f"metrics must be a mapping of metric names to numbers (got {type(metrics).__name__})"
        )
    checked = {
        _require_metric_name(name, "metrics"): require_finite(value, f"metrics[{name!r}]")
        for name, value in metrics.items()
    }
    return checked or None


def _require_metric_name(name: object, field: str) -> str:
    if not isinstance(name, str) or not METRIC_NAME.fullmatch(name):
        raise InvalidInput(
            f"{field} has the name {shown(name)}: a metric name is 1 to {METRIC_NAME_MAX} ASCII "
            "letters, digits, '_', '.' or '-'"
        )
    if name in FIXED_FIELDS:
        raise InvalidInput(f"{field} has the name {name!r}, a column of its own: pass it as {name}")
    return name


def _optional_notes(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"notes must be a string or None (got {type(value).__name__})")
    return value
