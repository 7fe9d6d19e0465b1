"""Seed data: idempotent, passwords hashed with argon2id, shown once when generated."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy import func, select

from pfd_db.config import get_settings
from pfd_db.models import Dataset, NotificationPreference, Role, User
from pfd_db.passwords import verify_password
from pfd_db.seed import FAULT_TYPES, SEVERITY_LEVELS, seed


def count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


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
