"""Cross-dialect types: aware UTC times, JSON documents and string lists round-trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

import pfd_db.models as models
from factories import insert_row
from pfd_db.errors import InvalidInput
from pfd_db.models import APIKey, Dataset, SystemLog, User
from test_schema import MODEL_NAMES

PARIS_SUMMER = timezone(timedelta(hours=2))


def make_user(db, name: str = "ada") -> User:
    user = User(username=name, email=f"{name}@example.com")
    db.add(user)
    db.commit()
    return user


def test_aware_times_come_back_as_the_same_instant_in_utc(db):
    given = datetime(2026, 7, 1, 14, 30, 15, 123456, tzinfo=PARIS_SUMMER)
    user = make_user(db)
    user.locked_until = given
    db.commit()
    db.expire_all()
    stored = db.scalar(select(User.locked_until))
    assert stored == given
    assert stored.tzinfo is UTC
    assert stored.hour == 12


def test_a_naive_datetime_is_rejected_before_anything_is_written(db):
    db.add(User(username="naive", email="n@example.com", locked_until=datetime(2026, 1, 1)))
    with pytest.raises(InvalidInput, match="naive datetime"):
        db.commit()
    db.rollback()
    assert db.scalar(select(User).where(User.username == "naive")) is None


def test_server_default_timestamps_are_aware_utc(engine, db):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO system_logs (action, status) VALUES ('boot', 'success')"))
    log = db.scalars(select(SystemLog)).one()
    now = datetime.now(UTC)
    for stamp in (log.created_at, log.updated_at):
        assert stamp.tzinfo is UTC
        assert abs(stamp - now) < timedelta(minutes=1)


def test_updated_at_moves_on_every_orm_update(db):
    user = make_user(db)
    first = user.updated_at
    user.email = "new@example.com"
    db.commit()
    assert user.updated_at > first
    assert user.created_at <= first


def test_json_documents_round_trip(db):
    document = {
        "layers": [64, 128, {"kind": "conv1d", "kernel": 3}],
        "dropout": 0.25,
        "note": "Unterlast, échantillon ✓ 振動",
        "flags": {"early_stop": True, "patience": None},
        "empty": {},
    }
    db.add(
        Dataset(
            name="cwru",
            num_signals=2,
            fault_types=["normal", "wear"],
            severity_levels=[],
            file_path="d.h5",
            meta_data=document,
        )
    )
    db.commit()
    db.expire_all()
    dataset = db.scalars(select(Dataset)).one()
    assert dataset.meta_data == document
    assert dataset.fault_types == ["normal", "wear"]
    assert dataset.severity_levels == []


@pytest.mark.parametrize("scopes", [["read"], ["read", "write", "admin"], []])
def test_string_lists_round_trip(db, scopes):
    user = make_user(db)
    db.add(APIKey(user_id=user.id, key_hash="h", name="ci", prefix="p", scopes=scopes))
    db.commit()
    db.expire_all()
    assert db.scalars(select(APIKey.scopes)).one() == scopes


def test_string_list_defaults_to_read(db):
    user = make_user(db)
    key = APIKey(user_id=user.id, key_hash="h", name="ci", prefix="p")
    db.add(key)
    db.commit()
    assert key.scopes == ["read"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_to_dict_is_json_ready_and_keeps_secrets_out(engine, db, name):
    model = getattr(models, name)
    with engine.begin() as conn:
        row_id = insert_row(conn, model.__tablename__)
    as_dict = model.to_dict(db.get(model, row_id))
    json.dumps(as_dict)
    assert as_dict["id"] == row_id
    assert datetime.fromisoformat(as_dict["created_at"]).tzinfo is not None
    assert not set(as_dict) & model.__secret_columns__
    assert "search_vector" not in as_dict


def test_to_dict_gives_enum_values(db):
    user = make_user(db)
    user.password_hash = "argon2-hash"
    assert user.to_dict()["role"] == "viewer"
    assert "password_hash" not in user.to_dict()
