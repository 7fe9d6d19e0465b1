"""Initial data: the ``seed`` command, and the seeding ``init`` ends with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from pfd_db.cli.database import transaction
from pfd_db.cli.options import QuietOption, UrlOption
from pfd_db.cli.output import say, show_secret

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pfd_db.seed import SeedReport

app = typer.Typer()


@app.command("seed")
def seed_command(url: UrlOption = None, quiet: QuietOption = False) -> None:
    """Create the initial data (admin user, preferences, Default dataset) if missing."""
    from pfd_db.seed import seed

    check_admin_password()
    with transaction(url) as session:
        report = seed(session)
    report_seed(report, quiet=quiet)


def run_seed(engine: Engine) -> SeedReport:
    """Seed ``engine``'s database in a transaction of its own."""
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
