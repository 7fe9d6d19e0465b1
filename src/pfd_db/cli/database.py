"""Choosing a command's database: which one (``--url``, else the settings), what
the command needs of it (:class:`Access`), and an engine checked for that.

Built on :mod:`pfd_db.target`, which owns URLs, SQLite file URIs and
reachability; this module decides only what the CLI allows: which files may be
created or written, and which revisions each command accepts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from pfd_db.migrations import DatabaseState
    from pfd_db.target import Mode, Target


@dataclass(frozen=True)
class Access:
    """What a command needs of its database."""

    writes: bool
    creates: bool
    revision: Literal["any", "known", "versioned", "head"]
    """Which revisions it accepts: any; none or one this pfd-db knows; one it
    knows; head only."""


INSPECT = Access(writes=False, creates=False, revision="any")
"""Look at any database, read-only: status, current, check, import-legacy's source."""
READ = Access(writes=False, creates=False, revision="head")
"""Read a database at head, read-only: user list, apikey list."""
WRITE = Access(writes=True, creates=False, revision="head")
"""Change the data of a database at head: seed, demo, user, apikey, key, shell."""
MIGRATE = Access(writes=True, creates=False, revision="versioned")
"""Move the schema of a database that has a revision: downgrade."""
CREATE = Access(writes=True, creates=True, revision="known")
"""Create or migrate a database: init, migrate."""


def target_of(url: str | None) -> Target:
    """The database ``url`` names (default: the settings'); an unusable URL is refused."""
    from pfd_db.config import get_settings
    from pfd_db.target import locate

    return locate(url or get_settings().url)


@contextmanager
def url_in_settings(url: str | None) -> Iterator[None]:
    """Within the block, ``--url`` is the settings' URL as PFD_DB_URL would be, so
    what follows the settings (the instance key beside a SQLite file, sessions)
    follows ``--url`` too."""
    from pfd_db.config import get_settings
    from pfd_db.crypto import following_settings

    if url is None:
        with following_settings():
            yield
        return
    saved = os.environ.get("PFD_DB_URL")
    os.environ["PFD_DB_URL"] = url
    get_settings.cache_clear()
    try:
        with following_settings():
            yield
    finally:
        if saved is None:
            os.environ.pop("PFD_DB_URL", None)
        else:
            os.environ["PFD_DB_URL"] = saved
        get_settings.cache_clear()


@contextmanager
def database(url: str | None, access: Access = WRITE) -> Iterator[Engine]:
    """An engine on the database ``url`` names (the settings follow it, see
    :func:`url_in_settings`), checked for what ``access`` needs (see :func:`opened`)."""
    with url_in_settings(url), opened(target_of(url), access) as engine:
        yield engine


@contextmanager
def opened(target: Target, access: Access) -> Iterator[Engine]:
    """An engine on ``target``, checked for what ``access`` needs.

    Refused, before anything is written: a SQLite path that is missing (unless
    ``access.creates``), a directory, not a database, or not writable when
    ``access.writes``; a database that cannot be reached; a revision that is not
    head (or unknown) when ``access`` needs it. Read-only access opens SQLite
    read-only and refuses every write, so inspecting changes nothing.
    """
    if target.path is not None:
        check_file(target.path, access)
    if target.path is None or target.path.exists():
        with _engine(target, writable=False) as reader:
            require_revision(reader, target, access)
            if not access.writes:
                yield reader
                return
    with _engine(target, writable=True) as writer:
        yield writer


@contextmanager
def transaction(url: str | None, access: Access = WRITE) -> Iterator[Session]:
    """A session on ``url`` (checked as by :func:`database`) that commits when the
    block succeeds and rolls back when it raises."""
    from sqlalchemy.orm import Session

    with (
        database(url, access) as engine,
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        yield session


def check_file(path: Path, access: Access) -> None:
    """Refuse a SQLite path the command cannot use, naming the fix."""
    from pfd_db.errors import DatabaseUnavailable

    if path.is_dir():
        raise DatabaseUnavailable(
            f"{path} is a directory, not a database file: pass --url sqlite:///{path}/pfd.db"
        )
    if not path.exists():
        if not access.creates:
            raise DatabaseUnavailable(
                f"no pfd-db database at {path}: run pfd-db init, or pass --url"
            )
        if not path.parent.is_dir():
            raise DatabaseUnavailable(
                f"no directory {path.parent} for the database {path}: create it, or pass --url"
            )
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise DatabaseUnavailable(
                f"cannot create {path}: the directory {path.parent} is not writable"
            )
        return
    if access.writes and not (
        os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)
    ):
        raise DatabaseUnavailable(
            f"the database {path} is read-only (the file or its directory): make both "
            "writable, or use a command that only reads (status, check, user list, ...)"
        )


@contextmanager
def _engine(target: Target, *, writable: bool) -> Iterator[Engine]:
    """An engine on ``target``, checked to be reachable. Read-only: SQLite is opened
    read-only (and immutable when it cannot be written at all), and the
    engine refuses writes. Writable: an existing SQLite file is never re-created."""
    from pfd_db.engine import make_engine, read_only
    from pfd_db.target import verify_reachable

    engine = make_engine(target.connect_url(_mode(target.path, writable)))
    try:
        verify_reachable(engine)
        yield engine if writable else read_only(engine)
    finally:
        engine.dispose()


def _mode(path: Path | None, writable: bool) -> Mode:
    """How to open the SQLite file ``path``, so that a read never creates a file."""
    from pfd_db.cli.sqlite_files import wal_without_readers
    from pfd_db.target import sqlite_side_file

    if path is None or writable:
        return "rw" if path is None or path.exists() else "rwc"
    if os.access(path.parent, os.W_OK) and wal_without_readers(path):
        return "rw"  # so that it removes its -wal/-shm; read_only() refuses writes
    if os.access(path, os.W_OK) and (
        os.access(path.parent, os.W_OK) or sqlite_side_file(path, "shm").exists()
    ):
        return "ro"
    return "ro-immutable"  # nothing can write it (nor its WAL index): read it as it is


def require_revision(engine: Engine, target: Target, access: Access) -> DatabaseState:
    """The database's migration state, refused when ``access`` needs head (or a
    revision this pfd-db knows) and it is not."""
    from pfd_db import migrations
    from pfd_db.errors import MigrationError

    state = migrations.state(engine)
    if access.revision == "any":
        return state
    if state.current is not None and not is_known(state.current):
        raise MigrationError(unknown_revision(state))
    if access.revision == "versioned" and state.current is None:
        raise MigrationError(f"{not_at_head(state, target)}: nothing to move from")
    if access.revision == "head" and not state.at_head:
        raise MigrationError(not_at_head(state, target))
    return state


def is_known(revision: str) -> bool:
    """Whether ``revision`` is one of this pfd-db's migrations."""
    from pfd_db import migrations

    return revision in {r.revision for r in migrations.history()}


def unknown_revision(state: DatabaseState) -> str:
    from pfd_db import __version__

    return (
        f"the database is at unknown revision {state.current} (this pfd-db, {__version__}, "
        f"knows up to {state.head}): upgrade pfd-db, or pass --url"
    )


def not_at_head(state: DatabaseState, target: Target) -> str:
    if state.needs_adoption:
        return (
            f"the database has {state.model_tables} pfd-db tables but no migration history: "
            "run pfd-db migrate --adopt"
        )
    if state.current is None:
        return f"the database {target.shown} has no pfd-db schema: run pfd-db init"
    return (
        f"the database is at revision {state.current}, behind head {state.head}: "
        "run pfd-db migrate first"
    )
