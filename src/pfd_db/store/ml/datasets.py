"""Datasets and their signals: register, find, delete, bulk-load signals, count them.

A dataset names the fault types and severity levels its signals may carry; the
signals themselves are loaded in bulk by :func:`add_signals`, which checks every
row against those lists before it writes any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ScalarSelect, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict, InvalidInput, NotFound
from pfd_db.models import Dataset, Experiment, HPOCampaign, NASCampaign, Signal, User
from pfd_db.store.validation import (
    optional_finite,
    optional_object,
    optional_text,
    require_count,
    require_identifiers,
    require_items,
    require_str,
    require_text,
)
from pfd_db.store.writes import add_unique, id_of, load
from pfd_db.types import utcnow
from pfd_db.values import shown

NAME_MAX = 255
DESCRIPTION_MAX = 1000
PATH_MAX = 500
SIGNAL_ID_MAX = 100
SIGNAL_BATCH = 5_000
SIGNAL_TEXT = ("signal_id", "fault_class", "severity", "file_path")
SIGNAL_NUMBERS = ("rms", "kurtosis", "dominant_frequency")
SIGNAL_KEYS = frozenset({*SIGNAL_TEXT, *SIGNAL_NUMBERS})
SIGNALS = Signal.metadata.tables[Signal.__tablename__]


# --- datasets --------------------------------------------------------------------


def register_dataset(
    session: Session,
    name: str,
    fault_types: Iterable[str],
    severity_levels: Iterable[str],
    file_path: str,
    *,
    num_signals: int = 0,
    description: str | None = None,
    meta_data: Mapping[str, Any] | None = None,
    created_by: User | int | None = None,
) -> Dataset:
    """A new dataset. Fault types and severity levels are non-empty lists of
    distinct lowercase names (``oil_whirl``); ``meta_data`` is a JSON object.
    :class:`InvalidInput` naming the field, or :class:`Conflict` if the name is
    taken; either way nothing is written."""
    dataset = Dataset(
        name=require_text(name, "name", NAME_MAX),
        fault_types=require_identifiers(fault_types, "fault_types"),
        severity_levels=require_identifiers(severity_levels, "severity_levels"),
        file_path=require_text(file_path, "file_path", PATH_MAX),
        num_signals=require_count(num_signals, "num_signals"),
        description=optional_text(description, "description", DESCRIPTION_MAX),
        meta_data=optional_object(meta_data, "meta_data"),
        created_by=id_of(session, User, created_by, "created_by"),
    )
    add_unique(
        session,
        dataset,
        {Dataset.name: dataset.name},
        conflict=f"a dataset named {dataset.name!r} already exists",
    )
    return dataset


def list_datasets(session: Session) -> list[Dataset]:
    """Every dataset, by name."""
    return list(session.scalars(select(Dataset).order_by(Dataset.name)))


def get_dataset(session: Session, name: str) -> Dataset:
    """The dataset called ``name``; :class:`NotFound` naming it otherwise."""
    name = require_str(name, "name")
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise NotFound(f"no dataset named {name!r}")
    return dataset


def delete_dataset(session: Session, dataset: Dataset | int) -> None:
    """Delete ``dataset`` and, through the database's cascade, its signals.

    Refused with :class:`Conflict` naming how many experiments, HPO campaigns
    and NAS campaigns still use it. The foreign keys (ON DELETE RESTRICT) are
    the real guard: a user added by another session after the count is caught
    by them, and reported the same way.
    """
    dataset = load(session, Dataset, dataset, "dataset")
    _refuse_if_in_use(session, dataset)
    try:
        with session.begin_nested():
            session.delete(dataset)
    except IntegrityError:
        _refuse_if_in_use(session, dataset)
        raise


def _refuse_if_in_use(session: Session, dataset: Dataset) -> None:
    experiments, hpo, nas = session.execute(
        select(
            _users_of(dataset, Experiment),
            _users_of(dataset, HPOCampaign),
            _users_of(dataset, NASCampaign),
        )
    ).one()
    if experiments or hpo or nas:
        raise Conflict(
            f"dataset {dataset.name!r} is still used by {experiments} experiment(s), "
            f"{hpo} HPO campaign(s) and {nas} NAS campaign(s); delete those first"
        )


def _users_of(
    dataset: Dataset, model: type[Experiment] | type[HPOCampaign] | type[NASCampaign]
) -> ScalarSelect[int]:
    """``(SELECT count(*) FROM model's table WHERE dataset_id = dataset.id)``."""
    return (
        select(func.count())
        .select_from(model)
        .where(model.dataset_id == dataset.id)
        .scalar_subquery()
    )


# --- signals ---------------------------------------------------------------------


def add_signals(session: Session, dataset: Dataset | int, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert the signal rows (thousands per call) and return how many.

    Each row has ``signal_id`` and ``fault_class`` (one of the dataset's fault
    types), and may have ``severity`` (one of its severity levels),
    ``file_path``, ``rms``, ``kurtosis`` and ``dominant_frequency`` (finite
    numbers). Every row is checked before any is written: the first bad one
    raises :class:`InvalidInput` naming its index and field. The rows go in by
    Core executemany, ``SIGNAL_BATCH`` at a time; then ``dataset.num_signals``
    is set to the number of signals stored. The dataset's row is locked
    meanwhile, so concurrent loads into one dataset count each other's rows.
    """
    dataset = load(session, Dataset, dataset, "dataset")
    checked = _valid_signals(dataset, rows)
    if not checked:
        return 0
    session.flush()
    _lock(session, dataset)
    now = utcnow()
    shared = {"dataset_id": dataset.id, "created_at": now, "updated_at": now}
    for start in range(0, len(checked), SIGNAL_BATCH):
        batch = checked[start : start + SIGNAL_BATCH]
        session.execute(insert(SIGNALS), [{**row, **shared} for row in batch])
    dataset.num_signals = _stored_signals(session, dataset)
    session.flush()
    return len(checked)


def fault_class_counts(session: Session, dataset: Dataset | int) -> dict[str, int]:
    """How many stored signals of ``dataset`` have each fault class: every one of
    its fault types, in their order (0 when it has none), then any other class
    found."""
    dataset = load(session, Dataset, dataset, "dataset")
    found = session.execute(
        select(Signal.fault_class, func.count())
        .where(Signal.dataset_id == dataset.id)
        .group_by(Signal.fault_class)
    )
    counts = dict.fromkeys(dataset.fault_types, 0)
    counts.update({fault_class: count for fault_class, count in found})
    return counts


def _valid_signals(dataset: Dataset, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows, checked, or InvalidInput naming the first bad row's index and field."""
    checked: list[dict[str, Any]] = []
    for index, row in enumerate(require_items(rows, "rows")):
        try:
            checked.append(_valid_signal(dataset, row))
        except InvalidInput as exc:
            raise InvalidInput(f"row {index}: {exc}") from None
    return checked


def _valid_signal(dataset: Dataset, row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with every column present; InvalidInput naming the first bad field."""
    if not isinstance(row, Mapping):
        raise InvalidInput("must be a mapping of column names to values")
    if not SIGNAL_KEYS.issuperset(row):
        unknown = sorted(set(row) - SIGNAL_KEYS)
        raise InvalidInput(f"unknown fields {unknown} (expected some of {sorted(SIGNAL_KEYS)})")
    checked: dict[str, Any] = {
        "signal_id": require_text(row.get("signal_id"), "signal_id", SIGNAL_ID_MAX),
        "fault_class": _one_of(row.get("fault_class"), dataset.fault_types, "fault_class"),
        "severity": _optional_one_of(row.get("severity"), dataset.severity_levels, "severity"),
        "file_path": optional_text(row.get("file_path"), "file_path", PATH_MAX),
    }
    for name in SIGNAL_NUMBERS:
        checked[name] = optional_finite(row.get(name), name)
    return checked


def _lock(session: Session, dataset: Dataset) -> None:
    """Lock the dataset's row until the transaction ends (on SQLite, FOR UPDATE
    takes the database's write lock: see pfd_db.transactions)."""
    locked = session.scalar(select(Dataset.id).where(Dataset.id == dataset.id).with_for_update())
    if locked is None:
        raise NotFound(f"dataset {dataset.name!r} no longer exists")


def _stored_signals(session: Session, dataset: Dataset) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Signal).where(Signal.dataset_id == dataset.id)
        )
        or 0
    )


# --- field checks ------------------------------------------------------------------


def _one_of(value: object, allowed: list[str], field: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"{field} must be one of {', '.join(allowed)} (got {shown(value)})")
    return str(value)


def _optional_one_of(value: object, allowed: list[str], field: str) -> str | None:
    return None if value is None else _one_of(value, allowed, field)
