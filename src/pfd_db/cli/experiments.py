"""Experiment commands: ``pfd-db experiment list [QUERY]`` and ``pfd-db experiment
show NAME``. Both only read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pfd_db.cli.database import READ, transaction
from pfd_db.cli.options import JsonOption, UrlOption
from pfd_db.cli.output import console, print_json, say

if TYPE_CHECKING:
    from pfd_db.models import Experiment

app = typer.Typer(help="Find experiments and look at their training curves.", no_args_is_help=True)

LIMIT_MAX = 500  # search's own
CHART_WIDTH_MAX = 400
SCORE_KEYS = ("val_accuracy", "accuracy")
CHARTS = {
    "loss": ("train_loss", "val_loss"),
    "accuracy": ("train_accuracy", "val_accuracy"),
}


@app.command("list")
def list_experiments(
    query: Annotated[
        str,
        typer.Argument(
            help='Search: words, "a phrase", tag:NAME, status:S, model:M, dataset:D, '
            "metric.NAME>0.9, created:>2026-01-01, -TERM to exclude. Empty: all, newest first."
        ),
    ] = "",
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=LIMIT_MAX, help="How many to show.")
    ] = 50,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the experiments matching QUERY, best match first, then newest."""
    from pfd_db.store.ml.search import search

    with transaction(url, READ) as session:
        results = search(session, query, limit=limit)
        rows = [{**summary_json(hit.experiment), "rank": hit.rank} for hit in results.rows]
    if as_json:
        print_json({"query": query, "total": results.total, "experiments": rows})
        return
    from rich.table import Table

    table = Table("name", "model", "dataset", "status", "score", "epochs", "created")
    for row in rows:
        table.add_row(
            row["name"],
            row["model_type"],
            row["dataset"],
            row["status"],
            _number(row["score"]),
            "" if row["total_epochs"] is None else str(row["total_epochs"]),
            row["created_at"].date().isoformat(),
        )
    console.print(table)
    say(f"{len(rows)} of {results.total} shown")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The experiment's name.")],
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Also write the curve, every metric by epoch, to this CSV file.",
            dir_okay=False,
        ),
    ] = None,
    width: Annotated[
        int, typer.Option("--width", min=10, max=CHART_WIDTH_MAX, help="Chart width in columns.")
    ] = 60,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show an experiment: its summary, and charts of loss, accuracy and any other
    metric logged by epoch."""
    from pfd_db.store.ml.curves import curve_columns
    from pfd_db.store.ml.experiments import get_experiment

    with transaction(url, READ) as session:
        experiment = get_experiment(session, name)
        summary = {
            **summary_json(experiment),
            "config": experiment.config,
            "hyperparameters": experiment.hyperparameters,
            "best_epoch": experiment.best_epoch,
            "duration_seconds": experiment.duration_seconds,
            "notes": experiment.notes,
        }
        curve = curve_columns(session, experiment)
    if csv_file is not None:
        write_csv(csv_file, curve)
    if as_json:
        print_json({"experiment": summary, "curve": curve})
        return
    print_summary(summary, epochs=len(curve["epoch"]))
    print_charts(curve, width)
    if csv_file is not None:
        say(f"wrote {len(curve['epoch'])} epochs, {len(curve)} columns, to {csv_file}")


def summary_json(experiment: Experiment) -> dict[str, Any]:
    """An experiment as ``experiment list --json`` shows it."""
    return {
        "id": experiment.id,
        "name": experiment.name,
        "model_type": experiment.model_type,
        "dataset": experiment.dataset.name,
        "status": experiment.status.value,
        "score": _score(experiment.metrics),
        "metrics": experiment.metrics,
        "total_epochs": experiment.total_epochs,
        "created_at": experiment.created_at,
    }


def _score(metrics: dict[str, Any] | None) -> float | None:
    """``val_accuracy``, else ``accuracy``, of the final metrics, if a number."""
    for key in SCORE_KEYS:
        value = (metrics or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def print_summary(summary: dict[str, Any], *, epochs: int) -> None:
    best = summary["best_epoch"]
    lines = {
        "name": summary["name"],
        "model": summary["model_type"],
        "dataset": summary["dataset"],
        "status": summary["status"],
        "epochs": f"{epochs}" + ("" if best is None else f" (best: {best})"),
        "metrics": _pairs(summary["metrics"]),
        "hyperparameters": _pairs(summary["hyperparameters"]),
        "created": summary["created_at"].isoformat(timespec="seconds"),
        "notes": summary["notes"] or "",
    }
    for label, value in lines.items():
        if value:
            say(f"{label:<16} {value}")


def _pairs(document: dict[str, Any] | None) -> str:
    return ", ".join(f"{key}={value}" for key, value in (document or {}).items())


def print_charts(curve: dict[str, list[Any]], width: int) -> None:
    """Loss and accuracy by epoch, then the extra metrics logged (``f1``, ...), if any."""
    from pfd_db.cli.charts import line_chart
    from pfd_db.store.ml.curves import CURVE_FIXED

    if not curve["epoch"]:
        say("no epochs logged")
        return
    extra = tuple(name for name in curve if name != "epoch" and name not in CURVE_FIXED)
    charts = {**CHARTS, "other metrics": extra} if extra else CHARTS
    for title, names in charts.items():
        say("")
        say(title)
        for line in line_chart(curve["epoch"], {n: curve[n] for n in names}, width=width):
            say(line)


def write_csv(path: Path, curve: dict[str, list[Any]]) -> None:
    """The curve as CSV: a header of column names, a row per epoch, empty for None."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(curve)
        for row in zip(*curve.values(), strict=True):
            writer.writerow("" if value is None else value for value in row)
