"""Bring an LSTM_PFD dashboard database into pfd-db: ``pfd-db import-legacy``.

The legacy database (SQLite or PostgreSQL, made by the dashboard's
``create_all``) is only read, in one read-only snapshot. Its rows go, table by
table in the order of pfd-db's schema at head, into an empty pfd-db database
(migrated first, marked unfinished until the end, as a copy is: see
:mod:`pfd_db.portability.filling`), converted by
:mod:`pfd_db.portability.legacy_rows`. Ids are kept.

References are checked against what was imported: a row whose required
reference points at a row that is missing (SQLite never enforced the legacy
foreign keys) or was skipped is skipped; an optional one is emptied. A row the
database still refuses (a duplicate where pfd-db has a unique key, say) is
skipped with the database's reason, the rest of its batch imported. Then tag
counts are recomputed, sequences set and the search index built.

The report has, per table: rows read, imported, converted (changed on the way
in) and skipped with each reason; read = imported + skipped, always.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from sqlalchemy import Connection, Engine, column, func, inspect, select, table
from sqlalchemy.exc import DBAPIError

from pfd_db import crypto
from pfd_db.errors import InvalidInput, PfdDbError
from pfd_db.models import Base, Role
from pfd_db.portability import CopyMismatch, filling
from pfd_db.portability.copy import later_references, snapshot
from pfd_db.portability.legacy_rows import Context, Skip, as_row, convert
from pfd_db.portability.rows import Layout, Row, layout_of, write_rows
from pfd_db.progress import Progress, no_progress
from pfd_db.store.validation import require_member
from pfd_db.target import first_line, locate
from pfd_db.types import utcnow

DEFAULT_BATCH_SIZE = 2000
RECOUNT_TAGS = (
    "UPDATE tags SET usage_count = "
    "(SELECT count(*) FROM experiment_tags WHERE experiment_tags.tag_id = tags.id)"
)
WRONG_TAG_COUNTS = (
    "SELECT count(*) FROM tags WHERE usage_count <> "
    "(SELECT count(*) FROM experiment_tags WHERE experiment_tags.tag_id = tags.id)"
)


@dataclass
class TableImport:
    """One table of an import: rows read, imported, converted and skipped (by reason)."""

    name: str
    in_source: bool = True
    read: int = 0
    imported: int = 0
    converted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)

    @property
    def skipped_rows(self) -> int:
        return sum(self.skipped.values())

    @property
    def accounted(self) -> bool:
        return self.read == self.imported + self.skipped_rows


@dataclass
class LegacyReport:
    """What an import did, table by table."""

    tables: list[TableImport] = field(default_factory=list)

    @property
    def accounted(self) -> bool:
        """Whether every row read was either imported or skipped with a reason."""
        return all(t.accounted for t in self.tables)

    def table(self, name: str) -> TableImport:
        return next(t for t in self.tables if t.name == name)


def import_legacy(
    source: Engine,
    destination: Engine,
    *,
    source_timezone: str = "UTC",
    default_role: Role | str = Role.VIEWER,
    replace: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress = no_progress,
) -> LegacyReport:
    """Import the LSTM_PFD database ``source`` into ``destination`` (made an empty
    pfd-db database at head first; one holding data is refused unless ``replace``).

    ``source_timezone`` (an IANA name) is the zone of the legacy server's clock,
    which stamped ``api_keys`` and ``api_usage``; ``default_role`` is given to
    legacy users whose role is ``'user'`` (or unknown). ``source`` is only read:
    open a SQLite file read-only (:func:`pfd_db.target.sqlite_uri`) to be sure of it.
    """
    context = Context(_zone(source_timezone), _role(default_role), utcnow())
    layouts = [layout_of(t) for t in Base.metadata.sorted_tables]
    with snapshot(source) as reader:
        present = _legacy_tables(reader, locate(source.url).described)
        _require_instance_key_if_needed(reader)
        filling.prepare(
            destination,
            operation="import-legacy",
            source=locate(source.url).described,
            replace=replace,
        )
        run = _Import(reader, destination, layouts, context, batch_size, progress)
        report = run.all_tables(present)
    run.fill_in_later_references()
    _recount_tags(destination, report.table("tags"))
    _check_counts(destination, report)
    filling.finish(destination)
    return report


class _Import:
    """The state of one import: what was read and imported so far, by table."""

    def __init__(
        self,
        reader: Connection,
        destination: Engine,
        layouts: list[Layout],
        context: Context,
        batch_size: int,
        progress: Progress,
    ) -> None:
        self.reader, self.destination, self.layouts = reader, destination, layouts
        self.context, self.batch_size, self.progress = context, batch_size, progress
        self.later = later_references(layouts)
        parents = {fk.column.table.name for layout in layouts for fk in layout.table.foreign_keys}
        self.seen: dict[str, set[int]] = {name: set() for name in parents}
        self.imported: dict[str, set[int]] = {name: set() for name in parents}
        self.report = LegacyReport()
        self.done = 0
        self.total = 0

    def all_tables(self, present: set[str]) -> LegacyReport:
        self.total = sum(
            _count(self.reader, name) for name in present & {x.table.name for x in self.layouts}
        )
        for layout in self.layouts:
            summary = TableImport(layout.table.name, in_source=layout.table.name in present)
            self.report.tables.append(summary)
            if summary.in_source:
                self.one_table(layout, summary)
        return self.report

    def one_table(self, layout: Layout, summary: TableImport) -> None:
        name = layout.table.name
        self.progress(name, self.done, self.total)
        with self.destination.begin() as writer, filling.triggers_off(writer, name):
            for batch in _legacy_rows(self.reader, layout, self.batch_size):
                rows = [row for raw in batch if (row := self.converted(layout, raw, summary))]
                written = _write_sifting(writer, layout, rows, summary)
                if name in self.imported:
                    at = layout.index("id")
                    self.imported[name].update(row[at] for row in written)
                summary.imported += len(written)
                self.done += len(batch)
                self.progress(name, self.done, self.total)

    def converted(self, layout: Layout, raw: dict[str, Any], summary: TableImport) -> Row | None:
        name = layout.table.name
        summary.read += 1
        if name in self.seen:
            self.seen[name].add(raw["id"])
        try:
            result = convert(layout, raw, self.context)
            self._check_references(layout, result.values, result.notes)
        except Skip as reason:
            summary.skipped[str(reason)] += 1
            return None
        if result.notes:
            summary.converted += 1
            summary.changes.update(result.notes)
        return self.later.hold_back(layout, [as_row(layout, result)])[0]

    def _check_references(self, layout: Layout, values: dict[str, Any], notes: list[str]) -> None:
        deferred = {layout.columns[at].name for at in self.later.columns.get(layout.table.name, [])}
        for col in layout.columns:
            value = values[col.name]
            if value is None or col.name in deferred:
                continue
            for fk in col.foreign_keys:
                parent = fk.column.table.name
                if value in self.imported[parent]:
                    continue
                why = "was skipped" if value in self.seen[parent] else "does not exist"
                problem = f"{col.name} refers to {parent} {value}, which {why}"
                if not col.nullable:
                    raise Skip(problem.replace(f" {value},", ","))
                values[col.name] = None
                notes.append(f"{problem.replace(f' {value},', ',')}: emptied")

    def fill_in_later_references(self) -> None:
        """Write the held-back references whose rows were imported; empty the others."""
        for (table_name, column_name), pairs in self.later.held.items():
            col = Base.metadata.tables[table_name].c[column_name]
            parent = next(iter(col.foreign_keys)).column.table.name
            kept = [p for p in pairs if p["_v"] in self.imported[parent]]
            summary = self.report.table(table_name)
            for _ in range(len(pairs) - len(kept)):
                summary.converted += 1
                summary.changes[
                    f"{column_name} refers to a {parent} row not imported: emptied"
                ] += 1
            self.later.held[(table_name, column_name)] = kept
        with self.destination.begin() as writer:
            self.later.fill_in(writer)


def _legacy_rows(
    reader: Connection, layout: Layout, batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    """The legacy table's rows (as dicts of stored values) in id order, in batches:
    the columns pfd-db also has; JSON and enum types read as text."""
    name = layout.table.name
    wanted = set(layout.names)
    legacy = {c["name"]: c["type"] for c in inspect(reader).get_columns(name)}
    columns = [_as_read(reader, n, t) for n, t in legacy.items() if n in wanted]
    statement = select(*columns).select_from(table(name)).order_by(column("id"))
    result = reader.execution_options(yield_per=batch_size).execute(statement)
    for partition in result.partitions():
        yield [dict(row._mapping) for row in partition]


def _as_read(reader: Connection, name: str, type_: Any) -> Any:
    from sqlalchemy import JSON, Text, cast
    from sqlalchemy import Enum as SAEnum

    if reader.dialect.name == "postgresql" and isinstance(type_, JSON | SAEnum):
        return cast(column(name), Text).label(name)
    return column(name)


def _write_sifting(
    writer: Connection, layout: Layout, rows: Sequence[Row], summary: TableImport
) -> list[Row]:
    """Write ``rows``; if the database refuses the batch, write them one by one and
    skip those it refuses, with its reason. The rows written."""
    try:
        with writer.begin_nested():
            write_rows(writer, layout, rows)
        return list(rows)
    except REFUSALS:
        pass
    written = []
    for row in rows:
        try:
            with writer.begin_nested():
                write_rows(writer, layout, [row])
            written.append(row)
        except REFUSALS as exc:
            reason = first_line(getattr(exc, "orig", None) or exc)[:200]
            summary.skipped[f"refused by the database: {reason}"] += 1
    return written


REFUSALS = (DBAPIError, PfdDbError, psycopg.Error, sqlite3.Error)
"""How a database refuses a row: through SQLAlchemy, pfd-db's translation, or a
driver's COPY."""


def _count(conn: Connection, name: str) -> int:
    return conn.scalar(select(func.count()).select_from(table(name))) or 0


def check_options(source_timezone: str, default_role: Role | str) -> None:
    """:class:`InvalidInput` naming an unknown ``source_timezone`` or
    ``default_role``: checked before any database is opened."""
    _zone(source_timezone)
    _role(default_role)


def check_source(source: Engine, *, key_to_come: bool = False) -> None:
    """Refuse ``source`` before any target is created or key written:
    :class:`InvalidInput` when it is a pfd-db database or not an LSTM_PFD one;
    ``ConfigurationError`` when it holds TOTP secrets and no instance key is
    usable to encrypt them, unless ``key_to_come`` (one is created before the
    import: ``pfd-db import-legacy`` makes one beside a new SQLite target)."""
    with source.connect() as reader:
        _legacy_tables(reader, locate(source.url).described)
        if not key_to_come:
            _require_instance_key_if_needed(reader)


def _legacy_tables(reader: Connection, described: str) -> set[str]:
    """The tables of the LSTM_PFD database ``reader`` reads; :class:`InvalidInput`
    when it is not one (a pfd-db database, or one without users and experiments)."""
    present = set(inspect(reader).get_table_names())
    if "alembic_version" in present:
        raise InvalidInput(
            f"{described} is a pfd-db database, not an LSTM_PFD one: "
            "use pfd-db copy or pfd-db restore"
        )
    if "users" not in present or "experiments" not in present:
        raise InvalidInput(
            f"{described} is not an LSTM_PFD database (it has no users and experiments tables)"
        )
    return present


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"source_timezone: unknown time zone {name!r} (an IANA name such as Europe/Paris)"
        ) from None


def _role(role: Role | str) -> Role:
    return require_member(role, Role, "default_role")


def _require_instance_key_if_needed(reader: Connection) -> None:
    """Fail before writing anything if TOTP secrets must be encrypted without a key."""
    secrets_held = reader.scalar(
        select(func.count()).select_from(table("users")).where(column("totp_secret").is_not(None))
    )
    if secrets_held:
        crypto.encrypt("")  # ConfigurationError naming the missing key


def _recount_tags(destination: Engine, summary: TableImport) -> None:
    with destination.begin() as conn:
        wrong = conn.exec_driver_sql(WRONG_TAG_COUNTS).scalar() or 0
        conn.exec_driver_sql(RECOUNT_TAGS)
    if wrong:
        summary.converted += wrong
        summary.changes["usage_count recomputed from the links"] += wrong


def _check_counts(destination: Engine, report: LegacyReport) -> None:
    with destination.connect() as conn:
        wrong = [t.name for t in report.tables if _count(conn, t.name) != t.imported]
    if wrong:
        raise CopyMismatch(f"the imported row counts do not add up in {', '.join(wrong)}")
