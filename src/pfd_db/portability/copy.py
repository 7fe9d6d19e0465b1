"""Copy a pfd-db database into an empty one: ``pfd-db copy``.

The source is read in one snapshot (a deferred read transaction on SQLite,
``REPEATABLE READ READ ONLY`` on PostgreSQL), so writers may go on while it is
copied and the copy is the database as it was at one moment. Tables are copied
parents first (``Base.metadata.sorted_tables``, which follows the schema at
head), each streamed in batches and committed as one transaction; ids are kept.
The two foreign keys that close a cycle (``hpo_campaigns.best_experiment_id``,
``nas_campaigns.best_trial_id``: any reference to a table not yet copied) are
written empty and filled in once every table is there. Then each table is read
back and compared with the source (row count and checksum); PostgreSQL
sequences are set past the largest ids; and the unfinished-copy marker is
dropped last (see :mod:`pfd_db.portability.filling`).

The search index: on SQLite the experiments are written with their triggers off
and the FTS5 index rebuilt in the same transaction, so no commit leaves it out of
step; on PostgreSQL the search column is generated. Either way it is checked
before the marker is dropped. A source that carries the marker itself is refused.
Secrets are copied as stored (hashes, encrypted TOTP secrets): the target needs
the same instance key, and a SQLite source's key file is copied beside a SQLite
target that has none.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select, update

from pfd_db import migrations
from pfd_db.engine import read_only
from pfd_db.errors import Conflict, MigrationError
from pfd_db.models import Base
from pfd_db.portability import CopyMismatch, filling
from pfd_db.portability.rows import (
    Fingerprint,
    Layout,
    Row,
    fingerprint_table,
    layout_of,
    stream_rows,
    write_rows,
)
from pfd_db.progress import Progress, no_progress
from pfd_db.target import identity, locate

DEFAULT_BATCH_SIZE = 20_000


@dataclass
class TableCopy:
    """One table of a copy: its source fingerprint and what was found in the target."""

    name: str
    source: Fingerprint
    target: Fingerprint | None = None

    @property
    def ok(self) -> bool:
        return (
            self.target is not None
            and self.target.rows == self.source.rows
            and self.target.checksum == self.source.checksum
        )


@dataclass
class CopyReport:
    """What a copy did, table by table."""

    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0
    key_file: Path | None = None

    @property
    def rows(self) -> int:
        return sum(t.source.rows for t in self.tables)


@dataclass
class LaterReferences:
    """Values of foreign keys to tables copied later, held back until those are in."""

    columns: dict[str, list[int]]  # table -> positions, in its layout, of such columns
    held: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def hold_back(self, layout: Layout, rows: Sequence[Row]) -> Sequence[Row]:
        """``rows`` with those columns emptied; their values kept for :meth:`fill_in`."""
        positions = self.columns.get(layout.table.name)
        if not positions:
            return rows
        id_at = layout.index("id")
        emptied = []
        for row in rows:
            values = list(row)
            for at in positions:
                if values[at] is not None:
                    key = (layout.table.name, layout.columns[at].name)
                    self.held.setdefault(key, []).append({"_id": row[id_at], "_v": values[at]})
                    values[at] = None
            emptied.append(tuple(values))
        return emptied

    def fill_in(self, conn: Connection) -> None:
        """Write the held-back values, now that every table is copied."""
        for (table_name, column), values in self.held.items():
            table = Base.metadata.tables[table_name]
            # Each column with an ORM-side onupdate (updated_at) is set to itself: kept.
            kept = {c.name: c for c in table.columns if c.onupdate is not None}
            with filling.triggers_off(conn, table_name):
                conn.execute(
                    update(table)
                    .where(table.c.id == bindparam("_id"))
                    .values({**kept, column: bindparam("_v")}),
                    values,
                )


def later_references(layouts: Sequence[Layout]) -> LaterReferences:
    """The foreign keys that point at the same table or one copied after it."""
    order = {layout.table.name: i for i, layout in enumerate(layouts)}
    columns: dict[str, list[int]] = {}
    for i, layout in enumerate(layouts):
        for at, column in enumerate(layout.columns):
            if any(order.get(fk.column.table.name, -1) >= i for fk in column.foreign_keys):
                columns.setdefault(layout.table.name, []).append(at)
    return LaterReferences(columns)


def copy_database(
    source: Engine,
    destination: Engine,
    *,
    replace: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress = no_progress,
    operation: str = "copy",
) -> CopyReport:
    """Copy every row of ``source`` (at head) into ``destination``, which is migrated
    to head first and must hold no data unless ``replace``.

    Raises :class:`Conflict` (a non-empty target, the same database twice, or a
    source that is itself an unfinished copy),
    :class:`MigrationError` (the source is not at head) or :class:`CopyMismatch`
    (a table read back differs; the target then keeps its unfinished-copy marker).
    """
    began = time.perf_counter()
    require_head(source)
    filling.require_finished(source, shown(source))
    require_distinct(source, destination)  # the first to open the target
    filling.prepare(destination, operation=operation, source=shown(source), replace=replace)
    layouts = [layout_of(table) for table in Base.metadata.sorted_tables]
    later = later_references(layouts)
    report = CopyReport()
    with snapshot(source) as reader:
        total = sum(_count(reader, layout) for layout in layouts)
        done = 0
        for layout in layouts:
            copied = TableCopy(layout.table.name, Fingerprint())
            progress(copied.name, done, total)
            with destination.begin() as writer, filling.triggers_off(writer, copied.name):
                for batch in stream_rows(reader, layout, batch_size):
                    copied.source.add(layout.kinds, batch)
                    write_rows(writer, layout, later.hold_back(layout, batch))
                    done += len(batch)
                    progress(copied.name, done, total)
            report.tables.append(copied)
    with destination.begin() as writer:
        later.fill_in(writer)
    verify(destination, layouts, report)
    filling.finish(destination)
    report.key_file = carry_instance_key(source, destination)
    report.seconds = time.perf_counter() - began
    return report


def verify(destination: Engine, layouts: Sequence[Layout], report: CopyReport) -> None:
    """Read every copied table back; :class:`CopyMismatch` names those that differ."""
    with destination.connect() as conn:
        for layout, copied in zip(layouts, report.tables, strict=True):
            copied.target = fingerprint_table(conn, layout, DEFAULT_BATCH_SIZE)
    different = [t.name for t in report.tables if not t.ok]
    if different:
        raise CopyMismatch(
            f"the copy differs from the source in {', '.join(different)}; "
            "the target is marked unfinished: run the copy again with --replace"
        )


def _count(conn: Connection, layout: Layout) -> int:
    return conn.scalar(select(func.count()).select_from(layout.table)) or 0


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection that cannot write and sees the whole database as it was at its
    first read, however long it reads and whatever writers do meanwhile."""
    viewer = read_only(engine)
    if engine.dialect.name == "postgresql":
        viewer = viewer.execution_options(isolation_level="REPEATABLE READ")
    with viewer.connect() as conn, conn.begin():
        driver: Any = conn.connection.driver_connection
        if conn.dialect.name == "sqlite" and not driver.in_transaction:
            # SQLite reads run in autocommit mode; one explicit read transaction
            # holds one snapshot (WAL) for every table.
            conn.exec_driver_sql("BEGIN")
        yield conn


def require_head(engine: Engine) -> None:
    """:class:`MigrationError` unless ``engine``'s database is at head."""
    state = migrations.state(engine)
    if not state.at_head:
        raise MigrationError(
            f"the source database is at {state.current or 'no revision'}, not at head "
            f"{state.head}: run `pfd-db migrate` on it first"
        )


def require_distinct(source: Engine, destination: Engine) -> None:
    """:class:`Conflict` when both engines reach the same database."""
    if identity(source.url) == identity(destination.url):
        raise Conflict("the source and the target are the same database")


def shown(engine: Engine) -> str:
    """How to name ``engine``'s database to the operator: a SQLite file by its path,
    a server by its URL without the password."""
    return locate(engine.url).described


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite database, however its URL names it (None: in memory or
    a server)."""
    return locate(engine.url).path


def carry_instance_key(source: Engine, destination: Engine) -> Path | None:
    """Copy the key file of a SQLite source (``<file>.key``) beside a SQLite target
    that has none, with mode 0600; the path written, or None."""
    held, wanted = locate(source.url).key_path, locate(destination.url).key_path
    if held is None or wanted is None:
        return None
    return copy_key_file(held, wanted)


def copy_key_file(held: Path, wanted: Path) -> Path | None:
    """Copy the instance key file ``held`` to ``wanted`` (mode 0600) unless ``held``
    is missing or ``wanted`` exists; the path written, or None."""
    if not held.exists() or wanted.exists():
        return None
    fd = os.open(wanted, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(held.read_bytes())
    return wanted
