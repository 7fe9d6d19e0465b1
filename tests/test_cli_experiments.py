"""pfd-db experiment list [QUERY] and pfd-db experiment show NAME, on both dialects."""

from __future__ import annotations

import csv
import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cli_support import assert_refused, pfd_db
from pfd_db import migrations
from pfd_db.cli.charts import MARKERS
from pfd_db.engine import make_engine
from pfd_db.models import Dataset, TrainingRun
from pfd_db.store.ml import curves, experiments, tags

CHART_LEGENDS = ("● train_loss  ○ val_loss", "● train_accuracy  ○ val_accuracy")


@pytest.fixture
def url(fresh_url):
    """A migrated database with three experiments: two finished with curves (one
    tagged, one with extra metrics per epoch), one pending without epochs."""
    engine = make_engine(fresh_url)
    migrations.upgrade(engine)
    with Session(engine, expire_on_commit=False) as session:
        dataset = Dataset(
            name="cwru", num_signals=0, fault_types=["n"], severity_levels=["m"], file_path="d"
        )
        session.add(dataset)
        session.flush()
        for name, score, extra in (("cnn-a", 0.81, False), ("resnet-b", 0.93, True)):
            experiment = experiments.create_experiment(
                session, name, name.split("-")[0], dataset, {"lr": 0.01}, notes="bearing run"
            )
            experiments.start(session, experiment)
            curves.log_epochs(session, experiment, curve(20, extra))
            experiments.finish(session, experiment, {"val_accuracy": score})
        tags.tag_experiment(session, experiment, tags.get_or_create_tag(session, "Best Run"))
        experiments.create_experiment(session, "lstm-c", "lstm", dataset, {})
        session.commit()
    engine.dispose()
    return fresh_url


def curve(epochs: int, extra: bool) -> list[dict]:
    return [
        {
            "epoch": n,
            "train_loss": 2 / (n + 1),
            "val_loss": 2.2 / (n + 1),
            "train_accuracy": 1 - 0.9 / (n + 1),
            "val_accuracy": 1 - 0.95 / (n + 1),
            **({"metrics": {"f1": 0.5 + n / 100}} if extra and n % 2 == 0 else {}),
        }
        for n in range(epochs)
    ]


def cli(url: str, *args: str):
    return pfd_db("experiment", *args, "--url", url)


def training_runs(url: str) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(TrainingRun))
    finally:
        engine.dispose()


# --- list ------------------------------------------------------------------------------


def test_list_shows_every_experiment_newest_first(url):
    result = cli(url, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    order = [name for line in lines for name in ("lstm-c", "resnet-b", "cnn-a") if name in line]
    assert order == ["lstm-c", "resnet-b", "cnn-a"]
    assert "0.93" in next(line for line in lines if "resnet-b" in line)
    assert lines[-1] == "3 of 3 shown"


def test_list_runs_the_search_language(url):
    assert "resnet-b" in cli(url, "list", "tag:best-run").stdout
    found = json.loads(cli(url, "list", "bearing -tag:best-run", "--json").stdout)
    assert [e["name"] for e in found["experiments"]] == ["cnn-a"]
    found = json.loads(cli(url, "list", "metric.val_accuracy>0.9", "--json").stdout)
    assert (found["total"], found["experiments"][0]["name"]) == (1, "resnet-b")


def test_list_json_is_one_document_with_stable_keys(url):
    result = cli(url, "list", "status:completed", "--limit", "1", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["query"], document["total"]) == ("status:completed", 2)
    [first] = document["experiments"]
    assert set(first) == {
        "id", "name", "model_type", "dataset", "status", "score", "metrics", "total_epochs",
        "created_at", "rank",
    }  # fmt: skip
    assert (first["dataset"], first["status"], first["total_epochs"]) == ("cwru", "completed", 20)


def test_a_malformed_query_is_refused_in_one_line(url):
    assert_refused(cli(url, "list", 'tag:"open'), "unterminated quote", "position")


def test_a_limit_out_of_range_is_refused(url):
    assert_refused(cli(url, "list", "--limit", "501"), "--limit")


# --- show ------------------------------------------------------------------------------


def test_show_prints_the_summary_and_charts_of_loss_and_accuracy(url):
    result = cli(url, "show", "resnet-b", "--width", "30")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("name             resnet-b", "status           completed",
                     "epochs           20 (best: 19)", "metrics          val_accuracy=0.93",
                     "notes            bearing run", *CHART_LEGENDS):  # fmt: skip
        assert expected in out, expected
    plotted = [line for line in out.splitlines() if "┤" in line]
    assert len(plotted) == 30  # three charts of ten rows: loss, accuracy, the extra f1
    assert "other metrics" in out
    assert all(len(line.split("┤")[1]) <= 30 for line in plotted)
    assert all(marker in out for marker in MARKERS[:2])


def test_show_without_epochs_says_so(url):
    result = cli(url, "show", "lstm-c")
    assert result.exit_code == 0, result.output
    assert "no epochs logged" in result.stdout
    assert "┤" not in result.stdout


def test_show_csv_writes_every_metric_by_epoch(url, tmp_path):
    target = tmp_path / "curve.csv"
    result = cli(url, "show", "resnet-b", "--csv", str(target))
    assert result.exit_code == 0, result.output
    assert f"wrote 20 epochs, 8 columns, to {target}" in result.stdout
    with target.open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == [
        "epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate",
        "duration_seconds", "f1",
    ]  # fmt: skip
    assert len(rows) == 21
    assert rows[1][0] == "0" and float(rows[1][2]) == pytest.approx(2.2)
    assert (rows[1][7], rows[2][7], rows[3][7]) == ("0.5", "", "0.52")  # None: empty
    assert rows[1][5] == ""  # no learning rate logged


def test_show_json_has_the_summary_and_the_curve_columns(url):
    document = json.loads(cli(url, "show", "resnet-b", "--json").stdout)
    assert document["experiment"]["config"] == {"lr": 0.01}
    assert document["experiment"]["best_epoch"] == 19
    assert document["curve"]["epoch"] == list(range(20))
    assert document["curve"]["f1"][:3] == [0.5, None, 0.52]


def test_show_of_an_unknown_experiment_is_refused(url):
    assert_refused(cli(url, "show", "nope"), "no experiment named 'nope'")


def test_a_csv_file_that_cannot_be_written_is_refused(url, tmp_path):
    missing = tmp_path / "no" / "such" / "dir.csv"
    assert_refused(cli(url, "show", "resnet-b", "--csv", str(missing)), str(missing))


def test_the_commands_only_read(url, tmp_path):
    before = training_runs(url)
    for args in (["list"], ["list", "tag:best-run"], ["show", "cnn-a"]):
        assert cli(url, *args).exit_code == 0
    cli(url, "show", "cnn-a", "--csv", str(tmp_path / "c.csv"))
    assert training_runs(url) == before == 40


def test_a_database_behind_head_is_refused(fresh_url):
    engine = make_engine(fresh_url)
    migrations.upgrade(engine, "0001")
    engine.dispose()
    assert_refused(cli(fresh_url, "list"), "run pfd-db migrate")
