"""Full-text search objects, one behaviour on both dialects.

PostgreSQL: ``experiments.search_vector`` is a generated ``TSVECTOR`` (name
weighted A, model type B, notes C; English stemming) with a GIN index.
SQLite: the same column is a virtual generated text column (no storage), and
an FTS5 table ``experiments_fts`` (porter stemming, ranked with bm25) indexes
name, model type and notes, kept in step by triggers on insert, update and
delete. ``create_all`` and the migrations build the same objects.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import DDL, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FromClause
from sqlalchemy.sql.functions import FunctionElement

from pfd_db.types import SearchDocument

FTS_TABLE = "experiments_fts"
FTS_COLUMNS = ("name", "model_type", "notes")
WEIGHTS = "ABCD"


class search_document(FunctionElement[Any]):
    """The full-text document of a row's text columns, most important first."""

    type = SearchDocument
    inherit_cache = True
    name = "search_document"


@compiles(search_document, "postgresql")
def _tsvector(element: search_document, compiler: SQLCompiler, **kw: Any) -> str:
    parts = [
        f"setweight(to_tsvector('english', coalesce({compiler.process(col, **kw)}, '')), "
        f"'{WEIGHTS[min(i, 3)]}')"
        for i, col in enumerate(element.clauses)
    ]
    return " || ".join(parts)


@compiles(search_document)
def _plain_text(element: search_document, compiler: SQLCompiler, **kw: Any) -> str:
    return " || ' ' || ".join(
        f"coalesce({compiler.process(col, **kw)}, '')" for col in element.clauses
    )


def sqlite_fts_statements() -> list[str]:
    """The DDL that creates the SQLite FTS5 table and its triggers, in order.

    Built from this module's constants only; no outside text reaches it.
    """
    cols = ", ".join(FTS_COLUMNS)
    new = ", ".join(f"new.{c}" for c in FTS_COLUMNS)
    old = ", ".join(f"old.{c}" for c in FTS_COLUMNS)
    remove = (
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, {cols}) VALUES ('delete', old.id, {old});"  # noqa: S608
    )
    add = f"INSERT INTO {FTS_TABLE}(rowid, {cols}) VALUES (new.id, {new});"  # noqa: S608
    return [
        f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5({cols}, content='experiments', "
        "content_rowid='id', tokenize='porter unicode61')",
        f"CREATE TRIGGER {FTS_TABLE}_ai AFTER INSERT ON experiments BEGIN {add} END",
        f"CREATE TRIGGER {FTS_TABLE}_ad AFTER DELETE ON experiments BEGIN {remove} END",
        f"CREATE TRIGGER {FTS_TABLE}_au AFTER UPDATE OF {cols} ON experiments "
        f"BEGIN {remove} {add} END",
    ]


def sqlite_fts_drop_statements() -> list[str]:
    """The DDL that removes what :func:`sqlite_fts_statements` creates."""
    return [f"DROP TRIGGER IF EXISTS {FTS_TABLE}_{t}" for t in ("ai", "ad", "au")] + [
        f"DROP TABLE IF EXISTS {FTS_TABLE}"
    ]


def attach_sqlite_fts(table: FromClause) -> None:
    """Have ``create_all``/``drop_all`` build and remove the FTS objects on SQLite."""
    for statement in sqlite_fts_statements():
        event.listen(table, "after_create", _sqlite_only(statement))
    for statement in sqlite_fts_drop_statements():
        event.listen(table, "before_drop", _sqlite_only(statement))


def _sqlite_only(statement: str) -> DDL:
    return DDL(statement).execute_if(dialect="sqlite")  # type: ignore[no-untyped-call]
