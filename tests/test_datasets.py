"""Datasets and signals: register, list, get, delete, bulk signals, counts; both dialects."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from pfd_db.errors import Conflict, InvalidInput, NotFound
from pfd_db.models import (
    Dataset,
    Experiment,
    HPOCampaign,
    HPOMethod,
    NASCampaign,
    Signal,
    User,
)
from pfd_db.store.ml import datasets
from pfd_db.store.ml.datasets import SIGNAL_BATCH
from probes import statements

FAULTS = ["normal", "inner_race", "outer_race"]
SEVERITIES = ["mild", "severe"]


@pytest.fixture
def dataset(db) -> Dataset:
    """A committed dataset with three fault types and two severity levels."""
    made = datasets.register_dataset(db, "cwru", FAULTS, SEVERITIES, "data/cwru.h5")
    db.commit()
    return made


def register(db, **overrides):
    arguments = {
        "name": "cwru",
        "fault_types": FAULTS,
        "severity_levels": SEVERITIES,
        "file_path": "data/cwru.h5",
    }
    arguments.update(overrides)
    return datasets.register_dataset(db, **arguments)


def count(db, model) -> int:
    """Rows of ``model`` this session sees (its own uncommitted writes included)."""
    return db.scalar(select(func.count()).select_from(model))


def signal_rows(n: int, faults=FAULTS) -> list[dict]:
    return [
        {
            "signal_id": f"sig-{i:06d}",
            "fault_class": faults[i % len(faults)],
            "severity": SEVERITIES[i % 2] if i % 5 else None,
            "file_path": f"signals/{i}.npy",
            "rms": 0.1 + i / 1e5,
            "kurtosis": 3 + (i % 7),
            "dominant_frequency": 59.0,
        }
        for i in range(n)
    ]


# --- register ------------------------------------------------------------------------


def test_register_stores_every_field(db):
    owner = User(username="ada", email="ada@example.com")
    db.add(owner)
    db.flush()
    made = register(
        db,
        created_by=owner.id,
        name="  cwru-12k  ",
        num_signals=40,
        description="Case Western, 12 kHz drive end",
        meta_data={"sampling_rate_hz": 12_000},
    )
    db.commit()
    db.expire_all()
    stored = db.get(Dataset, made.id)
    assert (stored.name, stored.fault_types, stored.severity_levels) == (
        "cwru-12k",
        FAULTS,
        SEVERITIES,
    )
    assert (stored.file_path, stored.num_signals, stored.description) == (
        "data/cwru.h5",
        40,
        "Case Western, 12 kHz drive end",
    )
    assert (stored.meta_data, stored.created_by) == ({"sampling_rate_hz": 12_000}, owner.id)
    assert stored.created_at.tzinfo is not None


def test_register_defaults_to_no_signals_and_no_metadata(db):
    made = register(db)
    assert (made.num_signals, made.meta_data, made.description, made.created_by) == (
        0,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": None}, "name"),
        ({"fault_types": []}, "fault_types"),
        ({"fault_types": "normal"}, "fault_types"),
        ({"fault_types": ["normal", "Inner Race"]}, "fault_types"),
        ({"fault_types": ["normal", "normal"]}, "fault_types"),
        ({"fault_types": ["normal", 3]}, "fault_types"),
        ({"severity_levels": []}, "severity_levels"),
        ({"severity_levels": None}, "severity_levels"),
        ({"severity_levels": ["9lives"]}, "severity_levels"),
        ({"file_path": ""}, "file_path"),
        ({"file_path": "x" * 501}, "file_path"),
        ({"num_signals": -1}, "num_signals"),
        ({"num_signals": 2.5}, "num_signals"),
        ({"description": "x" * 1001}, "description"),
        ({"meta_data": [1, 2]}, "meta_data"),
        ({"meta_data": {1: "one"}}, "meta_data"),
    ],
)
def test_register_refuses_bad_input_naming_the_field_and_writes_nothing(db, overrides, field):
    with pytest.raises(InvalidInput, match=field):
        register(db, **overrides)
    assert count(db, Dataset) == 0


def test_a_second_dataset_with_a_taken_name_is_a_conflict(db, dataset):
    with pytest.raises(Conflict, match="cwru"):
        register(db, fault_types=["normal"])
    assert count(db, Dataset) == 1
    register(db, name="other")  # the session is still usable
    db.commit()
    assert count(db, Dataset) == 2


# --- list and get --------------------------------------------------------------------


def test_list_datasets_orders_them_by_name(db):
    for name in ("pu", "cwru", "mfpt"):
        register(db, name=name)
    assert [d.name for d in datasets.list_datasets(db)] == ["cwru", "mfpt", "pu"]


def test_list_datasets_of_an_empty_database_is_empty(db):
    assert datasets.list_datasets(db) == []


def test_get_dataset_finds_it_by_name(db, dataset):
    assert datasets.get_dataset(db, "cwru") is dataset


def test_get_dataset_names_the_missing_one(db):
    with pytest.raises(NotFound, match="'nope'"):
        datasets.get_dataset(db, "nope")


# --- delete --------------------------------------------------------------------------


def test_delete_removes_the_dataset_and_its_signals(db, dataset):
    datasets.add_signals(db, dataset, signal_rows(30))
    db.commit()
    datasets.delete_dataset(db, dataset)
    db.commit()
    assert (count(db, Dataset), count(db, Signal)) == (0, 0)


def add_users(db, dataset, experiments=0, hpo=0, nas=0) -> None:
    for i in range(experiments):
        db.add(Experiment(name=f"e{i}", model_type="cnn", dataset_id=dataset.id, config={}))
    for i in range(hpo):
        db.add(
            HPOCampaign(
                name=f"h{i}",
                method=HPOMethod.BAYESIAN,
                base_model_type="cnn",
                dataset_id=dataset.id,
                search_space={},
                budget={},
                trials_total=10,
            )
        )
    for i in range(nas):
        db.add(NASCampaign(name=f"n{i}", dataset_id=dataset.id))
    db.commit()


@pytest.mark.parametrize(
    ("experiments", "hpo", "nas"), [(2, 0, 0), (0, 1, 0), (0, 0, 3), (2, 1, 3)]
)
def test_delete_of_a_dataset_in_use_names_its_users_and_keeps_it(
    db, dataset, experiments, hpo, nas
):
    datasets.add_signals(db, dataset, signal_rows(5))
    add_users(db, dataset, experiments, hpo, nas)
    with pytest.raises(Conflict) as refused:
        datasets.delete_dataset(db, dataset)
    message = str(refused.value)
    assert f"{experiments} experiment(s)" in message
    assert f"{hpo} HPO campaign(s)" in message
    assert f"{nas} NAS campaign(s)" in message
    db.commit()
    assert (count(db, Dataset), count(db, Signal)) == (1, 5)


def test_the_users_of_a_dataset_are_counted_in_one_statement(db, engine, dataset):
    add_users(db, dataset, experiments=1, hpo=1, nas=1)
    with statements(engine) as sent, pytest.raises(Conflict):
        datasets.delete_dataset(db, dataset)
    assert len([s for s in sent if "count" in s.lower()]) == 1


# --- signals -------------------------------------------------------------------------


def test_add_signals_inserts_thousands_in_batches_and_counts_them(db, engine, dataset):
    rows = signal_rows(2 * SIGNAL_BATCH + 123)
    with statements(engine) as sent:
        assert datasets.add_signals(db, dataset, rows) == len(rows)
    db.commit()
    assert len([s for s in sent if s.startswith("INSERT INTO signals")]) == 3
    assert count(db, Signal) == len(rows)
    assert db.scalar(select(Dataset.num_signals).where(Dataset.id == dataset.id)) == len(rows)
    assert dataset.num_signals == len(rows)


def test_add_signals_stores_each_field(db, dataset):
    datasets.add_signals(db, dataset, signal_rows(6))
    db.commit()
    stored = db.scalars(select(Signal).order_by(Signal.signal_id)).all()
    assert [(s.signal_id, s.fault_class, s.severity) for s in stored[:3]] == [
        ("sig-000000", "normal", None),
        ("sig-000001", "inner_race", "severe"),
        ("sig-000002", "outer_race", "mild"),
    ]
    first = stored[0]
    assert (first.dataset_id, first.file_path, first.rms, first.kurtosis) == (
        dataset.id,
        "signals/0.npy",
        0.1,
        3.0,
    )
    assert first.dominant_frequency == 59.0
    assert first.created_at.tzinfo is not None


def test_only_the_required_signal_fields_are_needed(db, dataset):
    datasets.add_signals(db, dataset, [{"signal_id": "s1", "fault_class": "normal"}])
    stored = db.scalars(select(Signal)).one()
    assert (stored.severity, stored.file_path, stored.rms) == (None, None, None)


def test_num_signals_becomes_the_stored_count_over_calls(db, dataset):
    datasets.add_signals(db, dataset, signal_rows(10))
    datasets.add_signals(db, dataset, signal_rows(7))
    db.commit()
    assert dataset.num_signals == 17 == count(db, Signal)


def test_no_rows_add_nothing(db, dataset):
    assert datasets.add_signals(db, dataset, []) == 0
    assert count(db, Signal) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signal_id": None}, "signal_id"),
        ({"signal_id": ""}, "signal_id"),
        ({"signal_id": "s" * 101}, "signal_id"),
        ({"fault_class": None}, "fault_class"),
        ({"fault_class": "cage"}, "fault_class"),
        ({"severity": "extreme"}, "severity"),
        ({"file_path": "x" * 501}, "file_path"),
        ({"rms": float("nan")}, "rms"),
        ({"kurtosis": float("inf")}, "kurtosis"),
        ({"dominant_frequency": "59"}, "dominant_frequency"),
        ({"rms": True}, "rms"),
        ({"amplitude": 1.0}, "amplitude"),
    ],
)
def test_a_bad_signal_row_is_named_by_index_and_field_and_nothing_is_written(
    db, dataset, change, field
):
    rows = signal_rows(3000)
    rows[1234] = {**rows[1234], **change}
    with pytest.raises(InvalidInput, match=rf"row 1234: .*{field}"):
        datasets.add_signals(db, dataset, rows)
    assert count(db, Signal) == 0
    assert dataset.num_signals == 0


def test_a_row_that_is_not_a_mapping_is_named_by_index(db, dataset):
    with pytest.raises(InvalidInput, match="row 1:"):
        datasets.add_signals(db, dataset, [*signal_rows(1), ("s2", "normal")])


def test_missing_signal_id_is_refused(db, dataset):
    with pytest.raises(InvalidInput, match="row 0: signal_id"):
        datasets.add_signals(db, dataset, [{"fault_class": "normal"}])


# --- counts --------------------------------------------------------------------------


def test_fault_class_counts_lists_every_fault_type_in_one_query(db, engine, dataset):
    rows = signal_rows(10, faults=["normal", "outer_race"])
    datasets.add_signals(db, dataset, rows)
    db.commit()
    with statements(engine) as sent:
        counts = datasets.fault_class_counts(db, dataset)
    assert counts == {"normal": 5, "inner_race": 0, "outer_race": 5}
    assert list(counts) == FAULTS
    queries = [s for s in sent if s.startswith("SELECT")]
    assert len(queries) == 1 and "GROUP BY" in queries[0]


def test_fault_class_counts_of_one_dataset_ignore_the_others(db, dataset):
    other = register(db, name="other")
    datasets.add_signals(db, other, signal_rows(9))
    datasets.add_signals(db, dataset, signal_rows(3))
    assert datasets.fault_class_counts(db, dataset) == {
        "normal": 1,
        "inner_race": 1,
        "outer_race": 1,
    }


# --- records or their ids --------------------------------------------------------------


def test_dataset_functions_take_the_dataset_or_its_id(db, dataset):
    owner = User(username="ada", email="ada@example.com")
    db.add(owner)
    other = register(db, name="paderborn", created_by=owner)
    assert other.created_by == owner.id
    assert datasets.add_signals(db, dataset.id, signal_rows(6)) == 6
    assert datasets.fault_class_counts(db, dataset.id) == dict.fromkeys(FAULTS, 2)
    datasets.delete_dataset(db, other.id)
    db.commit()
    assert [d.name for d in datasets.list_datasets(db)] == ["cwru"]
    assert dataset.num_signals == 6


@pytest.mark.parametrize(
    ("call", "error", "field"),
    [
        (lambda db, d: datasets.delete_dataset(db, "cwru"), InvalidInput, "dataset"),
        (lambda db, d: datasets.delete_dataset(db, 999_999), NotFound, "dataset"),
        (lambda db, d: datasets.add_signals(db, 2**31, signal_rows(1)), NotFound, "dataset"),
        (lambda db, d: datasets.fault_class_counts(db, None), InvalidInput, "dataset"),
        (lambda db, d: register(db, name="x", created_by=999_999), NotFound, "created_by"),
        (lambda db, d: register(db, name="x", created_by=d), InvalidInput, "created_by"),
    ],
)
def test_dataset_functions_name_a_bad_record_and_change_nothing(db, dataset, call, error, field):
    with pytest.raises(error, match=field):
        call(db, dataset)
    db.rollback()
    assert (count(db, Dataset), count(db, Signal)) == (1, 0)
