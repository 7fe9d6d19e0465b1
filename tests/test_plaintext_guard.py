"""The guard behind the ``plaintexts`` fixture finds a secret wherever it is stored."""

from __future__ import annotations

from conftest import find_plaintexts
from factories import insert_row
from pfd_db.models import Base


def test_a_stored_plaintext_is_found_in_text_and_json_columns(engine, db):
    with engine.begin() as conn:
        user_id = insert_row(conn, "users", email="leaky-s3cr3t@example.com")
        insert_row(conn, "system_logs", user_id=user_id, details={"token": "leaky-s3cr3t"})
    found = find_plaintexts(engine, Base.metadata, ["leaky-s3cr3t", "absent-value"])
    assert found == ["system_logs.details", "users.email"]
    assert find_plaintexts(engine, Base.metadata, ["absent-value"]) == []
