"""Epoch rows checked on the training machine, and the buffer that batches them.

A row is checked when it is logged, as the store checks it in-process (the four
fixed metrics, optional numbers, extra metrics by name): a NaN or a misspelt
metric name raises :class:`~pfd_db.errors.InvalidInput` at the call that made it,
not later at a flush. Numbers may be anything ``float()`` takes (NumPy and
PyTorch scalars included) and are sent as JSON floats.
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections.abc import Mapping
from typing import Any

from pfd_db.errors import InvalidInput

FIXED = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
OPTIONAL = ("learning_rate", "duration_seconds")
FIXED_NAMES = frozenset({"epoch", *FIXED, *OPTIONAL, "checkpoint_path"})
METRIC_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
PATH_MAX = 500
EPOCH_MAX = 2**31 - 1

Row = dict[str, Any]
ExperimentRef = int | Mapping[str, Any]


def id_of_experiment(experiment: ExperimentRef) -> int:
    """The id of ``experiment``: an id, or an experiment the client returned."""
    value = experiment.get("id") if isinstance(experiment, Mapping) else experiment
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("experiment: give its id, or the experiment the client returned")
    return value


def epoch_row(values: Mapping[str, Any], where: str = "") -> Row:
    """The JSON row of one epoch from ``values`` (the keys of ``log_epochs``' rows);
    :class:`InvalidInput` naming the field (after ``where``, e.g. ``rows[3].``)."""
    unknown = sorted(set(values) - FIXED_NAMES - {"metrics"})
    if unknown:
        raise InvalidInput(f"{where}{unknown[0]}: not a field of an epoch (put it in metrics)")
    row: Row = {"epoch": _epoch(values.get("epoch"), f"{where}epoch")}
    for name in FIXED:
        if name not in values:
            raise InvalidInput(f"{where}{name}: required")
        row[name] = _finite(values[name], f"{where}{name}")
    for name in OPTIONAL:
        if values.get(name) is not None:
            row[name] = _finite(values[name], f"{where}{name}")
    path = values.get("checkpoint_path")
    if path is not None:
        if not isinstance(path, str) or len(path) > PATH_MAX or "\x00" in path:
            raise InvalidInput(f"{where}checkpoint_path: text of at most {PATH_MAX} characters")
        row["checkpoint_path"] = path
    metrics = values.get("metrics")
    if metrics is not None:
        row["metrics"] = _metrics(metrics, f"{where}metrics")
    return row


def _epoch(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"{field}: give a whole number, not {value!r}")
    try:
        epoch = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidInput(f"{field}: give a whole number, not {type(value).__name__}") from None
    if not 0 <= epoch <= EPOCH_MAX:
        raise InvalidInput(f"{field}: must be between 0 and {EPOCH_MAX} (got {epoch})")
    return epoch


def _finite(value: object, field: str) -> float:
    if isinstance(value, bool | str | bytes):
        raise InvalidInput(f"{field}: give a number, not {type(value).__name__}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(f"{field}: give a number, not {type(value).__name__}") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{field}: must be a finite number (got {number})")
    return number


def _metrics(metrics: object, field: str) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise InvalidInput(f"{field}: give an object of metric names and numbers")
    checked: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not METRIC_NAME.fullmatch(name):
            raise InvalidInput(
                f"{field}: metric names are 1 to 100 ASCII letters, digits, '_', '.' or '-'"
                f" (got {name!r})"
            )
        if name in FIXED_NAMES:
            raise InvalidInput(f"{field}.{name}: a fixed column; give it as a field of the epoch")
        checked[name] = _finite(value, f"{field}.{name}")
    return checked


class EpochBuffer:
    """Epochs logged but not yet sent, per experiment, in the order logged.

    An epoch logged again before it was sent replaces the buffered row (the
    server would replace it too), so a batch never holds an epoch twice.
    Thread-safe: a data loader's thread may log while the main thread flushes.
    """

    def __init__(self) -> None:
        self._rows: dict[int, dict[int, Row]] = {}
        self._count = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def add(self, experiment_id: int, row: Row) -> int:
        """Buffer ``row``; returns how many rows are buffered now."""
        with self._lock:
            rows = self._rows.setdefault(experiment_id, {})
            if row["epoch"] not in rows:
                self._count += 1
            rows[row["epoch"]] = row
            return self._count

    def batches(self, size: int, experiment_id: int | None = None) -> list[tuple[int, list[Row]]]:
        """``(experiment id, rows)`` of at most ``size`` rows each, of every buffered
        epoch (or only ``experiment_id``'s); they stay buffered until :meth:`sent`."""
        with self._lock:
            chosen = (
                self._rows.items()
                if experiment_id is None
                else [(experiment_id, self._rows.get(experiment_id, {}))]
            )
            out = []
            for key, rows in chosen:
                values = list(rows.values())
                out += [(key, values[i : i + size]) for i in range(0, len(values), size)]
            return out

    def sent(self, experiment_id: int, rows: list[Row]) -> None:
        """Forget ``rows`` (sent, or refused for good); a row logged again since
        the batch was taken stays, to be sent next."""
        with self._lock:
            buffered = self._rows.get(experiment_id)
            if buffered is None:
                return
            for row in rows:
                if buffered.get(row["epoch"]) is row:
                    del buffered[row["epoch"]]
                    self._count -= 1
            if not buffered:
                del self._rows[experiment_id]
