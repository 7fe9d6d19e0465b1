"""Training curves over HTTP on both dialects: epochs logged in batches (idempotent),
the curve read back as JSON columns or CSV; auth and error mappings."""

from __future__ import annotations

import csv
import io

import pytest

from api_support import auth, problem

pytest_plugins = ["api_support"]

BASE = "/api/v1/experiments"


@pytest.fixture
def experiment_id(db, owner):
    from pfd_db.store.ml import datasets, experiments

    dataset = datasets.register_dataset(db, "curves", ["normal"], ["low"], "d.h5")
    experiment = experiments.create_experiment(
        db, "curve-run", "cnn1d", dataset, {}, created_by=owner.user_id
    )
    db.commit()
    return experiment.id


def epoch(n, **extra):
    row = {
        "epoch": n,
        "train_loss": 1.0 / (n + 1),
        "val_loss": 1.1 / (n + 1),
        "train_accuracy": 0.5 + n / 100,
        "val_accuracy": 0.45 + n / 100,
    }
    return {**row, **extra}


def log(client, key, ident, rows):
    return client.post(f"{BASE}/{ident}/epochs", json={"epochs": rows}, headers=auth(key))


def test_logging_a_batch_twice_changes_nothing(client, db, owner, experiment_id):
    from sqlalchemy import func, select

    from pfd_db.models import TrainingRun

    rows = [epoch(n, learning_rate=0.01, metrics={"f1": 0.5 + n / 10}) for n in range(100)]
    first = log(client, owner, experiment_id, rows)
    assert first.status_code == 200, first.text
    assert first.json() == {"written": 100}
    curve = client.get(f"{BASE}/{experiment_id}/curve", headers=auth(owner)).json()
    again = log(client, owner, experiment_id, rows)
    assert again.json() == {"written": 100}
    assert client.get(f"{BASE}/{experiment_id}/curve", headers=auth(owner)).json() == curve
    stored = db.scalar(
        select(func.count())
        .select_from(TrainingRun)
        .where(TrainingRun.experiment_id == experiment_id)
    )
    assert stored == 100
    assert curve["epoch"] == list(range(100))
    assert curve["f1"][3] == pytest.approx(0.8)
    assert curve["learning_rate"] == [0.01] * 100
    assert curve["duration_seconds"] == [None] * 100


def test_an_epoch_logged_again_is_replaced(client, owner, experiment_id):
    log(client, owner, experiment_id, [epoch(0), epoch(1)])
    log(client, owner, experiment_id, [epoch(1, val_loss=9.0)])
    curve = client.get(f"{BASE}/{experiment_id}/curve", headers=auth(owner)).json()
    assert curve["epoch"] == [0, 1] and curve["val_loss"] == [1.1, 9.0]


def test_chosen_metrics_and_csv(client, owner, experiment_id):
    log(client, owner, experiment_id, [epoch(0, metrics={"f1": 0.25}), epoch(1)])
    chosen = client.get(
        f"{BASE}/{experiment_id}/curve", params={"metrics": "val_loss,f1"}, headers=auth(owner)
    )
    assert chosen.json() == {"epoch": [0, 1], "val_loss": [1.1, 0.55], "f1": [0.25, None]}
    as_csv = client.get(
        f"{BASE}/{experiment_id}/curve",
        params={"metrics": "val_loss,f1"},
        headers={**auth(owner), "accept": "text/csv"},
    )
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(as_csv.text)))
    assert table == [["epoch", "val_loss", "f1"], ["0", "1.1", "0.25"], ["1", "0.55", ""]]
    empty = client.get(
        f"{BASE}/{experiment_id}/curve", params={"metrics": "nope"}, headers=auth(owner)
    )
    assert empty.json() == {"epoch": [0, 1], "nope": [None, None]}


def test_an_empty_curve(client, owner, experiment_id):
    curve = client.get(f"{BASE}/{experiment_id}/curve", headers=auth(owner)).json()
    assert curve["epoch"] == [] and curve["val_accuracy"] == []
    assert log(client, owner, experiment_id, []).json() == {"written": 0}


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([{"epoch": 0}], "epochs.0.train_loss"),
        ([{**epoch(0), "epoch": -1}], "epochs.0.epoch"),
        ([epoch(0, surprise=1)], "epochs.0.surprise"),
        ([epoch(0, train_loss="0.5")], "epochs.0.train_loss"),
        ([epoch(0, metrics={"f1": "high"})], "epochs.0.metrics.f1"),
        ([epoch(0), epoch(0)], "epochs"),
        ([epoch(0, metrics={"val_loss": 0.1})], "epochs"),
        ([epoch(0, metrics={"bad name": 0.1})], "epochs"),
    ],
)
def test_bad_rows_are_422_naming_the_field(client, owner, experiment_id, rows, field):
    problem(log(client, owner, experiment_id, rows), 422, field)
    curve = client.get(f"{BASE}/{experiment_id}/curve", headers=auth(owner)).json()
    assert curve["epoch"] == []  # nothing of the batch was written


def test_nan_in_a_row_is_refused(client, owner, experiment_id):
    row = '{"epoch": 0, "train_loss": NaN, "val_loss": 1, "train_accuracy": 0, "val_accuracy": 0}'
    raw = '{"epochs": [' + row + "]}"
    response = client.post(
        f"{BASE}/{experiment_id}/epochs",
        content=raw,
        headers={**auth(owner), "content-type": "application/json"},
    )
    problem(response, 422)


def test_bad_metric_names_in_the_query(client, owner, experiment_id):
    problem(
        client.get(f"{BASE}/{experiment_id}/curve", params={"metrics": "a b"}, headers=auth(owner)),
        422,
        "metrics",
    )
    problem(
        client.get(f"{BASE}/{experiment_id}/curve", params={"metrics": ""}, headers=auth(owner)),
        422,
        "metrics",
    )


def test_auth_and_visibility(client, user_key, admin_key, owner, experiment_id):
    problem(log(client, "", experiment_id, [epoch(0)]), 401)
    problem(client.get(f"{BASE}/{experiment_id}/curve"), 401)
    problem(log(client, user_key(scopes=("read",)), experiment_id, [epoch(0)]), 403)
    stranger = user_key()
    problem(log(client, stranger, experiment_id, [epoch(0)]), 404)
    problem(client.get(f"{BASE}/{experiment_id}/curve", headers=auth(stranger)), 404)
    assert log(client, admin_key, experiment_id, [epoch(0)]).json() == {"written": 1}
    reader = client.get(f"{BASE}/{experiment_id}/curve", headers=auth(admin_key))
    assert reader.json()["epoch"] == [0]
    problem(log(client, owner, 999_999, [epoch(0)]), 404)
    problem(client.get(f"{BASE}/999999/curve", headers=auth(owner)), 404)
