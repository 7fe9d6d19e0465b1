"""Schema commands: init, migrate, downgrade, current, history, check, seed, status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pfd_db.cli.common import (
    BEHIND_HEAD,
    CREATE,
    INSPECT,
    KEY_MISSING,
    MIGRATE,
    SCHEMA_DRIFT,
    JsonOption,
    QuietOption,
    UrlOption,
    YesOption,
    confirm_or_refuse,
    console,
    database,
    err_console,
    fail,
    is_known,
    locate,
    print_json,
    say,
    show_secret,
    transaction,
    url_in_settings,
)
from pfd_db.cli.health import check_key_file
from pfd_db.cli.health import ensure_instance_key as ensure_instance_key  # for import-legacy

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pfd_db.cli.health import KeyHealth, TwoFactorHealth
    from pfd_db.migrations import DatabaseState, Revision
    from pfd_db.seed import SeedReport

app = typer.Typer()


# --- init, migrate, downgrade ---------------------------------------------------


@app.command()
def init(url: UrlOption = None, quiet: QuietOption = False) -> None:
    """Migrate to head, then seed: a working database (./pfd.db by default).

    Checks PFD_DB_ADMIN_PASSWORD before it changes anything. With --quiet it
    prints only the generated admin password (nothing when it was not generated).
    """
    check_admin_password()
    check_key_file()
    from pfd_db import migrations

    with database(url, CREATE) as engine:
        before = migrations.state(engine)
        after = migrations.upgrade(engine)
        say(describe_upgrade("schema: ", before, after), quiet=quiet)
        report = run_seed(engine)
        report_seed(report, quiet=quiet)
        ensure_instance_key(quiet=quiet)
        say(f"ready: {locate(url).shown}", quiet=quiet)


def check_admin_password() -> None:
    """Refuse, naming the variable, a PFD_DB_ADMIN_PASSWORD the password policy rejects."""
    from pfd_db.config import get_settings
    from pfd_db.errors import ConfigurationError, InvalidInput
    from pfd_db.passwords import check_policy

    password = get_settings().admin_password
    if password is None:
        return
    try:
        check_policy(password.get_secret_value())
    except InvalidInput as exc:
        raise ConfigurationError(
            f"PFD_DB_ADMIN_PASSWORD is refused ({exc}): set a longer one, or unset it to "
            "have one generated"
        ) from None


@app.command()
def migrate(
    url: UrlOption = None,
    to: Annotated[str, typer.Option("--to", help="Target revision.")] = "head",
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it (offline).")
    ] = False,
    adopt: Annotated[
        bool,
        typer.Option("--adopt", help="Stamp a database made without migrations, if it matches."),
    ] = False,
) -> None:
    """Upgrade the schema to head (or --to REV). Running it again is a no-op."""
    from pfd_db import migrations

    if sql:
        with url_in_settings(url):
            target = locate(url)
        print(migrations.offline_sql(target.url.render_as_string(False), to), end="")
        return
    if adopt:
        check_adoptable(url)
        with database(url, CREATE) as engine:
            after = migrations.adopt(engine)
        say(f"adopted: schema matches the models, stamped at {after.current}")
        return
    with database(url, CREATE) as engine:
        before = migrations.state(engine)
        after = migrations.upgrade(engine, to)
    say(describe_upgrade("", before, after))


def check_adoptable(url: str | None) -> None:
    """Refuse, reading only, a database ``migrate --adopt`` would refuse."""
    from pfd_db import migrations
    from pfd_db.errors import MigrationError, SchemaDrift

    with database(url, INSPECT) as engine:
        state = migrations.state(engine)
        if state.versioned:
            raise MigrationError(
                f"the database already has a migration history (at {state.current}): "
                "nothing to adopt"
            )
        if state.model_tables == 0:
            raise MigrationError(
                "the database has no pfd-db tables, nothing to adopt: run pfd-db init"
            )
        differences = migrations.schema_drift(engine)
    if differences:
        raise SchemaDrift(
            f"the database does not match the models ({len(differences)} differences); "
            "not adopting it",
            differences,
        )


def describe_upgrade(lead: str, before: DatabaseState, after: DatabaseState) -> str:
    if before.current == after.current:
        return f"{lead}already at {after.current}: nothing to do"
    return f"{lead}upgraded from {before.current or 'empty'} to {after.current}"


@app.command(context_settings={"ignore_unknown_options": True})
def downgrade(
    revision: Annotated[
        str,
        typer.Argument(help="Target: a revision (or its first characters), -N steps, or base."),
    ],
    url: UrlOption = None,
    yes: YesOption = False,
) -> None:
    """Downgrade the schema to REVISION (e.g. -1: one step back; base: drop everything).

    A downgrade that deletes data (drops tables or columns, deletes rows) asks
    first on a terminal, and needs --yes otherwise.
    """
    from pfd_db import migrations

    with database(url, MIGRATE) as engine:
        before = migrations.state(engine)
        assert before.current is not None  # MIGRATE access refuses a database without one
        plan = plan_downgrade(before.current, revision)
        if not plan.undone:
            say(f"already at {before.current}: nothing to do")
            return
        if plan.losing:
            loss = (
                f"downgrading to {plan.target_name} deletes data: revision "
                f"{', '.join(plan.losing)} drops tables or columns, or deletes rows"
            )
            confirm_or_refuse(f"{loss[0].upper()}{loss[1:]}. Go on?", yes, loss)
        after = migrations.downgrade(engine, plan.target or "base")
    say(f"downgraded from {before.current} to {after.current or 'base'}")


@dataclass(frozen=True)
class DowngradePlan:
    target: str | None
    """The revision to end at; None for base (no schema)."""
    undone: list[str]
    """The revisions whose downgrade runs, newest first."""
    losing: list[str]
    """Those of them that delete data."""

    @property
    def target_name(self) -> str:
        return self.target or "base"


def plan_downgrade(current: str, wanted: str) -> DowngradePlan:
    """Which revisions a downgrade from ``current`` to ``wanted`` undoes. ``wanted``
    is a revision or a unique start of one, ``-N`` (N steps back) or ``base``."""
    from pfd_db import migrations
    from pfd_db.errors import MigrationError

    revisions = [r.revision for r in migrations.history()]
    here = revisions.index(current)
    if wanted == "base":
        there = -1
    elif wanted.startswith("-") and wanted[1:].isdigit():
        there = here - int(wanted[1:])
        if there < -1:
            raise MigrationError(
                f"cannot go {wanted[1:]} steps back from {current}: it is {here + 1} above base"
            )
    else:
        there = revisions.index(resolve_revision(wanted, revisions))
        if there > here:
            raise MigrationError(
                f"{revisions[there]} is above the current revision {current}: "
                f"run pfd-db migrate --to {revisions[there]}"
            )
    undone = list(reversed(revisions[there + 1 : here + 1]))
    return DowngradePlan(
        target=revisions[there] if there >= 0 else None,
        undone=undone,
        losing=[rev for rev in undone if loses_data(rev)],
    )


def resolve_revision(wanted: str, revisions: list[str]) -> str:
    """The one revision ``wanted`` names (whole or its first characters)."""
    from pfd_db.errors import MigrationError

    if wanted in revisions:
        return wanted
    matches = [rev for rev in revisions if rev.startswith(wanted)]
    if len(matches) != 1:
        known = ", ".join(revisions)
        raise MigrationError(
            f"no single revision {wanted!r} (known: {known}; or -N, or base): "
            "see pfd-db history"
        )
    return matches[0]


DATA_LOSS = ("drop_table(", "drop_column(", ".delete(", "DELETE ")
"""What, in a revision's downgrade, deletes data."""


def loses_data(revision: str) -> bool:
    """Whether ``revision``'s downgrade deletes data (read from its script)."""
    import inspect

    from pfd_db import migrations

    script = migrations.script_directory().get_revision(revision)
    downgrade_function = getattr(script.module if script else None, "downgrade", None)
    if downgrade_function is None:
        return False
    source = inspect.getsource(downgrade_function)
    return any(sign in source for sign in DATA_LOSS)


# --- where the database stands ---------------------------------------------------


@app.command()
def current(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Print the database's revision, and head."""
    from pfd_db import migrations

    with database(url, INSPECT) as engine:
        state = migrations.state(engine)
    known = state.current is None or is_known(state.current)
    if as_json:
        print_json(
            {
                "revision": state.current,
                "head": state.head,
                "at_head": state.at_head,
                "known": known,
            }
        )
        return
    if state.at_head:
        mark = "(head)"
    elif not known:
        mark = f"(unknown to this pfd-db; head is {state.head})"
    else:
        mark = f"(head is {state.head})"
    say(f"{state.current or 'none'} {mark}")


@app.command()
def history(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """List the migration revisions, oldest first; the database's own is marked.

    Needs no database: when it cannot be read, none is marked.
    """
    from pfd_db import migrations

    applied = applied_revision(url)
    revisions = migrations.history()
    if as_json:
        print_json(
            {
                "current": applied,
                "head": migrations.head_revision(),
                "revisions": [revision_json(rev, applied) for rev in revisions],
            }
        )
        return
    from rich.table import Table

    table = Table("revision", "down revision", "message", "")
    for rev in revisions:
        table.add_row(rev.revision, rev.down_revision or "-", rev.message,
                      "current" if rev.revision == applied else "")  # fmt: skip
    console.print(table)


def revision_json(rev: Revision, applied: str | None) -> dict[str, Any]:
    return {
        "revision": rev.revision,
        "down_revision": rev.down_revision,
        "message": rev.message,
        "current": rev.revision == applied,
    }


def applied_revision(url: str | None) -> str | None:
    """The database's revision, or None when it cannot be read (an unusable URL is
    still refused)."""
    from pfd_db import migrations
    from pfd_db.errors import PfdDbError

    with url_in_settings(url):
        locate(url)
    try:
        with database(url, INSPECT) as engine:
            return migrations.state(engine).current
    except PfdDbError:
        return None


@app.command()
def check(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Exit 0 only if the database is reachable, at head, without drift, with a usable
    instance key that opens its 2FA data.

    Otherwise exit 1 (not at head), 3 (schema drift), 4 (no usable instance key,
    or two-factor data it does not open), or 2 when it cannot be checked.
    """
    from pfd_db import migrations
    from pfd_db.cli.health import key_health, two_factor_health

    with database(url, INSPECT) as engine:
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
    for difference in differences:
        err_console.print(f"  - {difference}", markup=False)
    raise fail(problem, code)


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


# --- data: seed, status ------------------------------------------------------------


@app.command("seed")
def seed_command(url: UrlOption = None, quiet: QuietOption = False) -> None:
    """Create the initial data (admin user, preferences, Default dataset) if missing."""
    from pfd_db.seed import seed

    check_admin_password()
    with transaction(url) as session:
        report = seed(session)
    report_seed(report, quiet=quiet)


def run_seed(engine: Engine) -> SeedReport:
    from sqlalchemy.orm import Session

    from pfd_db.seed import seed

    with Session(engine) as session, session.begin():
        return seed(session)


def report_seed(report: SeedReport, *, quiet: bool = False) -> None:
    """What seeding created; the generated admin password on a line of its own."""
    if not report.changed:
        say("seed: everything already present, nothing changed", quiet=quiet)
    for item in report.created:
        say(f"seed: created {item}", quiet=quiet)
    if report.admin_password is not None:
        show_secret("admin password", report.admin_password, quiet=quiet)


@app.command()
def status(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Show the database, server, revision, rows per table, pool and instance key.

    Reads only: a read-only SQLite file can be inspected.
    """
    from pfd_db import migrations
    from pfd_db.cli.health import key_health
    from pfd_db.config import get_settings

    with database(url, INSPECT) as engine:
        state = migrations.state(engine)
        server = server_version(engine)
        counts = row_counts(engine)
        key = key_health()
        settings = get_settings()
        shown = locate(url).shown
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
                "pool": pool,
                "instance_key": key.as_json(),
            }
        )
        return
    from rich.table import Table

    from pfd_db.models import Base

    say(f"database  {shown}")
    say(f"dialect   {engine.dialect.name} {server}")
    say(f"revision  {state.current or 'none'} (head {state.head})")
    table = Table("table", "rows", title=f"{len(counts)} of {len(Base.metadata.tables)} tables")
    for name, count in counts.items():
        table.add_row(name, str(count))
    console.print(table)
    say(
        f"pool      size {pool['size']}, overflow {pool['max_overflow']}, "
        f"timeout {pool['timeout']:g} s, recycle {pool['recycle']} s, "
        f"pre-ping {'on' if pool['pre_ping'] else 'off'}"
    )
    say(f"key       {key.describe()}")


def server_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return ".".join(str(part) for part in conn.dialect.server_version_info or ())


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
