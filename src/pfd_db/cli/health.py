"""A database's health: the ``check`` and ``status`` commands, and the instance
key's part in it (is a key configured and usable, does it open the two-factor data
stored; where ``init`` creates it)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import typer

from pfd_db.cli.database import INSPECT, database, target_of
from pfd_db.cli.errors import BEHIND_HEAD, KEY_MISSING, SCHEMA_DRIFT, CommandFailed
from pfd_db.cli.options import JsonOption, UrlOption
from pfd_db.cli.output import console, print_json, say, warn

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pfd_db.migrations import DatabaseState
    from pfd_db.store.ops.partitions import PartitionedTable

app = typer.Typer()


@dataclass(frozen=True)
class KeyHealth:
    """Whether an instance key is configured, where from, and whether it works."""

    configured: bool
    usable: bool
    source: str | None
    problem: str | None

    def describe(self) -> str:
        if self.usable:
            return f"usable ({self.source})"
        return f"not usable: {self.problem}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TwoFactorHealth:
    """The two-factor data stored, and whether the instance key opens it."""

    totp_secrets: int
    backup_codes: int
    unreadable_totp_secrets: int
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def key_source() -> str | None:
    """Where the instance key comes from under the current settings, or None."""
    from pfd_db.config import get_settings
    from pfd_db.crypto import key_file_path

    settings = get_settings()
    if settings.secret_key is not None:
        return "PFD_DB_SECRET_KEY"
    if settings.secret_key_file is not None:
        return f"PFD_DB_SECRET_KEY_FILE {settings.secret_key_file}"
    path = key_file_path()
    return f"key file {path}" if path is not None and path.exists() else None


def key_health() -> KeyHealth:
    """Whether the configured instance key encrypts and decrypts."""
    from pfd_db.crypto import decrypt, encrypt
    from pfd_db.errors import PfdDbError

    source = key_source()
    try:
        usable = decrypt(encrypt("pfd-db health probe")) == "pfd-db health probe"
    except (PfdDbError, OSError) as exc:
        return KeyHealth(source is not None, False, source, str(exc))
    return KeyHealth(True, usable, source, None if usable else "it does not decrypt")


def two_factor_health(engine: Engine) -> TwoFactorHealth:
    """The stored two-factor data and whether the instance key opens every TOTP
    secret (backup codes are keyed hashes: without a key none can be checked)."""
    from sqlalchemy import func, select

    from pfd_db.crypto import decrypt
    from pfd_db.errors import PfdDbError
    from pfd_db.models import BackupCode, User

    with engine.connect() as conn:
        secrets = list(conn.scalars(select(User.totp_secret).where(User.totp_secret.is_not(None))))
        codes = conn.scalar(select(func.count()).select_from(BackupCode)) or 0
    unreadable = 0
    for secret in secrets:
        try:
            decrypt(str(secret))
        except PfdDbError:
            unreadable += 1
    problem = None
    if unreadable:
        problem = (
            f"{unreadable} of {len(secrets)} TOTP secrets do not open with the instance key: "
            "configure the key they were encrypted with (PFD_DB_SECRET_KEY, several "
            "comma-separated while rotating)"
        )
    elif codes and not key_health().usable:
        problem = (
            f"{codes} backup codes are stored but no instance key is usable: "
            "set PFD_DB_SECRET_KEY or PFD_DB_SECRET_KEY_FILE"
        )
    return TwoFactorHealth(len(secrets), codes, unreadable, problem)


def check_key_file() -> None:
    """Refuse, before anything is written, a PFD_DB_SECRET_KEY_FILE that ``init``
    could neither read nor create."""
    from pfd_db.config import get_settings
    from pfd_db.errors import ConfigurationError

    settings = get_settings()
    path = settings.secret_key_file
    if settings.secret_key is not None or path is None:
        return
    if path.is_dir():
        raise ConfigurationError(f"PFD_DB_SECRET_KEY_FILE {path} is a directory, not a key file")
    if path.exists():
        return
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"PFD_DB_SECRET_KEY_FILE {path}: its folder {path.parent} does not exist; "
            "create it, or point the variable at another file"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"PFD_DB_SECRET_KEY_FILE {path}: its folder {path.parent} is not writable, "
            "so the key cannot be created there"
        )


def ensure_instance_key(*, quiet: bool = False) -> None:
    """Create the key file where it is configured (PFD_DB_SECRET_KEY_FILE, else beside
    a SQLite database) when it is missing and PFD_DB_SECRET_KEY is unset."""
    from pfd_db.config import get_settings
    from pfd_db.crypto import create_key_file, key_file_path

    if get_settings().secret_key is not None:
        return
    path = key_file_path()
    if path is None:
        warn(
            "no instance key configured; set PFD_DB_SECRET_KEY "
            "(2FA secrets and backup codes need it)"
        )
    elif create_key_file(path):
        say(f"instance key: created {path} (mode 0600); back it up with the database", quiet=quiet)


# --- the commands ------------------------------------------------------------------


@app.command()
def check(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Exit 0 only if the database is reachable, at head, without drift, with a usable
    instance key that opens its 2FA data.

    Otherwise exit 1 (not at head), 3 (schema drift), 4 (no usable instance key,
    or two-factor data it does not open), or 2 when it cannot be checked (a
    database marked unfinished by a copy, restore or import cut short is refused,
    naming the command that completes it).
    """
    from pfd_db import migrations

    with database(url, INSPECT) as engine:
        refuse_unfinished(engine)
        state = migrations.state(engine)
        differences = migrations.schema_drift(engine) if state.at_head else []
        two_factor = two_factor_health(engine) if state.at_head and not differences else None
        key = key_health()
    problem, code = verdict(state, differences, two_factor, key)
    if as_json:
        print_json(
            {
                "ok": problem is None,
                "exit_code": code,
                "problem": problem,
                "revision": state.current,
                "head": state.head,
                "at_head": state.at_head,
                "drift": differences,
                "instance_key": key.as_json(),
                "two_factor": two_factor.as_json() if two_factor else None,
            }
        )
    if problem is None:
        if not as_json:
            say(f"ok: reachable, at head {state.head}, no drift, instance key {key.describe()}")
        return
    raise CommandFailed(problem, code, differences)


def refuse_unfinished(engine: Engine) -> None:
    """Refuse a database that carries the unfinished-copy marker (a copy, restore
    or import cut short): its tables are not a whole database to check or count.
    The refusal is ``require_finished``'s one line, naming the command that
    completes it (exit 2)."""
    from pfd_db.portability import filling
    from pfd_db.target import locate

    filling.require_finished(engine, locate(engine.url).described)


def verdict(
    state: DatabaseState,
    differences: list[str],
    two_factor: TwoFactorHealth | None,
    key: KeyHealth,
) -> tuple[str | None, int]:
    """The first problem ``check`` found and its exit code; (None, 0) when healthy."""
    if not state.at_head:
        return (
            f"not at head: database at {state.current or 'none'}, head {state.head}: "
            "run pfd-db migrate",
            BEHIND_HEAD,
        )
    if differences:
        return (
            f"schema drift: {len(differences)} differences from the models "
            "(the schema was changed by hand?)",
            SCHEMA_DRIFT,
        )
    if two_factor is not None and not two_factor.ok:
        return two_factor.problem, KEY_MISSING
    if not key.usable:
        return (
            f"no usable instance key ({key.problem}): 2FA setup would fail; "
            "run pfd-db init to create the key file, or set PFD_DB_SECRET_KEY",
            KEY_MISSING,
        )
    return None, 0


@app.command()
def status(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Show the database, server, revision, rows (and partitions) per table, pool,
    read replicas (with their lag), PgBouncer, and the instance key.

    Reads only: a read-only SQLite file can be inspected. A database marked
    unfinished (a copy, restore or import cut short) is refused (exit 2): its
    counts would not be a whole database's.
    """
    from pfd_db import migrations
    from pfd_db.config import get_settings
    from pfd_db.pgbouncer import behind_pgbouncer
    from pfd_db.replicas import replica_status

    with database(url, INSPECT) as engine:
        refuse_unfinished(engine)
        state = migrations.state(engine)
        server = server_version(engine)
        counts = row_counts(engine)
        partitioned = partitions_of(engine)
        pooled = engine.dialect.name == "postgresql" and behind_pgbouncer(engine)
        replicas = (
            replica_status(engine)
            if engine.dialect.name == "postgresql"
            else unusable_replicas(engine.dialect.name)
        )
        key = key_health()
        settings = get_settings()
        shown = target_of(url).shown
    pool = {
        "size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "timeout": settings.pool_timeout,
        "recycle": settings.pool_recycle,
        "pre_ping": settings.pool_pre_ping,
    }
    if as_json:
        print_json(
            {
                "url": shown,
                "dialect": engine.dialect.name,
                "server_version": server,
                "revision": state.current,
                "head": state.head,
                "at_head": state.at_head,
                "tables": counts,
                "partitions": partitions_json(partitioned),
                "pool": pool,
                "pgbouncer": pooled,
                "replicas": replicas,
                "instance_key": key.as_json(),
            }
        )
        return
    from rich.table import Table

    from pfd_db.models import Base

    say(f"database  {shown}")
    say(f"dialect   {engine.dialect.name} {server}")
    say(f"revision  {state.current or 'none'} (head {state.head})")
    title = f"{len(counts)} of {len(Base.metadata.tables)} tables"
    table = Table("table", "rows", *(["partitions"] if partitioned else []), title=title)
    described = {t.table: describe_partitions(t) for t in partitioned}
    for name, count in counts.items():
        table.add_row(name, str(count), *([described.get(name, "")] if partitioned else []))
    console.print(table)
    say(
        f"pool      size {pool['size']}, overflow {pool['max_overflow']}, "
        f"timeout {pool['timeout']:g} s, recycle {pool['recycle']} s, "
        f"pre-ping {'on' if pool['pre_ping'] else 'off'}"
        + (", through PgBouncer" if pooled else "")
    )
    for replica in replicas:
        say(f"replica   {replica['url']}: {describe_replica(replica)}")
    say(f"key       {key.describe()}")


def describe_replica(replica: dict[str, Any]) -> str:
    """One replica's state for the text output: in use with its lag, or why not."""
    lag = replica["lag_seconds"]
    behind = "lag unknown" if lag is None else f"lag {lag:.1f} s"
    return f"in use, {behind}" if replica["in_use"] else f"skipped: {replica['problem']}"


def unusable_replicas(dialect: str) -> list[dict[str, Any]]:
    """The replicas of ``PFD_DB_REPLICA_URLS`` for a database that is not
    PostgreSQL: none can be used (pfd-db serve refuses them), each with why."""
    from pfd_db.replicas import configured_urls
    from pfd_db.target import mask_password

    problem = (
        f"read replicas need a PostgreSQL primary and the database is {dialect}: "
        "unset PFD_DB_REPLICA_URLS"
    )
    return [
        {
            "url": mask_password(url),
            "reachable": False,
            "lag_seconds": None,
            "in_use": False,
            "problem": problem,
        }
        for url in configured_urls()
    ]


def server_version(engine: Engine) -> str:
    """The database server's version, as ``16.2``."""
    with engine.connect() as conn:
        return ".".join(str(part) for part in conn.dialect.server_version_info or ())


def partitions_of(engine: Engine) -> list[PartitionedTable]:
    """The partitioned log tables (PostgreSQL) with their partitions; rows estimated."""
    from sqlalchemy.orm import Session

    from pfd_db.store.ops.partitions import list_partitions

    with Session(engine) as session:
        return list_partitions(session)


def partitions_json(tables: list[PartitionedTable]) -> dict[str, Any]:
    """Per partitioned table: its key, how many monthly partitions, the months they
    span, and the rows (estimated) in all of them and in the default partition."""
    return {
        t.table: {
            "column": t.column,
            "partitions": len(t.monthly),
            "from": t.monthly[0].start if t.monthly else None,
            "to": t.monthly[-1].end if t.monthly else None,
            "rows": t.rows,
            "default_rows": t.default.rows if t.default else None,
        }
        for t in tables
    }


def describe_partitions(table: PartitionedTable) -> str:
    """``13 monthly, 2026-01 to 2027-01, default 0 rows`` (rows estimated)."""
    months = table.monthly
    span = f", {months[0].start:%Y-%m} to {months[-1].start:%Y-%m}" if months else ""
    default = f", default {table.default.rows} rows" if table.default else ", no default"
    return f"{len(months)} monthly{span}{default}"


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in each of the models' tables that exist, by name."""
    from sqlalchemy import func, inspect, select

    from pfd_db.models import Base

    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
        return {
            name: conn.scalar(select(func.count()).select_from(table)) or 0
            for name, table in sorted(Base.metadata.tables.items())
            if name in present
        }
