"""`pfd-db serve` as a real process: a training job logs 1 000 epochs through
`pfd_db.client.Client`, SIGTERM stops the server gracefully (exit 0), and every
request it served is in `api_request_logs`. SQLite with one worker, PostgreSQL
with two. A client that never closes still sends its epochs at interpreter exit.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select

from cli_support import pfd_db
from pfd_db.client import Client
from pfd_db.engine import make_engine
from pfd_db.models import APIRequestLog, TrainingRun
from served_process import Served

EPOCHS = 1_000


@pytest.fixture
def served_url(fresh_url: str) -> str:
    """A fresh database of the current dialect, set up by `pfd-db init`."""
    done = pfd_db("init", "--quiet", "--url", fresh_url)
    assert done.exit_code == 0, done.output
    return fresh_url


def issue_key(url: str, *scopes: str) -> str:
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    done = pfd_db("apikey", "create", "admin", "--name", "trainer", *args,
                  "--rate-limit", "100000", "--quiet", "--url", url)  # fmt: skip
    assert done.exit_code == 0, done.output
    return done.stdout.strip().splitlines()[-1]


def counted(url: str, *where: object, model: type = APIRequestLog) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(model).where(*where)))
    finally:
        engine.dispose()


def test_a_served_training_job_is_logged_whole_and_stops_cleanly(dialect, served_url):
    key = issue_key(served_url, "write")
    workers = 2 if dialect == "postgresql" else 1
    with Served(served_url, workers=workers) as server:
        with Client(server.base_url, key, batch_size=100) as client:
            run = client.create_experiment("served-1", "cnn1d", "Default", {"lr": 0.01})
            client.start(run)
            for epoch in range(EPOCHS):
                client.log_epoch(run, epoch, 1 / (epoch + 1), 1.1 / (epoch + 1), epoch / EPOCHS,
                                 epoch / EPOCHS - 0.01, metrics={"f1": epoch / EPOCHS})  # fmt: skip
                assert client.buffered < 100
            done = client.finish(run, {"test_accuracy": 0.93})
            curve = client.curve(run, ["val_accuracy", "f1"])
            served = client.requests
        code = server.stop()
        assert code == 0, server.output()

    assert done["status"] == "completed" and done["total_epochs"] == EPOCHS
    assert curve["epoch"] == list(range(EPOCHS))
    assert curve["f1"][-1] == pytest.approx((EPOCHS - 1) / EPOCHS)
    # create + start + 10 batches of 100 + finish + curve
    assert served == 1 + 1 + EPOCHS // 100 + 1 + 1
    assert counted(served_url, TrainingRun.experiment_id == run["id"], model=TrainingRun) == EPOCHS
    logged = counted(served_url, APIRequestLog.endpoint.like("/api/%"))
    assert logged / served == 1.0
    assert not [path for path in endpoints(served_url) if re.search(r"/\d+(/|$)", path)]


def endpoints(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(select(APIRequestLog.endpoint).distinct()))
    finally:
        engine.dispose()


def test_a_client_left_open_sends_its_epochs_at_exit(served_url):
    key = issue_key(served_url, "write")
    with Served(served_url) as server:
        with Client(server.base_url, key) as client:
            run = client.create_experiment("left-open", "cnn1d", "Default", {})
            client.start(run)
        script = textwrap.dedent(f"""
            from pfd_db.client import Client
            client = Client({server.base_url!r}, {key!r}, batch_size=100)
            for epoch in range(7):
                client.log_epoch({run["id"]}, epoch, 0.5, 0.6, 0.7, 0.8)
            assert client.buffered == 7
        """)  # no flush, no close: the interpreter's exit sends them
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        assert counted(served_url, TrainingRun.experiment_id == run["id"], model=TrainingRun) == 7
        assert server.stop() == 0
