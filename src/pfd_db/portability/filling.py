"""The database a copy, restore or import fills: made empty at head, marked while filled.

:func:`prepare` refuses a target that holds data (unless asked to replace it),
migrates it to head with :mod:`pfd_db.migrations` and creates a marker table,
:data:`MARKER_TABLE`, in its own committed transaction. :func:`finish` sets the
PostgreSQL id sequences past the largest ids, gives the rows that went to a
partitioned log table's default partition the monthly partitions of their months
(:func:`pfd_db.store.ops.partitions.ensure_partitions`), and drops the marker last. So a
copy stopped at any moment (a crash, a kill, a full disk) leaves either the
database as it was or one that still carries the marker: every later copy
refuses it until told to replace it, and every command that reads it whole
(``copy``, ``backup``, ``restore``, ``check``, ``status``) refuses it in the one
line of :func:`require_finished`, naming the command that completes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from pfd_db import migrations
from pfd_db.errors import Conflict, UnversionedDatabase
from pfd_db.models import Base, Experiment
from pfd_db.models.fulltext import FTS_TABLE, search_document
from pfd_db.target import command_url
from pfd_db.types import utcnow

MARKER_TABLE = "pfd_unfinished_copy"
SEARCHED_TABLE = "experiments"


def unfinished_copy(engine: Engine) -> str | None:
    """What the marker says (operation, source, start time) if an unfinished copy
    left it in ``engine``'s database; None otherwise."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(MARKER_TABLE):
            return None
        row = conn.execute(
            text(f"SELECT operation, source, started_at FROM {MARKER_TABLE}")  # noqa: S608
        ).first()
    if row is None:
        return "an unfinished copy"
    return f"an unfinished {row.operation} from {row.source} (started {row.started_at})"


REDO = {
    "copy": "run `pfd-db copy --url SOURCE --to {this} --replace --yes` again to complete it",
    "restore": "run `pfd-db restore BACKUP --url {this} --replace --yes` again to complete it",
    "backup": "it is a backup cut short: take a new one (`pfd-db backup NEW_FILE --url SOURCE`)",
    "import-legacy": (
        "run `pfd-db import-legacy --from LEGACY --url {this} --replace --yes` again to complete it"
    ),
}
"""What to do about a database each operation left unfinished (``--yes``: the
target is a half-filled database, which ``--replace`` may empty)."""


def require_finished(engine: Engine, shown: str) -> None:
    """:class:`Conflict` when ``engine``'s database (``shown`` to the operator)
    carries the unfinished-copy marker: it is not a whole database to read from.
    The message names the command that completes it, with the database's URL as
    ``pfd-db`` accepts it (:func:`command_url`: never a password)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(MARKER_TABLE):
            return
        row = conn.execute(
            text(f"SELECT operation, source FROM {MARKER_TABLE}")  # noqa: S608
        ).first()
    operation, source = (row.operation, row.source) if row else ("copy", "another database")
    redo = REDO.get(operation, REDO["copy"]).format(this=command_url(engine.url))
    raise Conflict(
        f"{shown} holds an unfinished {operation} from {source}, not a whole database: "
        f"{redo} (or start again), then use it"
    )


def tables_with_rows(engine: Engine) -> list[str]:
    """The pfd-db tables of ``engine``'s database that hold at least one row."""
    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
        quote = conn.dialect.identifier_preparer.quote
        return [
            table.name
            for table in Base.metadata.sorted_tables
            if table.name in present
            and conn.exec_driver_sql(f"SELECT 1 FROM {quote(table.name)} LIMIT 1").first()  # noqa: S608
        ]


def prepare(engine: Engine, *, operation: str, source: str, replace: bool) -> None:
    """Make ``engine``'s database an empty pfd-db database at head, marked as being
    filled by ``operation`` from ``source`` (a description, no secrets).

    Raises :class:`Conflict` when it holds data or an unfinished copy and
    ``replace`` is false; with ``replace``, every row is deleted first.
    """
    if migrations.state(engine).needs_adoption:
        raise UnversionedDatabase(
            "the target database has pfd-db tables but no migration history: "
            "not a pfd-db database this command can fill"
        )
    unfinished = unfinished_copy(engine)
    filled = tables_with_rows(engine)
    if not replace and (unfinished or filled):
        found = unfinished or f"data in {len(filled)} tables ({', '.join(filled[:5])}…)"
        raise Conflict(
            f"the target database holds {found}: give an empty database, "
            "or --replace to delete everything in it first"
        )
    migrations.upgrade(engine)
    with engine.begin() as conn:
        # One transaction: a kill leaves the old rows or an empty, marked database.
        if replace:
            _empty(conn)
        _create_marker(conn, operation, source, utcnow())


def finish(engine: Engine) -> None:
    """Set the id sequences past the largest ids (PostgreSQL), check the search
    index and drop the marker: the last step of filling a database."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            set_sequences(conn)
            partition_rows(conn)
        require_search_index(conn)
        conn.exec_driver_sql(f"DROP TABLE {MARKER_TABLE}")


@contextmanager
def triggers_off(conn: Connection, table: str) -> Iterator[None]:
    """Within ``conn``'s transaction, rows written to ``table`` fire none of its
    triggers: what they derive (tag counts, the SQLite search index) is copied or
    rebuilt instead. PostgreSQL: ``DISABLE TRIGGER USER`` (foreign keys are still
    checked); SQLite: the triggers are dropped and created again, and the search
    index is rebuilt when ``table`` is the searched one. Both are undone with the
    transaction if it fails."""
    name = conn.dialect.identifier_preparer.quote(table)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ALTER TABLE {name} DISABLE TRIGGER USER")
        yield
        conn.exec_driver_sql(f"ALTER TABLE {name} ENABLE TRIGGER USER")
        return
    triggers = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table,)
    ).all()
    for trigger, _ in triggers:
        conn.exec_driver_sql(f"DROP TRIGGER {conn.dialect.identifier_preparer.quote(trigger)}")
    yield
    if table == SEARCHED_TABLE:
        # In the same transaction: a commit never leaves the index out of step.
        rebuild_search_index(conn)
    for _, ddl in triggers:
        conn.exec_driver_sql(ddl)


def rebuild_search_index(conn: Connection) -> None:
    """Index every experiment again in SQLite's FTS5 table (after triggers were off)."""
    conn.exec_driver_sql(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")  # noqa: S608


def search_index_problem(conn: Connection) -> str | None:
    """Why the search index is out of step with the experiments, or None. SQLite:
    FTS5's own ``integrity-check`` against the content table; PostgreSQL: the
    generated column compared with the document it is generated from."""
    if conn.dialect.name == "sqlite":
        try:
            conn.exec_driver_sql(
                f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('integrity-check', 1)"  # noqa: S608
            )
        except DBAPIError as exc:
            return f"{FTS_TABLE} does not match the experiments ({str(exc.orig).splitlines()[0]})"
        return None
    stale = conn.scalar(
        select(func.count())
        .select_from(Experiment)
        .where(
            Experiment.search_vector.is_distinct_from(
                search_document(Experiment.name, Experiment.model_type, Experiment.notes)
            )
        )
    )
    return f"{stale} experiments have a stale search_vector" if stale else None


def require_search_index(conn: Connection) -> None:
    """:class:`CopyMismatch` when :func:`search_index_problem` finds one."""
    problem = search_index_problem(conn)
    if problem is not None:
        from pfd_db.portability import CopyMismatch

        raise CopyMismatch(
            f"the search index of the copy is inconsistent: {problem}; the target is marked "
            "unfinished: run the copy again with --replace"
        )


def set_sequences(conn: Connection) -> None:
    """Point each table's id sequence past its largest id, so new rows get new ids."""
    quote = conn.dialect.identifier_preparer.quote
    for table in Base.metadata.sorted_tables:
        if "id" not in table.c:
            continue
        name = quote(table.name)
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "  # noqa: S608
            f"coalesce(max(id), 0) + 1, false) FROM {name}"
        )


def partition_rows(conn: Connection) -> None:
    """Create the monthly partitions the copied rows need (PostgreSQL, partitioned
    log tables), moving them out of the default partition, in ``conn``'s transaction."""
    from sqlalchemy.orm import Session

    from pfd_db.store.ops.partitions import ensure_partitions

    with Session(bind=conn) as session:
        ensure_partitions(session)


def drop_partitioned_tables(conn: Connection, operation: str, source: str) -> None:
    """Drop the partitioned log tables (partitions and all) of ``conn``'s database,
    marking it as being filled by ``operation`` from ``source``, in ``conn``'s
    transaction: ``pg_restore --clean`` cannot drop a partition's primary key before
    its table's (PostgreSQL refuses: it is inherited), and the marker says the
    database is unfinished until the restore ends (see the module doc)."""
    from sqlalchemy.orm import Session

    from pfd_db.store.ops.partitions import partitioned_tables

    with Session(bind=conn) as session:
        tables = list(partitioned_tables(session))
    if not tables:
        return
    if not inspect(conn).has_table(MARKER_TABLE):
        _create_marker(conn, operation, source, utcnow())
    quote = conn.dialect.identifier_preparer.quote
    conn.exec_driver_sql(f"DROP TABLE {', '.join(quote(t) for t in tables)}")


def _create_marker(conn: Connection, operation: str, source: str, started: datetime) -> None:
    conn.exec_driver_sql(
        f"CREATE TABLE {MARKER_TABLE} "
        "(operation VARCHAR(40) NOT NULL, source VARCHAR(1000) NOT NULL, "
        "started_at VARCHAR(40) NOT NULL)"
    )
    conn.execute(
        text(f"INSERT INTO {MARKER_TABLE} VALUES (:operation, :source, :started)"),  # noqa: S608
        {"operation": operation, "source": source[:1000], "started": started.isoformat()},
    )


def _empty(conn: Connection) -> None:
    """Delete every row of every pfd-db table, and the marker, in ``conn``'s transaction."""
    present = set(inspect(conn).get_table_names())
    quote = conn.dialect.identifier_preparer.quote
    names = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name in present]
    if conn.dialect.name == "postgresql":
        if names:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(map(quote, names))} RESTART IDENTITY")
    else:
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        for name in names:
            # Triggers off: an index left out of step must not be fed deletes.
            with triggers_off(conn, name):
                conn.exec_driver_sql(f"DELETE FROM {quote(name)}")  # noqa: S608
    if MARKER_TABLE in present:
        conn.exec_driver_sql(f"DROP TABLE {MARKER_TABLE}")
