"""The test fixtures themselves: both dialects are real, isolated and cleaned up."""

from __future__ import annotations

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    text,
)
from sqlalchemy.orm import Session

from pgserver import PostgresServer

# A table of our own, so these tests don't depend on the package's models.
probe_metadata = MetaData()
probe = Table(
    "fixture_probe",
    probe_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("note", String(50), nullable=False),
    sqlite_autoincrement=True,  # ids come from sqlite_sequence, which must be reset too
)


def test_engine_dialect_matches_param(engine: Engine, dialect: str) -> None:
    assert engine.dialect.name == dialect


def test_test_is_marked_with_its_dialect(request: pytest.FixtureRequest, dialect: str) -> None:
    assert request.node.get_closest_marker(dialect) is not None
    other = "postgresql" if dialect == "sqlite" else "sqlite"
    assert request.node.get_closest_marker(other) is None


def test_postgres_server_is_15_or_newer_on_a_socket_only(pg_server: PostgresServer) -> None:
    eng = create_engine(pg_server.url("postgres"))
    try:
        with eng.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar_one()
            listen = conn.execute(text("SHOW listen_addresses")).scalar_one()
    finally:
        eng.dispose()
    assert int(version.split(".")[0]) >= 15
    assert listen == ""


@pytest.mark.parametrize("round_", [1, 2])
def test_db_starts_empty_and_ids_restart(db: Session, engine: Engine, round_: int) -> None:
    """Each round finds the table empty and gets id 1: the other round's row is gone."""
    probe_metadata.create_all(engine, checkfirst=True)
    assert db.execute(text("SELECT count(*) FROM fixture_probe")).scalar_one() == 0
    db.execute(text("INSERT INTO fixture_probe (note) VALUES (:note)"), {"note": f"r{round_}"})
    db.commit()
    assert db.execute(text("SELECT id FROM fixture_probe")).scalar_one() == 1


def test_fresh_url_is_a_new_empty_database(fresh_url: str, db_url: str, dialect: str) -> None:
    assert fresh_url != db_url
    eng = create_engine(fresh_url)
    try:
        assert eng.dialect.name == dialect
        assert inspect(eng).get_table_names() == []
        probe_metadata.create_all(eng)  # and it is ours to change
        assert inspect(eng).get_table_names() == ["fixture_probe"]
    finally:
        eng.dispose()
