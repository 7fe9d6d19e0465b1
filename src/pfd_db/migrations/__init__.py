"""The migration history and the operations on it, over Alembic.

Every function takes an engine (made with :func:`pfd_db.engine.make_engine`)
and raises a :class:`~pfd_db.errors.PfdDbError` for what an operator can fix:
an unreachable database, an unknown revision, a database with tables but no
history (:class:`~pfd_db.errors.UnversionedDatabase`), a schema that differs
from the models (:class:`~pfd_db.errors.SchemaDrift`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect

from pfd_db.errors import MigrationError, SchemaDrift, UnversionedDatabase
from pfd_db.migrations.compare import (
    extra_drift,
    include_object_for,
    quiet_expression_index_reflection,
)
from pfd_db.models import Base
from pfd_db.target import verify_reachable

MIGRATIONS_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = MIGRATIONS_DIR / "alembic.ini"
VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str


@dataclass(frozen=True)
class DatabaseState:
    """Where a database stands: its revision and whether it has pfd-db tables."""

    current: str | None
    head: str
    versioned: bool
    model_tables: int

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def needs_adoption(self) -> bool:
        return not self.versioned and self.model_tables > 0


def alembic_config(url: str | None = None) -> Config:
    """The packaged Alembic configuration, pointed at ``url`` when given."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def script_directory() -> ScriptDirectory:
    """The packaged revisions, read once per process (every command asks for head)."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise MigrationError("the package has no migration revisions")
    return head


def history() -> list[Revision]:
    """Every revision, oldest first."""
    scripts = reversed(list(script_directory().walk_revisions()))
    return [
        Revision(s.revision, _single(s.down_revision), (s.doc or "").splitlines()[0])
        for s in scripts
    ]


def _single(down: Any) -> str | None:
    return down if down is None or isinstance(down, str) else ",".join(down)


def state(engine: Engine) -> DatabaseState:
    """The database's revision and tables, after checking it can be reached."""
    verify_reachable(engine)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        current = MigrationContext.configure(conn).get_current_revision()
    return DatabaseState(
        current=current,
        head=head_revision(),
        versioned=VERSION_TABLE in tables,
        model_tables=len(tables & set(Base.metadata.tables)),
    )


@contextmanager
def _alembic(engine: Engine) -> Iterator[Config]:
    """An Alembic config that runs on a connection of ``engine``; Alembic's own
    errors (unknown revision, ...) come out as :class:`MigrationError`."""
    with engine.connect() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        try:
            yield config
        except CommandError as exc:
            raise MigrationError(str(exc)) from None


def upgrade(engine: Engine, revision: str = "head") -> DatabaseState:
    """Upgrade to ``revision`` (default: head); a no-op when already there.

    Refuses a database that has pfd-db tables but no history: see :func:`adopt`.
    """
    before = state(engine)
    if before.needs_adoption:
        raise UnversionedDatabase(
            f"the database has {before.model_tables} pfd-db tables but no migration history; "
            "run `pfd-db migrate --adopt` to check it against the models and stamp it"
        )
    with _alembic(engine) as config:
        command.upgrade(config, revision)
    return state(engine)


def downgrade(engine: Engine, revision: str) -> DatabaseState:
    """Downgrade to ``revision`` (``base`` removes every table)."""
    with _alembic(engine) as config:
        command.downgrade(config, revision)
    return state(engine)


def offline_sql(url: str, revision: str = "head", start: str | None = None) -> str:
    """The SQL that upgrades a database at ``start`` (default: empty) to ``revision``,
    for a DBA to review and run; nothing is executed."""
    buffer = io.StringIO()
    config = alembic_config(url)
    config.output_buffer = buffer
    target = f"{start}:{revision}" if start else revision
    try:
        command.upgrade(config, target, sql=True)
    except CommandError as exc:
        raise MigrationError(str(exc)) from None
    return buffer.getvalue()


def schema_drift(engine: Engine) -> list[str]:
    """How the live schema differs from the models, one line per difference
    (empty when they agree): tables, columns, indexes and triggers. Dialect-only
    objects such as FTS tables are left out."""
    with engine.connect() as conn, quiet_expression_index_reflection():
        return [_describe(diff) for diff in _compare(conn)] + extra_drift(conn)


def _compare(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn,
        opts={
            "include_object": include_object_for(conn.dialect.name),
            "compare_type": True,
            "target_metadata": Base.metadata,
        },
    )
    return list(compare_metadata(context, Base.metadata))


def _describe(diff: Any) -> str:
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(_describe(d) for d in diff)
    action, *details = diff
    names = [getattr(d, "name", None) or str(d) for d in details if d is not None]
    return f"{action}: {' '.join(str(n) for n in names)}"


def adopt(engine: Engine) -> DatabaseState:
    """Stamp a database made without migrations (``create_all``) at head, after
    checking that its schema matches the models; refuse with
    :class:`SchemaDrift` when it does not."""
    current = state(engine)
    if current.versioned:
        raise MigrationError(f"the database already has a migration history (at {current.current})")
    differences = schema_drift(engine)
    if differences:
        raise SchemaDrift(
            f"the database does not match the models ({len(differences)} differences); "
            "not adopting it",
            differences,
        )
    with _alembic(engine) as config:
        command.stamp(config, "head")
    return state(engine)
