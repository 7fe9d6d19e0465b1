"""The schema guide (docs/schema.md), rendered from the models.

    python -m pfd_db.schema_guide > docs/schema.md

A test renders it again and compares, so the guide cannot drift from the code.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import CheckConstraint, Column, Index, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper

from pfd_db.models import Base

DOMAINS = {
    "auth": "Security & authentication",
    "api": "API & security",
    "ml": "Core ML",
    "nas": "Neural architecture search",
    "pipeline": "Data pipeline",
    "notifications": "Notifications",
    "search": "Tags & search",
    "system": "System",
}


def render() -> str:
    """The whole guide as Markdown."""
    return "\n".join(_lines()) + "\n"


def _lines() -> Iterator[str]:
    tables = Base.metadata.tables
    foreign_keys = sum(len(t.foreign_keys) for t in tables.values())
    yield "# pfd-db schema guide"
    yield ""
    yield "Generated from the models by `python -m pfd_db.schema_guide`; do not edit."
    yield f"{len(tables)} tables, {foreign_keys} foreign keys."
    by_domain: dict[str, list[Mapper[object]]] = defaultdict(list)
    for mapper in Base.registry.mappers:
        by_domain[mapper.class_.__module__.rsplit(".", 1)[-1]].append(mapper)
    for module, title in DOMAINS.items():
        yield ""
        yield f"## {title}"
        for mapper in sorted(by_domain[module], key=lambda m: m.class_.__name__):
            yield from _table(mapper.class_.__name__, mapper.local_table)  # type: ignore[arg-type]


def _table(class_name: str, table: Table) -> Iterator[str]:
    yield ""
    yield f"### `{table.name}` ({class_name})"
    yield ""
    yield "| column | SQLite | PostgreSQL | null | default | notes |"
    yield "| --- | --- | --- | --- | --- | --- |"
    for column in table.columns:
        yield (
            f"| `{column.name}` | {_type(column, 'sqlite')} | {_type(column, 'postgresql')} "
            f"| {'yes' if column.nullable else 'no'} | {_default(column)} | {_notes(column)} |"
        )
    extras = list(_constraints(table))
    if extras:
        yield ""
        yield from (f"- {extra}" for extra in extras)


DIALECTS: dict[str, Dialect] = {
    "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
    "sqlite": sqlite.dialect(),
}


def _type(column: Column[object], dialect: str) -> str:
    compiled = column.type.compile(dialect=DIALECTS[dialect])
    if column.primary_key and compiled in ("INTEGER", "BIGINT"):
        return f"{compiled} (key)"
    return compiled


def _default(column: Column[object]) -> str:
    default = column.server_default
    if default is None or column.computed is not None:
        return ""
    text = getattr(default, "arg", default)
    return f"`{getattr(text, 'text', None) or str(text)}`".replace("|", "\\|")


def _notes(column: Column[object]) -> str:
    notes = [f"→ `{fk.column.table.name}` ON DELETE {fk.ondelete}" for fk in column.foreign_keys]
    if column.computed is not None:
        notes.append("generated (full-text document)")
    return "; ".join(notes)


def _constraints(table: Table) -> Iterator[str]:
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        yield _index(index)
    for constraint in sorted(table.constraints, key=lambda c: str(c.name)):
        if isinstance(constraint, UniqueConstraint):
            columns = ", ".join(c.name for c in constraint.columns)
            yield f"unique `{constraint.name}` ({columns})"
        elif isinstance(constraint, CheckConstraint):
            rendered = constraint.sqltext.compile(
                dialect=DIALECTS["sqlite"], compile_kwargs={"literal_binds": True}
            )
            sql = " ".join(str(rendered).split()).replace("|", "\\|")
            yield f"check `{constraint.name}`: `{sql}`"


def _index(index: Index) -> str:
    columns = ", ".join(e.name if isinstance(e, Column) else str(e) for e in index.expressions)
    kind = "unique index" if index.unique else "index"
    only = " (PostgreSQL, GIN)" if index.dialect_options["postgresql"].get("using") else ""
    where = index.dialect_options["postgresql"].get("where")
    partial = f" where `{where}`" if where is not None else ""
    return f"{kind} `{index.name}` ({columns}){only}{partial}"


if __name__ == "__main__":
    sys.stdout.write(render())
