"""The value rules (pfd_db.values), the check before every ORM flush, the
translation of the driver's refusals, and search over rows written before NaN
was refused."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from pfd_db.errors import InvalidInput
from pfd_db.models import Dataset, Experiment, ExperimentStatus, SessionLog, Tag, User
from pfd_db.store.ml import experiments, search
from pfd_db.store.validation import require_count, require_object, require_str, require_text
from pfd_db.types import utc_or_now
from pfd_db.values import (
    INT32_MAX,
    INT64_MAX,
    MAX_JSON_DEPTH,
    check_document,
    check_real,
    check_text,
    check_whole,
)

BAD_TEXT = {
    "NUL": "a\x00b",
    "lone surrogate": "a\ud800b",
    "low surrogate": "\udfff",
}


def nested(depth: int) -> list:
    document: list = []
    for _ in range(depth - 1):
        document = [document]
    return document


# --- the rules -----------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_text_that_postgresql_cannot_store_is_refused_naming_the_field(value):
    with pytest.raises(InvalidInput, match=r"^name "):
        check_text(value, "name")
    with pytest.raises(InvalidInput, match=r"^name "):
        require_text(value, "name", 100)
    with pytest.raises(InvalidInput, match=r"^name "):
        require_str(value, "name")


def test_text_is_refused_past_the_length_and_kept_up_to_it():
    assert check_text("é" * 7, "color", 7) == "é" * 7
    with pytest.raises(InvalidInput, match="color must be at most 7 characters"):
        check_text("x" * 8, "color", 7)
    with pytest.raises(InvalidInput, match="must be a string"):
        check_text(7, "color")


@pytest.mark.parametrize(
    ("value", "minimum", "maximum", "ok"),
    [
        (INT32_MAX, 0, INT32_MAX, True),
        (INT32_MAX + 1, 0, INT32_MAX, False),
        (-(2**31), -(2**31), INT32_MAX, True),
        (-(2**31) - 1, -(2**31), INT32_MAX, False),
        (INT64_MAX, 0, INT64_MAX, True),
        (INT64_MAX + 1, 0, INT64_MAX, False),
        (True, 0, 1, False),
        (1.0, 0, 1, False),
        ("1", 0, 1, False),
        (None, 0, 1, False),
    ],
)
def test_whole_numbers_are_checked_against_the_column_range(value, minimum, maximum, ok):
    if ok:
        assert check_whole(value, "n", minimum, maximum) == value
    else:
        with pytest.raises(InvalidInput, match=r"^n must be a whole number"):
            check_whole(value, "n", minimum, maximum)


def test_counts_default_to_the_integer_column_range():
    assert require_count(INT32_MAX, "limit") == INT32_MAX
    with pytest.raises(InvalidInput, match="limit"):
        require_count(INT32_MAX + 1, "limit")
    assert require_count(INT32_MAX + 1, "flops", maximum=INT64_MAX) == INT32_MAX + 1


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400, True, "1.5", None])
def test_real_numbers_must_be_finite(value):
    with pytest.raises(InvalidInput, match=r"^loss must be a finite number"):
        check_real(value, "loss")


def test_real_numbers_of_other_types_become_floats():
    assert check_real(3, "loss") == 3.0
    assert isinstance(check_real(3, "loss"), float)


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"a": math.nan}, r"config\['a'\] must be a finite number"),
        ({"a": {"b": [1, math.inf]}}, r"config\['a'\]\['b'\]\[1\] must be a finite number"),
        ({"a": ["ok", "x\x00"]}, r"config\['a'\]\[1\] contains a NUL"),
        ({"a\x00": 1}, r"config key 'a\\x00' contains a NUL"),
        ({"\ud800": 1}, r"config key '\\ud800' contains"),
        ({"a": {1: "x"}}, r"config\['a'\] has the key 1: JSON object keys must be strings"),
        ({"a": {1, 2}}, r"config\['a'\] is a set"),
        ({"a": Decimal("1.5")}, r"config\['a'\] is a Decimal"),
        ({"a": b"bytes"}, r"config\['a'\] is a bytes"),
        ({"a": datetime(2026, 1, 1)}, r"config\['a'\] is a datetime"),
        ({"a": nested(MAX_JSON_DEPTH + 1)}, "config is nested deeper than"),
        ({"a": nested(5000)}, "config is nested deeper than"),
    ],
)
def test_json_documents_are_walked_whole_and_the_bad_part_named(document, path):
    with pytest.raises(InvalidInput, match=path):
        check_document(document, "config")
    with pytest.raises(InvalidInput, match=path):
        require_object(document, "config")


def test_plain_json_documents_pass_as_given():
    document = {"layers": [64, 128], "lr": 1e-3, "name": "日本語", "on": True, "off": None}
    assert check_document(document, "config") is document
    assert require_object(document, "config") == document
    assert check_document(nested(MAX_JSON_DEPTH), "config") is not None
    assert check_document({"big": 2**80}, "config") == {"big": 2**80}


@pytest.mark.parametrize(
    "clock",
    [
        datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
        datetime(1899, 12, 31, 23, 59, tzinfo=UTC),
        datetime(9000, 1, 1, tzinfo=UTC),
    ],
)
def test_a_clock_off_the_calendar_is_refused_before_any_window_is_counted_from_it(clock):
    with pytest.raises(InvalidInput, match="outside the years a clock may show"):
        utc_or_now(clock)
    assert utc_or_now(datetime(1900, 1, 1, tzinfo=UTC)).year == 1900


# --- the check before every flush ------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Tag(name="ok", slug="ok", usage_count=2**31), "tags.usage_count"),
        (lambda: Tag(name="a\x00b", slug="ok"), "tags.name"),
        (lambda: Tag(name="\ud800", slug="ok"), "tags.name"),
        (lambda: Tag(name="x" * 51, slug="ok"), "tags.name"),
        (lambda: Tag(name="ok", slug="ok", usage_count="3"), "tags.usage_count"),
        (lambda: User(username="u", email="e", role="emperor"), "users.role"),
        (lambda: User(username="u", email="e", is_active="yes"), "users.is_active"),
        (lambda: User(username="u", email="e", locked_until=datetime(2026, 1, 1)), "locked_until"),
        (
            lambda: Dataset(
                name="d",
                num_signals=0,
                fault_types=["normal"],
                severity_levels=[],
                file_path="p",
                meta_data={"rate": math.nan},
            ),
            r"datasets.meta_data\['rate'\]",
        ),
    ],
)
def test_a_model_with_a_value_its_column_cannot_hold_is_refused_before_the_flush(db, make, field):
    db.add(Tag(name="kept", slug="kept"))
    db.flush()
    bad = make()
    db.add(bad)
    with pytest.raises(InvalidInput, match=field):
        db.flush()
    db.expunge(bad)
    db.add(Tag(name="next", slug="next"))
    db.flush()  # the transaction is still usable: nothing was sent
    db.commit()
    assert db.scalars(select(Tag.name).order_by(Tag.name)).all() == ["kept", "next"]


def test_a_changed_attribute_is_checked_too_and_an_unchanged_one_is_not(db):
    tag = Tag(name="kept", slug="kept")
    db.add(tag)
    db.commit()
    tag.usage_count = -(2**31) - 1
    with pytest.raises(InvalidInput, match=r"tags\.usage_count"):
        db.flush()
    db.rollback()
    tag.color = "#00ff00"
    db.flush()
    assert db.scalar(select(Tag.color)) == "#00ff00"


def test_none_in_a_required_column_is_refused_unless_a_relationship_fills_it(db):
    db.add(Tag(name=None, slug="ok"))
    with pytest.raises(InvalidInput, match=r"tags\.name is required"):
        db.flush()
    db.rollback()
    user = User(username="u", email="e", password_hash="x")
    db.add(SessionLog(user=user, session_token="t"))  # user_id comes from the relationship
    db.flush()
    tag = Tag(name="kept", slug="kept")
    db.add(tag)
    db.commit()
    tag.usage_count = None  # has a default, but an UPDATE would write NULL
    with pytest.raises(InvalidInput, match=r"tags\.usage_count is required"):
        db.flush()
    db.rollback()
    assert db.scalar(select(SessionLog.user_id)) == user.id
    assert db.scalar(select(Tag.usage_count)) == 0


# --- what the driver refuses ---------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        lambda: Tag.id == 2**64,
        lambda: Tag.id == 2**63,
        lambda: Tag.name == "a\ud800",
        lambda: Tag.id == object(),
    ],
    ids=["2**64", "2**63", "surrogate", "object"],
)
def test_a_value_the_driver_refuses_is_invalid_input(db, condition):
    with pytest.raises(InvalidInput, match="the database cannot take a value given"):
        db.scalars(select(Tag).where(condition())).all()
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Tag)) == 0


# --- finish and search -----------------------------------------------------------


@pytest.fixture
def running(db) -> Experiment:
    dataset = Dataset(
        name="cwru", num_signals=0, fault_types=["normal"], severity_levels=[], file_path="p"
    )
    db.add(dataset)
    db.flush()
    experiment = experiments.create_experiment(db, "resnet-1", "resnet18", dataset, {"lr": 0.1})
    experiments.start(db, experiment)
    db.commit()
    return experiment


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_finish_refuses_metrics_that_are_not_finite_and_changes_nothing(db, running, bad):
    with pytest.raises(InvalidInput, match=r"metrics\['val_accuracy'\] must be a finite number"):
        experiments.finish(db, running, {"val_accuracy": bad, "loss": 0.1})
    db.rollback()
    status, metrics = db.execute(
        select(Experiment.status, Experiment.metrics).where(Experiment.id == running.id)
    ).one()
    assert (status, metrics) == (ExperimentStatus.RUNNING, None)


def test_finish_refuses_nan_nested_in_a_metric(db, running):
    with pytest.raises(InvalidInput, match=r"metrics\['per_class'\]\['inner'\]"):
        experiments.finish(db, running, {"per_class": {"inner": math.nan}})


def add_finished(db, name: str, metrics: dict) -> Experiment:
    dataset = db.scalar(select(Dataset))
    if dataset is None:
        dataset = Dataset(
            name="cwru", num_signals=0, fault_types=["normal"], severity_levels=[], file_path="p"
        )
        db.add(dataset)
        db.flush()
    experiment = experiments.create_experiment(db, name, "cnn1d", dataset, {})
    experiments.start(db, experiment)
    experiments.finish(db, experiment, metrics)
    db.commit()
    return experiment


LEGACY = ['{"val_accuracy": NaN}', '{"val_accuracy": Infinity}', '{"val_accuracy": -Infinity}']


@pytest.mark.parametrize("legacy", LEGACY)
def test_search_by_metric_survives_a_row_written_with_nan_before_it_was_refused(
    db, dialect, legacy
):
    good = add_finished(db, "good", {"val_accuracy": 0.9})
    old = add_finished(db, "old", {"val_accuracy": 0.5})
    document = "CAST(:doc AS jsonb)" if dialect == "postgresql" else ":doc"
    write_legacy = text(f"UPDATE experiments SET metrics = {document} WHERE id = :id")
    if dialect == "postgresql":
        # JSONB cannot hold NaN or infinity: no such row can exist there
        with pytest.raises(InvalidInput):
            db.execute(write_legacy.bindparams(doc=legacy, id=old.id))
        db.rollback()
        db.execute(write_legacy.bindparams(doc='{"val_accuracy": "NaN"}', id=old.id))
    else:
        db.execute(write_legacy.bindparams(doc=legacy, id=old.id))
    db.commit()

    def names(query: str) -> set[str]:
        return {hit.experiment.name for hit in search.search(db, query).rows}

    assert names("metric.val_accuracy>0.1") == {"good"}
    assert names("-metric.val_accuracy>0.1") == {"old"}
    assert names("metric.val_accuracy<=0.1") == set()
    assert names("") == {"good", "old"}
    assert good.id != old.id
