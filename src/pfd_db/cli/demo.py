"""``pfd-db demo``: fill a database with realistic sample data."""

from __future__ import annotations

from typing import Annotated

import typer

from pfd_db.cli.database import INSPECT, database, transaction
from pfd_db.cli.options import UrlOption
from pfd_db.cli.output import console, say
from pfd_db.cli.progress_bar import progress_bar

app = typer.Typer()

SEED_MAX = 2**63 - 1


@app.command()
def demo(
    experiments: Annotated[
        int, typer.Option("--experiments", min=1, max=2000, help="How many experiments.")
    ] = 24,
    seed_value: Annotated[
        int, typer.Option("--seed", min=0, max=SEED_MAX, help="Same seed, same data.")
    ] = 42,
    url: UrlOption = None,
) -> None:
    """Fill the database with realistic sample data, in one transaction.

    Datasets and signals, experiments with training curves, tags, an HPO and a
    NAS campaign and saved searches; the same --seed gives the same data.
    """
    from sqlalchemy import select

    from pfd_db.cli.demo_data import build_demo
    from pfd_db.cli.health import row_counts
    from pfd_db.cli.seed import report_seed
    from pfd_db.errors import Conflict
    from pfd_db.models import User
    from pfd_db.seed import ADMIN_USERNAME, seed

    with transaction(url) as session:
        report_seed(seed(session))
        owner = session.scalars(select(User).where(User.username == ADMIN_USERNAME)).one()
        with progress_bar("demo") as tick:
            try:
                summary = build_demo(
                    session, owner, experiment_count=experiments, seed=seed_value, progress=tick
                )
            except Conflict as exc:
                raise Conflict(
                    f"{exc}: the demo data of seed {seed_value} is already here, use another --seed"
                ) from None
    with database(url, INSPECT) as engine:
        counts = {name: count for name, count in row_counts(engine).items() if count}
    from rich.table import Table

    table = Table("table", "rows", title=f"demo data (seed {seed_value})")
    for name, count in counts.items():
        table.add_row(name, str(count))
    console.print(table)
    say(
        f"added {summary.experiments} experiments ({summary.epochs} epochs), "
        f"{summary.signals} signals, {summary.tags} tags, {summary.hpo_trials} HPO trials, "
        f"{summary.nas_trials} NAS trials, {summary.saved_searches} saved searches"
    )
