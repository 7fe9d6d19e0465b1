"""Moving the schema: init, migrate, downgrade; where it stands: current, history.

The commands that move the schema refuse a URL that goes through PgBouncer before
they change anything (:func:`pfd_db.pgbouncer.refuse_migrations`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pfd_db.cli.database import (
    CREATE,
    INSPECT,
    MIGRATE,
    database,
    is_known,
    target_of,
    url_in_settings,
)
from pfd_db.cli.health import check_key_file, ensure_instance_key
from pfd_db.cli.options import JsonOption, QuietOption, UrlOption, YesOption
from pfd_db.cli.output import confirm_or_refuse, console, print_json, say
from pfd_db.cli.seed import check_admin_password, report_seed, run_seed

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pfd_db.migrations import DatabaseState, Revision

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
        refuse_through_pgbouncer(engine)
        before = migrations.state(engine)
        after = migrations.upgrade(engine)
        say(describe_upgrade("schema: ", before, after), quiet=quiet)
        report = run_seed(engine)
        report_seed(report, quiet=quiet)
        ensure_instance_key(quiet=quiet)
        say(f"ready: {target_of(url).shown}", quiet=quiet)


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
    from pfd_db.target import as_text

    if sql:
        with url_in_settings(url):
            target = target_of(url)
        print(migrations.offline_sql(as_text(target.url), to), end="")
        return
    if adopt:
        check_adoptable(url)
        with database(url, CREATE) as engine:
            refuse_through_pgbouncer(engine)
            after = migrations.adopt(engine)
        say(f"adopted: schema matches the models, stamped at {after.current}")
        return
    with database(url, CREATE) as engine:
        refuse_through_pgbouncer(engine)
        before = migrations.state(engine)
        after = migrations.upgrade(engine, to)
    say(describe_upgrade("", before, after))


def refuse_through_pgbouncer(engine: Engine) -> None:
    """Refuse, before anything is changed, to move the schema through PgBouncer."""
    from pfd_db.pgbouncer import refuse_migrations

    refuse_migrations(engine)


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
    """The line that says what an upgrade did, after ``lead``."""
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
    from pfd_db.migrations.revisions import plan_downgrade

    with database(url, MIGRATE) as engine:
        refuse_through_pgbouncer(engine)
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
    """One revision of ``history --json``."""
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
        target_of(url)
    try:
        with database(url, INSPECT) as engine:
            return migrations.state(engine).current
    except PfdDbError:
        return None
