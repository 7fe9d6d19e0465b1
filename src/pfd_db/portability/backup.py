"""Backups taken while writers keep working, and restores: ``pfd-db backup``/``restore``.

- SQLite: SQLite's online backup API copies the pages of one read snapshot
  (in a single step: a stepped backup would start over at every concurrent
  write) into a new file, left in rollback-journal mode so that the backup is
  one self-contained file. The instance key file beside the database is copied
  beside the backup (``<backup>.key``, mode 0600).
- PostgreSQL: ``pg_dump --format=custom`` when it is on the PATH (its own
  snapshot); otherwise a pfd-db copy (:mod:`pfd_db.portability.copy`, also one
  snapshot) into a SQLite file. The report says which was done.

Each is written aside, synced and renamed into place with a manifest beside it
(:mod:`pfd_db.portability.manifest`); a restore verifies the file against its
manifest before it writes anything, and refuses one that carries the
unfinished-copy marker.

A restore reads either kind: a SQLite backup file is copied into the target
with :func:`~pfd_db.portability.copy.copy_database`, after migrating a scratch
copy of it to head if it is older; a ``pg_dump``
archive is loaded with ``pg_restore`` in one transaction, then migrated to head.
Partitioned log tables in the target are dropped before, in a transaction that
marks the target unfinished (``pg_restore --clean`` cannot drop them itself; see
:func:`~pfd_db.portability.filling.drop_partitioned_tables`): a restore that fails
then leaves a database that every later restore and copy refuses until replaced.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, inspect, select

from pfd_db import migrations
from pfd_db.engine import make_engine, read_only
from pfd_db.errors import Conflict, InvalidInput, PfdDbError
from pfd_db.models import Base
from pfd_db.pgbouncer import refuse_through_pgbouncer
from pfd_db.portability import filling, manifest
from pfd_db.portability.copy import (
    CopyReport,
    copy_database,
    copy_key_file,
    shown,
)
from pfd_db.progress import Progress, no_progress
from pfd_db.target import SQLITE_MAGIC, key_beside, locate, sqlite_uri

PG_DUMP_MAGIC = b"PGDMP"
ONLINE_BACKUP = "SQLite online backup"
PG_DUMP = "pg_dump --format=custom"
COPY_TO_SQLITE = "pfd-db copy into a SQLite file (pg_dump is not on the PATH)"


@dataclass
class BackupReport:
    """What a backup or restore did: how, where, and the rows per table it holds."""

    method: str
    path: Path
    tables: dict[str, int] = field(default_factory=dict)
    key_file: Path | None = None
    copy: CopyReport | None = None
    dumped: list[str] = field(default_factory=list)
    """The tables ``pg_dump`` wrote."""
    revision: str | None = None

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


# --- backup ------------------------------------------------------------------------


def backup(
    source: Engine,
    path: Path,
    *,
    progress: Progress = no_progress,
    tools_path: str | None = None,
) -> BackupReport:
    """Write a consistent snapshot of ``source`` to the new file ``path``, and its
    manifest beside it (see :mod:`pfd_db.portability.manifest`).

    ``tools_path`` is where ``pg_dump`` is looked for (default: the PATH; ``""``:
    nowhere, which forces the copy into a SQLite file). Refuses an existing
    ``path`` and a source holding an unfinished copy (:class:`Conflict`). The file
    is written aside and renamed once complete: cut short, nothing is at ``path``.
    """
    path = path.expanduser().resolve()
    if path.exists():
        raise Conflict(f"{path} already exists: choose a new file for the backup")
    if not path.parent.is_dir():
        raise InvalidInput(f"no directory {path.parent} for the backup")
    filling.require_finished(source, shown(source))
    held = locate(source.url).key_path
    with manifest.written_aside(path) as partial:
        if source.dialect.name == "sqlite":
            report = _online_backup(source, partial, progress)
        elif (pg_dump := shutil.which("pg_dump", path=tools_path)) is not None:
            report = _pg_dump(source, partial, pg_dump, progress)
        else:
            report = _copy_to_sqlite(source, partial, progress)
        described = manifest.describe(partial, report.method, report.revision, report.tables)
        # The key goes first: a backup that has its name has its key beside it.
        report.key_file = copy_key_file(held, key_beside(path)) if held else None
        try:
            manifest.publish(partial, path, described)
        except BaseException:
            if report.key_file is not None:
                report.key_file.unlink(missing_ok=True)
            raise
    report.path = path
    return report


def _online_backup(source: Engine, path: Path, progress: Progress) -> BackupReport:
    with source.connect() as conn:
        driver: Any = conn.connection.driver_connection
        copy = sqlite3.connect(path)
        try:
            driver.backup(
                copy, pages=-1, progress=lambda _s, left, all_: progress("pages", all_ - left, all_)
            )
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    copy_engine = sqlite_engine(path)
    try:
        revision = migrations.state(copy_engine).current
        return BackupReport(ONLINE_BACKUP, path, count_rows(copy_engine), revision=revision)
    finally:
        copy_engine.dispose()


def _pg_dump(source: Engine, path: Path, pg_dump: str, progress: Progress) -> BackupReport:
    refuse_through_pgbouncer(source, "pg_dump")  # its session settings would reach others
    tables = len(inspect(source).get_table_names())
    done = 0
    dumped: list[str] = []

    def on_line(line: str) -> None:
        nonlocal done
        if "dumping contents of table" in line:
            done += 1
            dumped.append(line.rsplit(".", 1)[-1].strip().strip('"'))
            progress(dumped[-1], done, tables)

    viewer = source.execution_options(isolation_level="REPEATABLE READ")
    with viewer.connect() as conn, conn.begin():
        # pg_dump reads the snapshot the rows were counted in.
        snapshot_id = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        counts = _counted(conn)
        revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        run_tool(
            [pg_dump, "--format=custom", "--verbose", "--no-password", f"--file={path}",
             f"--snapshot={snapshot_id}"],
            source,
            on_line,
        )  # fmt: skip
    return BackupReport(PG_DUMP, path, counts, dumped=dumped, revision=revision)


def _copy_to_sqlite(source: Engine, path: Path, progress: Progress) -> BackupReport:
    copy = sqlite_engine(path, writable=True)
    try:
        report = copy_database(source, copy, progress=progress, operation="backup")
        revision = migrations.state(copy).current
    finally:
        copy.dispose()
    _leave_rollback_journal(path)
    tables = {t.name: t.source.rows for t in report.tables}
    return BackupReport(COPY_TO_SQLITE, path, tables, copy=report, revision=revision)


def _leave_rollback_journal(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()


# --- restore -----------------------------------------------------------------------


def restore(
    path: Path,
    destination: Engine,
    *,
    replace: bool = False,
    progress: Progress = no_progress,
    tools_path: str | None = None,
) -> BackupReport:
    """Load the backup at ``path`` into ``destination``, which must hold no data
    unless ``replace``; it ends at head. Refused before anything is written: a file
    that is not a whole pfd-db backup (see :func:`verify_backup`)."""
    path = path.expanduser().resolve()
    kind, _ = verify_backup(path)
    if kind == PG_DUMP:
        return _pg_restore(path, destination, replace, progress, tools_path)
    with _at_head(path) as source:
        report = copy_database(
            source, destination, replace=replace, progress=progress, operation="restore"
        )
    wanted = locate(destination.url).key_path
    key = copy_key_file(key_beside(path), wanted) if wanted else None
    tables = {t.name: t.source.rows for t in report.tables}
    return BackupReport(f"copy from {ONLINE_BACKUP} file", path, tables, key, report)


def verify_backup(path: Path) -> tuple[str, manifest.Manifest]:
    """The kind of the backup ``path`` and its manifest, once the file is found
    whole: it matches its manifest (size, checksum, and rows per table for a SQLite
    file), its revision is known and it holds no unfinished copy. Raises
    :class:`InvalidInput`, :class:`MigrationError` or :class:`Conflict`; nothing is
    written."""
    path = path.expanduser().resolve()
    kind = backup_kind(path)
    described = manifest.verify(path)
    if kind == ONLINE_BACKUP:
        engine = sqlite_engine(path)
        try:
            filling.require_finished(engine, str(path))
            found = count_rows(engine)
        finally:
            engine.dispose()
        if found != described.tables:
            raise InvalidInput(
                f"{path} does not hold the rows its manifest lists: the backup is damaged"
            )
    return kind, described


def require_restorable(
    path: Path, kind: str, dialect: str, tools_path: str | None = None
) -> str | None:
    """Refuse, before the target is opened or created, a backup of ``kind`` (from
    :func:`verify_backup`) that cannot go into a ``dialect`` database: a ``pg_dump``
    archive needs PostgreSQL and ``pg_restore`` (looked for in ``tools_path``,
    default the PATH). The ``pg_restore`` to run, or None for a SQLite backup."""
    if kind != PG_DUMP:
        return None
    if dialect != "postgresql":
        raise InvalidInput(
            f"{path} is a pg_dump archive: restore it into PostgreSQL (--url postgresql://...)"
        )
    pg_restore = shutil.which("pg_restore", path=tools_path)
    if pg_restore is None:
        raise PfdDbError("pg_restore is not on the PATH: install PostgreSQL's client tools")
    return pg_restore


def backup_kind(path: Path) -> str:
    """:data:`PG_DUMP` or :data:`ONLINE_BACKUP` (any SQLite file), read from the
    file's first bytes; :class:`InvalidInput` for anything else."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise InvalidInput(f"cannot read the backup {path}: {exc.strerror}") from None
    if head.startswith(PG_DUMP_MAGIC):
        return PG_DUMP
    if head == SQLITE_MAGIC:
        return ONLINE_BACKUP
    raise InvalidInput(f"{path} is neither a SQLite database nor a pg_dump custom archive")


@contextmanager
def _at_head(path: Path) -> Iterator[Engine]:
    """A read-only engine on the SQLite backup ``path`` at head: the file itself,
    or, when it is older, a scratch copy migrated to head (the backup is never
    written)."""
    backup_engine = sqlite_engine(path)
    try:
        if migrations.state(backup_engine).at_head:
            yield backup_engine
            return
        with tempfile.TemporaryDirectory(prefix="pfd-restore-") as scratch:
            copy = Path(scratch) / "restore.db"
            with backup_engine.connect() as conn:
                conn.connection.driver_connection.backup(sqlite3.connect(copy))  # type: ignore[union-attr]
            migrated = sqlite_engine(copy, writable=True)
            try:
                migrations.upgrade(migrated)
                yield read_only(migrated)
            finally:
                migrated.dispose()
    finally:
        backup_engine.dispose()


def _pg_restore(
    path: Path, destination: Engine, replace: bool, progress: Progress, tools_path: str | None
) -> BackupReport:
    pg_restore = require_restorable(path, PG_DUMP, destination.dialect.name, tools_path)
    assert pg_restore is not None
    refuse_through_pgbouncer(destination, "pg_restore")  # as pg_dump, and then migrations
    found = filling.unfinished_copy(destination)
    filled = filling.tables_with_rows(destination)
    if (found or filled) and not replace:
        raise Conflict(
            f"the target database holds {found or 'data'}: give an empty database, "
            "or --replace to delete everything in it first"
        )
    with destination.begin() as conn:
        filling.drop_partitioned_tables(conn, "restore", str(path))
    total = len(Base.metadata.tables) + 1
    done = 0

    def on_line(line: str) -> None:
        nonlocal done
        if "processing data for table" in line:
            done += 1
            # partitions count as tables of their own: the total grows with them
            progress(line.rsplit(".", 1)[-1].strip().strip('"'), done, max(total, done))

    run_tool(
        [pg_restore, "--verbose", "--no-password", "--clean", "--if-exists", "--no-owner",
         "--no-privileges", "--single-transaction", "--exit-on-error", str(path)],
        destination,
        on_line,
    )  # fmt: skip
    if filling.unfinished_copy(destination):
        with destination.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {filling.MARKER_TABLE}")
    migrations.upgrade(destination)
    return BackupReport(f"pg_restore of a {PG_DUMP} archive", path, count_rows(destination))


# --- shared ------------------------------------------------------------------------


def run_tool(command: list[str], engine: Engine, on_line: Callable[[str], None]) -> None:
    """Run a PostgreSQL client tool on ``engine``'s database (see
    :meth:`~pfd_db.target.Target.client_command`: the password in the environment,
    never on the command line), feeding each line it writes to stderr to
    ``on_line``; :class:`PfdDbError` with its last words if it fails."""
    tool_command = locate(engine.url).client_command(command[0], command[1:], name_database=True)
    said: list[str] = []
    with subprocess.Popen(  # noqa: S603 - a client tool found on the PATH, no shell
        tool_command.argv,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=tool_command.environment,
    ) as tool:
        assert tool.stderr is not None
        for line in tool.stderr:
            said.append(line.rstrip())
            on_line(line)
    if tool.returncode != 0:
        last = [line for line in said if "error" in line.lower()] or said[-3:]
        raise PfdDbError(f"{Path(command[0]).name} failed: {' '.join(last)[-500:]}")


def sqlite_engine(path: Path, *, writable: bool = False) -> Engine:
    """An engine on the SQLite file ``path``: read-only unless ``writable`` (then
    created if missing)."""
    if writable:
        return make_engine(sqlite_uri(path, "rwc"))
    return read_only(make_engine(sqlite_uri(path, "ro")))


def count_rows(engine: Engine) -> dict[str, int]:
    """Rows per pfd-db table of ``engine``'s database (tables it lacks left out)."""
    with engine.connect() as conn:
        return _counted(conn)


def _counted(conn: Connection) -> dict[str, int]:
    present = set(inspect(conn).get_table_names())
    return {
        t.name: conn.scalar(select(func.count()).select_from(t)) or 0
        for t in Base.metadata.sorted_tables
        if t.name in present
    }
