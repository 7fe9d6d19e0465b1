"""Seed data: idempotent, passwords hashed with argon2id, shown once when generated."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.config import Settings, get_settings
from pfd_db.errors import Conflict
from pfd_db.models import Dataset, NotificationPreference, Role, User
from pfd_db.passwords import verify_password
from pfd_db.seed import FAULT_TYPES, SEVERITY_LEVELS, seed
from pfd_db.store.identity import users


def count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def seed_in_thread(engine, settings: Settings | None) -> tuple[threading.Thread, dict[str, object]]:
    """A second seed, started in a thread of its own with a session of its own;
    the dict gets its ``report``, or the ``error`` it raised."""
    outcome: dict[str, object] = {}

    def second_seed() -> None:
        with Session(engine) as session:
            try:
                outcome["report"] = seed(session, settings)
                session.commit()
            except Exception as exc:  # what the tests must not see
                outcome["error"] = exc

    worker = threading.Thread(target=second_seed)
    worker.start()
    return worker, outcome


def test_seed_creates_the_admin_preferences_and_default_dataset(db, plaintexts):
    report = seed(db)
    plaintexts.append(report.admin_password)
    db.commit()
    admin = db.scalars(select(User)).one()
    assert (admin.username, admin.email, admin.role) == ("admin", "admin@localhost", Role.ADMIN)
    assert admin.password_hash.startswith("$argon2id$")
    assert len(report.admin_password) >= 20
    assert verify_password(admin.password_hash, report.admin_password)
    assert report.admin_password not in admin.password_hash

    prefs = {p.event_type: p for p in db.scalars(select(NotificationPreference))}
    assert len(prefs) == 12
    assert prefs["training.complete"].email_enabled
    assert not prefs["training.started"].email_enabled

    dataset = db.scalars(select(Dataset)).one()
    assert dataset.name == "Default" and dataset.num_signals == 1430
    assert dataset.fault_types == FAULT_TYPES and len(FAULT_TYPES) == 11
    assert dataset.severity_levels == SEVERITY_LEVELS
    assert dataset.file_path == "data/processed/dataset.h5"


def test_seeding_twice_changes_nothing(db):
    seed(db)
    db.commit()
    again = seed(db)
    db.commit()
    assert not again.changed and again.admin_password is None
    assert (count(db, User), count(db, Dataset), count(db, NotificationPreference)) == (1, 1, 12)


def test_seed_uses_the_configured_admin_password_and_dataset_path(db):
    settings = get_settings().model_copy(
        update={
            "admin_password": SecretStr("a-long-chosen-password"),
            "default_dataset_path": "/srv/data/bearings.h5",
        }
    )
    report = seed(db, settings)
    db.commit()
    assert report.admin_password is None  # the operator chose it: nothing to show
    admin = db.scalars(select(User)).one()
    assert verify_password(admin.password_hash, "a-long-chosen-password")
    assert db.scalars(select(Dataset.file_path)).one() == "/srv/data/bearings.h5"


def test_seed_restores_missing_preferences(db):
    seed(db)
    db.commit()
    db.delete(db.scalars(select(NotificationPreference)).first())
    db.commit()
    report = seed(db)
    assert report.created == ["1 notification preferences for 'admin'"]
    assert count(db, NotificationPreference) == 12


def test_two_seeds_at_once_create_everything_once(db, engine):
    """The second seed waits for the first (SQLite: its write lock; PostgreSQL: the
    unique index, after finding nothing committed yet), then reports everything
    present: no IntegrityError, no second admin, no password that does not work."""
    settings = get_settings().model_copy(
        update={"admin_password": SecretStr("a-long-chosen-password")}
    )
    with Session(engine) as first:
        first_report = seed(first, settings)  # flushed, not committed yet
        worker, outcome = seed_in_thread(engine, settings)
        time.sleep(0.5)
        assert worker.is_alive()  # waiting for the first seed's rows
        first.commit()
    worker.join(30)
    assert not worker.is_alive()
    assert "error" not in outcome, outcome
    second = outcome["report"]
    assert first_report.created and first_report.admin_password is None
    assert not second.changed and second.admin_password is None
    assert (count(db, User), count(db, Dataset), count(db, NotificationPreference)) == (1, 1, 12)
    assert verify_password(db.scalars(select(User.password_hash)).one(), "a-long-chosen-password")


def test_a_seed_that_loses_the_race_to_another_seed_generating_a_password_shows_none(db, engine):
    """The loser generated a password for an admin it did not create: it must not
    show it (the winner's is the admin's)."""
    with Session(engine) as first:
        first_report = seed(first)
        worker, outcome = seed_in_thread(engine, None)
        time.sleep(0.5)
        assert worker.is_alive()
        first.commit()
    worker.join(30)
    assert "error" not in outcome, outcome
    assert first_report.admin_password is not None
    assert outcome["report"].admin_password is None and not outcome["report"].changed
    admin_hash = db.scalars(select(User.password_hash)).one()
    assert verify_password(admin_hash, first_report.admin_password)


def test_two_seeds_at_once_restoring_the_default_dataset_add_it_once(db, engine):
    settings = get_settings().model_copy(
        update={"admin_password": SecretStr("a-long-chosen-password")}
    )
    seed(db, settings)
    db.commit()
    db.delete(db.scalars(select(Dataset)).one())
    db.commit()

    with Session(engine) as first:
        assert seed(first, settings).created == ["dataset 'Default' (1430 signals)"]
        worker, outcome = seed_in_thread(engine, settings)
        time.sleep(0.5)
        assert worker.is_alive()  # waiting for the first seed's dataset
        first.commit()
    worker.join(30)
    assert "error" not in outcome, outcome
    assert not outcome["report"].changed
    assert db.scalars(select(Dataset.name)).all() == ["Default"]


def test_seed_refuses_an_admin_name_taken_ignoring_case_and_names_the_user(db):
    users.create_user(db, "ADMIN", "boss@example.com", "a long passphrase")
    db.commit()
    with pytest.raises(Conflict, match=r"user 'ADMIN' \(boss@example\.com\) has that name"):
        seed(db)
    db.rollback()
    assert db.scalars(select(User.username)).all() == ["ADMIN"]
    assert count(db, Dataset) == 0
