"""Revision 0009 on both dialects: api_keys gains the rate-limit window
(``rate_window_start``, ``rate_window_count``); every key keeps its data both ways."""

from __future__ import annotations

from sqlalchemy import bindparam, inspect, text

from factories import insert_row
from pfd_db import migrations
from pfd_db.types import StringList

WINDOW = {"rate_window_start", "rate_window_count"}


def columns(engine) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns("api_keys")}


def keys(engine) -> list[tuple]:
    with engine.connect() as conn:
        query = "SELECT id, user_id, name, prefix, rate_limit, is_active FROM api_keys ORDER BY id"
        return [tuple(r) for r in conn.execute(text(query))]


def test_0009_adds_the_window_and_goes_back_keeping_every_key(fresh_engine):
    migrations.upgrade(fresh_engine, "0008")
    with fresh_engine.begin() as conn:
        user = insert_row(conn, "users")
        for n in range(3):  # as a writer at 0008 would: none of the new columns
            conn.execute(
                text(
                    "INSERT INTO api_keys (user_id, key_hash, name, prefix, scopes, rate_limit,"
                    " is_active) VALUES (:user, :hash, :name, :prefix, :scopes, :limit, :active)"
                ).bindparams(bindparam("scopes", type_=StringList)),
                {"user": user, "hash": f"h{n}", "name": f"k{n}", "prefix": f"p{n}",
                 "scopes": ["read"], "limit": 10 + n, "active": n != 1},
            )  # fmt: skip
    before = keys(fresh_engine)
    assert not WINDOW & columns(fresh_engine)

    assert migrations.upgrade(fresh_engine, "0009").current == "0009"
    assert columns(fresh_engine) >= WINDOW
    assert keys(fresh_engine) == before
    with fresh_engine.begin() as conn:
        windows = conn.execute(
            text("SELECT rate_window_start, rate_window_count FROM api_keys")
        ).all()
        assert windows == [(None, 0)] * 3  # existing keys start with an empty window
        conn.execute(text("UPDATE api_keys SET rate_window_count = 7"))

    assert migrations.downgrade(fresh_engine, "0008").current == "0008"
    assert not WINDOW & columns(fresh_engine)
    assert keys(fresh_engine) == before

    migrations.upgrade(fresh_engine)
    assert migrations.schema_drift(fresh_engine) == []
