"""Revision 0008 on both dialects: login_history accepts 'oauth' and 'other' and
gains login_method_detail; down again, those methods are emptied (the old check
has neither) and every other row stays as it was."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from factories import insert_row
from pfd_db import migrations


def columns(engine) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns("login_history")}


def methods(engine) -> list[tuple]:
    with engine.connect() as conn:
        query = "SELECT id, user_id, login_method, success FROM login_history ORDER BY id"
        return [tuple(r) for r in conn.execute(text(query))]


def insert(engine, method: str, **more: object) -> int:
    with engine.begin() as conn:
        names = ", ".join(["login_method", "success", *more])
        marks = ", ".join([":login_method", "true", *(f":{k}" for k in more)])
        return int(
            conn.execute(
                text(f"INSERT INTO login_history ({names}) VALUES ({marks}) RETURNING id"),
                {"login_method": method, **more},
            ).scalar_one()
        )


def test_0008_accepts_oauth_and_other_and_goes_back_emptying_them(fresh_engine):
    migrations.upgrade(fresh_engine, "0007")
    with fresh_engine.begin() as conn:
        user = insert_row(conn, "users")
        for method in ("password", "2fa", "api_key"):
            insert_row(conn, "login_history", user_id=user, login_method=method, success=True)
    before = methods(fresh_engine)
    with pytest.raises(IntegrityError):
        insert(fresh_engine, "oauth")
    assert "login_method_detail" not in columns(fresh_engine)

    assert migrations.upgrade(fresh_engine, "0008").current == "0008"
    assert "login_method_detail" in columns(fresh_engine)
    assert methods(fresh_engine) == before
    oauth = insert(fresh_engine, "oauth")
    other = insert(fresh_engine, "other", login_method_detail="saml")
    with pytest.raises(IntegrityError):
        insert(fresh_engine, "saml")

    assert migrations.downgrade(fresh_engine, "0007").current == "0007"
    assert "login_method_detail" not in columns(fresh_engine)
    after = methods(fresh_engine)
    assert after[: len(before)] == before
    assert after[len(before) :] == [(oauth, None, None, True), (other, None, None, True)]
    with pytest.raises(IntegrityError):
        insert(fresh_engine, "other")

    migrations.upgrade(fresh_engine)
    assert migrations.schema_drift(fresh_engine) == []
