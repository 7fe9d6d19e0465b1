"""The explanation cache, on both dialects: one row per (experiment, signal,
method), computed with no transaction open and no lock held, one winner when
workers miss at once (threads on PostgreSQL, processes on SQLite)."""

from __future__ import annotations

import time
from functools import partial

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from factories import insert_row
from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Experiment, Explanation
from pfd_db.store.ml import explanations
from racing import race

SHAP = {"values": [0.1, 0.7], "base": 0.2}
WORKERS = {"postgresql": 8, "sqlite": 4}


@pytest.fixture
def experiment_id(db, engine) -> int:
    """A committed experiment's id (``db`` empties the tables afterwards)."""
    with engine.begin() as conn:
        return insert_row(conn, "experiments")


def count_explanations(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Explanation))


def test_explanations_are_computed_once_and_then_served_from_the_cache(db, experiment_id):
    experiment = db.get(Experiment, experiment_id)
    calls = []

    def shap():
        calls.append(1)
        return SHAP

    first, computed = explanations.get_or_compute(db, experiment, "sig-7", "shap", shap)
    again, computed_again = explanations.get_or_compute(db, experiment, "sig-7", "shap", shap)
    other, computed_other = explanations.get_or_compute(db, experiment_id, "sig-7", "lime", shap)
    db.commit()
    assert (computed, computed_again, computed_other) == (True, False, True)
    assert again is first and other.id != first.id
    assert len(calls) == 2
    assert db.scalar(select(func.count()).select_from(Explanation)) == 2
    assert first.explanation_data == SHAP


def test_a_cached_explanation_is_found_by_a_fresh_session(db, engine, experiment_id):
    stored, _ = explanations.get_or_compute(db, experiment_id, "s", "shap", lambda: SHAP)
    db.commit()
    with Session(engine) as fresh:
        found, computed = explanations.get_or_compute(
            fresh, experiment_id, "s", "shap", lambda: pytest.fail("computed again")
        )
        assert (found.id, found.explanation_data, computed) == (stored.id, SHAP, False)
        assert found in fresh  # an object of the caller's session
        assert explanations.find_explanation(fresh, experiment_id, "s", "shap") is found


def test_compute_runs_with_no_transaction_open_and_no_lock_held(engine, experiment_id, dialect):
    def compute():
        assert not session.in_transaction()
        # Another writer gets through at once (no busy wait on SQLite, no row lock on PostgreSQL).
        with engine.connect() as other:
            if dialect == "sqlite":
                patience = other.exec_driver_sql("PRAGMA busy_timeout").scalar()
                other.exec_driver_sql("PRAGMA busy_timeout = 0")
            else:
                other.exec_driver_sql("SET LOCAL lock_timeout = '100ms'")
                idle = other.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state LIKE 'idle in transaction%'"
                    )
                )
                assert idle == 0
            other.execute(
                text("UPDATE experiments SET notes = 'touched' WHERE id = :id"),
                {"id": experiment_id},
            )
            other.commit()
            if dialect == "sqlite":  # the connection goes back to the suite's pool
                other.exec_driver_sql(f"PRAGMA busy_timeout = {int(patience)}")
        return SHAP

    with Session(engine, expire_on_commit=False) as session:
        explanation, computed = explanations.get_or_compute(
            session, experiment_id, "s", "shap", compute
        )
        session.commit()
    assert computed and explanation.explanation_data == SHAP
    assert count_explanations(engine) == 1


def test_a_failing_compute_leaves_nothing_behind(db, engine, experiment_id):
    def broken():
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        explanations.get_or_compute(db, experiment_id, "s", "shap", broken)
    assert not db.in_transaction()
    db.commit()
    assert count_explanations(engine) == 0
    assert explanations.get_or_compute(db, experiment_id, "s", "shap", lambda: SHAP)[1]


def test_an_explanation_that_is_not_an_object_is_refused_and_nothing_is_stored(
    db, engine, experiment_id
):
    for bad in ([1, 2], {"values": [float("nan")]}, {1: "a"}):
        with pytest.raises(InvalidInput, match="explanation data"):
            explanations.get_or_compute(db, experiment_id, "s", "shap", lambda bad=bad: bad)
    db.commit()
    assert count_explanations(engine) == 0


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"signal_id": ""}, "signal_id"),
        ({"signal_id": "x" * 101}, "signal_id"),
        ({"method": None}, "method"),
        ({"file_path": "p" * 501}, "file_path"),
        ({"experiment": "7"}, "experiment"),
        ({"experiment": True}, "experiment"),
    ],
)
def test_bad_arguments_are_refused_before_computing(db, experiment_id, arguments, field):
    given = {"experiment": experiment_id, "signal_id": "s", "method": "shap", **arguments}
    with pytest.raises(InvalidInput, match=field):
        explanations.get_or_compute(db, compute=lambda: pytest.fail("computed"), **given)


@pytest.mark.parametrize("missing", [999, 2**40])
def test_an_unknown_experiment_is_not_found_before_computing(db, engine, missing):
    with pytest.raises(NotFound):
        explanations.get_or_compute(db, missing, "s", "shap", lambda: pytest.fail("computed"))
    assert count_explanations(engine) == 0


def test_an_experiment_deleted_while_computing_is_not_found(db, engine, experiment_id):
    def compute():
        with engine.begin() as other:
            other.execute(text("DELETE FROM experiments WHERE id = :id"), {"id": experiment_id})
        return SHAP

    with pytest.raises(NotFound, match="no longer exists"):
        explanations.get_or_compute(db, experiment_id, "s", "shap", compute)
    db.commit()  # the caller's transaction is still usable
    assert count_explanations(engine) == 0


def test_a_second_row_for_one_key_is_refused_by_the_database(engine, experiment_id):
    row = {"experiment_id": experiment_id, "signal_id": "s", "method": "shap"}
    with engine.begin() as conn:
        insert_row(conn, "explanations", **row)
    with pytest.raises(Exception, match=r"(?i)unique"), engine.begin() as conn:
        insert_row(conn, "explanations", **row)
    assert count_explanations(engine) == 1


def explain_at_once(
    experiment_id: int, engine: Engine, index: int, ready
) -> tuple[int, dict, bool]:
    """Miss the cache together with the other workers; what this one got back."""

    def compute():
        time.sleep(0.2)  # widen the window in which the others miss too
        return {"worker": index}

    with Session(engine) as own:
        ready()
        explanation, computed = explanations.get_or_compute(
            own, experiment_id, "sig-1", "shap", compute
        )
        own.commit()
        return explanation.id, explanation.explanation_data, computed


def test_workers_missing_at_once_keep_one_row_and_all_get_it(
    engine, db_url, dialect, experiment_id
):
    count = WORKERS[dialect]
    results = race(dialect, engine, db_url, count, partial(explain_at_once, experiment_id))
    assert len({(row_id, data["worker"]) for row_id, data, _ in results}) == 1
    assert [computed for _, _, computed in results].count(True) == 1
    winner = next(data["worker"] for _, data, computed in results if computed)
    assert results[0][1] == {"worker": winner}
    assert count_explanations(engine) == 1


def test_find_explanation_tells_a_missing_explanation_from_a_missing_experiment(db, experiment_id):
    assert explanations.find_explanation(db, experiment_id, "s", "shap") is None
    with pytest.raises(NotFound, match="999"):
        explanations.find_explanation(db, 999, "s", "shap")
