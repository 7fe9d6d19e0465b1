"""Training curves: log an experiment's epochs (one, or thousands at once) and
read them back, as runs or as columns ready to plot.

Epochs are written by the shared bulk writer (:mod:`pfd_db.store.bulk`): logging
an epoch again replaces its values (``ON CONFLICT (experiment_id, epoch) DO
UPDATE``), the one place a duplicate is expected and harmless.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput
from pfd_db.models import Experiment, TrainingRun
from pfd_db.store.bulk import Bulk, Row, writer_for
from pfd_db.store.validation import (
    optional_finite,
    optional_text,
    require_count,
    require_finite,
)
from pfd_db.store.writes import load, require_id, unread_id
from pfd_db.types import utcnow
from pfd_db.values import shown

PATH_MAX = 500
METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
OPTIONAL_NUMBERS = ("learning_rate", "duration_seconds")
PER_ROW = ("epoch", *METRICS, *OPTIONAL_NUMBERS, "checkpoint_path", "metrics")
EPOCH_KEYS = frozenset(PER_ROW)
SHARED = ("experiment_id", "created_at", "updated_at")  # the same for every row of a call
COLUMNS = (*PER_ROW, *SHARED)
EPOCH_BATCH = 2_500  # rows per statement: bounds the memory a huge call takes
CURVE_FIXED = (*METRICS, *OPTIONAL_NUMBERS)  # curve_columns' columns besides epoch
FIXED_FIELDS = frozenset({"epoch", *CURVE_FIXED, "checkpoint_path"})  # no extra metric's name
METRIC_NAME_MAX = 100
METRIC_NAME = re.compile(rf"[A-Za-z0-9_.\-]{{1,{METRIC_NAME_MAX}}}")
EPOCHS = Bulk(
    table=TrainingRun.metadata.tables[TrainingRun.__tablename__],
    columns=PER_ROW,
    shared=SHARED,
    documents=frozenset({"metrics"}),
    batch=EPOCH_BATCH,
    conflict=("experiment_id", "epoch"),  # the unique index ix_training_runs_experiment_epoch
)
"""Epochs of one experiment, written in bulk; an epoch logged again is replaced."""


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
    writer = writer_for(EPOCHS, session.get_bind().dialect)
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
    writer.write(session.connection(), [row], _shared(experiment_id))
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
    writer = writer_for(EPOCHS, session.get_bind().dialect)
    checked = _valid_rows(rows, writer.document)
    if not checked:
        return 0
    writer.write(session.connection(), checked, _shared(experiment_id))
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


def _shared(experiment_id: int) -> dict[str, Any]:
    now = utcnow()
    return {"experiment_id": experiment_id, "created_at": now, "updated_at": now}


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
    table = EPOCHS.table
    columns = [table.c.epoch, *(table.c[name] for name in fixed)]
    if extra:
        columns.append(table.c.metrics)
    return (
        select(*columns)
        .where(table.c.experiment_id == bindparam("experiment_id"))
        .order_by(table.c.epoch)
    )


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
