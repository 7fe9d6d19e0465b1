"""Revision 0007 on both dialects: usernames and e-mail addresses unique regardless
of case, by ``lower()`` unique indexes; refused, with the colliding rows listed,
where existing rows already collide; and the store's ``Conflict`` on a clash."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from cli_support import pfd_db
from factories import insert_row
from pfd_db import migrations
from pfd_db.errors import Conflict, MigrationError
from pfd_db.models import User
from pfd_db.store.identity import users

INDEXES = {"ux_users_username_lower", "ux_users_email_lower"}
PASSWORD = "a long enough passphrase"


def case_indexes(engine) -> set[str]:
    """The 0007 indexes the database has (SQLite cannot reflect expression indexes)."""
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if engine.dialect.name == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE tablename = 'users'"
    )
    with engine.connect() as conn:
        return set(conn.scalars(text(query))) & INDEXES


def user_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM users ORDER BY id"))]


def test_0007_adds_the_indexes_and_takes_them_away_keeping_every_row(fresh_engine):
    migrations.upgrade(fresh_engine, "0006")
    with fresh_engine.begin() as conn:
        for name in ("ada", "Bob", "carol"):
            insert_row(conn, "users", username=name, email=f"{name}@Example.com")
    stored = user_rows(fresh_engine)
    assert case_indexes(fresh_engine) == set()

    assert migrations.upgrade(fresh_engine, "0007").current == "0007"
    assert case_indexes(fresh_engine) == INDEXES
    assert user_rows(fresh_engine) == stored
    for clash in ({"username": "BOB"}, {"email": "ADA@example.COM"}):
        with pytest.raises(IntegrityError), fresh_engine.begin() as conn:
            insert_row(conn, "users", **{"username": "dave", "email": "dave@x.org", **clash})
    assert user_rows(fresh_engine) == stored

    assert migrations.downgrade(fresh_engine, "0006").current == "0006"
    assert case_indexes(fresh_engine) == set()
    assert user_rows(fresh_engine) == stored
    with fresh_engine.begin() as conn:  # case-only duplicates are possible again
        insert_row(conn, "users", username="BOB", email="bob2@x.org")
        conn.execute(delete(User).where(User.username == "BOB"))

    migrations.upgrade(fresh_engine)
    assert migrations.schema_drift(fresh_engine) == []


def test_0007_refuses_colliding_rows_and_lists_them_changing_nothing(fresh_engine):
    migrations.upgrade(fresh_engine, "0006")
    with fresh_engine.begin() as conn:
        ada = insert_row(conn, "users", username="ada", email="ada@x.org")
        ada2 = insert_row(conn, "users", username="Ada", email="ada2@x.org")
        eve = insert_row(conn, "users", username="eve", email="Eve@X.org")
        eve2 = insert_row(conn, "users", username="eve2", email="eve@x.org")
        insert_row(conn, "users", username="zed", email="zed@x.org")
    stored = user_rows(fresh_engine)

    with pytest.raises(MigrationError) as refusal:
        migrations.upgrade(fresh_engine)
    message = str(refusal.value)
    assert f"username id {ada} 'ada', id {ada2} 'Ada'" in message
    assert f"email id {eve} 'Eve@X.org', id {eve2} 'eve@x.org'" in message
    assert "zed" not in message and "nothing was changed" in message
    assert migrations.state(fresh_engine).current == "0006"
    assert case_indexes(fresh_engine) == set()
    assert user_rows(fresh_engine) == stored

    with fresh_engine.begin() as conn:  # renamed and merged: now it goes through
        conn.execute(text(f"UPDATE users SET username = 'ada-b' WHERE id = {ada2}"))
        conn.execute(text(f"DELETE FROM users WHERE id = {eve2}"))
    assert migrations.upgrade(fresh_engine).at_head
    assert case_indexes(fresh_engine) == INDEXES


def test_create_user_names_the_field_that_clashes_regardless_of_case(db):
    insert = User(username="Mixed.Case", email="Mixed@Example.org")  # as a legacy import may
    db.add(insert)
    db.commit()
    before = db.scalar(select(User.id).order_by(User.id.desc()).limit(1))
    with pytest.raises(Conflict, match=r"username 'mixed\.case' is already taken"):
        users.create_user(db, "mixed.case", "other@example.org", PASSWORD)
    with pytest.raises(Conflict, match=r"email 'mixed@example\.org' is already registered"):
        users.create_user(db, "someone", "MIXED@example.ORG", PASSWORD)
    assert db.scalar(select(User.id).order_by(User.id.desc()).limit(1)) == before
    made = users.create_user(db, "someone", "someone@example.org", PASSWORD)
    assert made.id > before


def test_seed_names_a_user_that_takes_the_admin_name_ignoring_case(fresh_url, fresh_engine):
    migrations.upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        insert_row(conn, "users", username="Admin", email="boss@example.org")
    before = user_rows(fresh_engine)
    result = pfd_db("seed", "--url", fresh_url)
    assert result.exit_code == 2
    assert "user 'Admin' (boss@example.org) has that name or e-mail address" in result.stderr
    assert user_rows(fresh_engine) == before
