"""``pfd-db demo``: fill a database with realistic sample data."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.cli.common import UrlOption, console, database
from pfd_db.cli.schema import report_seed, require_head
from pfd_db.demo import build_demo, steps
from pfd_db.errors import Conflict
from pfd_db.models import Base, User
from pfd_db.seed import ADMIN_USERNAME, seed

app = typer.Typer()


@app.command()
def demo(
    experiments: Annotated[
        int, typer.Option("--experiments", min=1, max=2000, help="How many experiments.")
    ] = 24,
    seed_value: Annotated[int, typer.Option("--seed", help="Same seed, same data.")] = 42,
    url: UrlOption = None,
) -> None:
    """Fill the database with realistic sample data, in one transaction.

    Datasets and signals, experiments with training curves, tags, an HPO and a
    NAS campaign and saved searches; the same --seed gives the same data.
    """
    with database(url) as engine:
        require_head(engine)
        with Session(engine) as session, session.begin():
            report_seed(seed(session))
            owner = session.scalars(select(User).where(User.username == ADMIN_USERNAME)).one()
            with Progress(
                TextColumn("{task.description:<44}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task("demo", total=steps(experiments))

                def tick(what: str) -> None:
                    bar.update(task, description=what, advance=1)

                try:
                    summary = build_demo(
                        session, owner, experiment_count=experiments, seed=seed_value, progress=tick
                    )
                except Conflict as exc:
                    raise Conflict(
                        f"{exc}: the demo data of seed {seed_value} is already here, "
                        "use another --seed"
                    ) from None
        with engine.connect() as conn:
            counts = {
                name: conn.scalar(select(func.count()).select_from(table)) or 0
                for name, table in sorted(Base.metadata.tables.items())
            }
    table = Table("table", "rows", title=f"demo data (seed {seed_value})")
    for name, count in counts.items():
        if count:
            table.add_row(name, str(count))
    console.print(table)
    console.print(
        f"added {summary.experiments} experiments ({summary.epochs} epochs), "
        f"{summary.signals} signals, {summary.tags} tags, {summary.hpo_trials} HPO trials, "
        f"{summary.nas_trials} NAS trials, {summary.saved_searches} saved searches"
    )
