"""How fast is ``pfd-db serve``, measured against a real server process?

On a SQLite file (one worker) and on PostgreSQL (two workers), each figure a
ratio measured in the same run (absolute numbers on a shared machine mean little):

1. **remote logging**: epochs per second logged by ``pfd_db.client.Client``
   (``log_epochs``, batches of 100 epochs a request) ÷ in-process
   ``curves.log_epochs`` of the same rows, 100 a call and a commit per call, on
   the same database (goal ≥ 0.5);
2. **MLflow**: the same curves (five metrics an epoch, 100 epochs a call)
   through MLflow's tracking server (``mlflow server`` on a database of the
   same kind, ``MlflowClient.log_batch``): pfd-db's epochs/s ÷ MLflow's (goal
   ≥ 10). Needs MLflow (``pip install -e '.[bench]'``); set
   ``PFD_BENCH_MLFLOW_PYTHON`` to an interpreter that has it to use another
   environment. Without it the figure is skipped, saying so;
3. **concurrent reads**: authenticated ``GET /api/v1/experiments/{id}`` from 32
   concurrent clients: requests/s, p50, p99, errors (goal 0 errors, p99 at most 10
   times p50);
4. **the middleware's share**: auth + rate limit + request logging as a share
   of a request's server time (goal ≤ 30 %), measured in-process on the same
   app and database: each request's time above the router (the middleware)
   plus its rate-limit write (which runs in the route's thread), against its
   time in the whole ASGI app;
5. **request logging**: ``api_request_logs`` rows ÷ ``/api`` requests the
   server answered, counted after SIGTERM stopped it (goal 1.0), with its exit
   code (goal 0).

    python benchmarks/bench_server.py
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import databases  # noqa: F401 - puts tests/ on sys.path
import httpx
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.client import Client
from pfd_db.engine import make_engine
from pfd_db.models import APIRequestLog, Dataset
from pfd_db.store.ml import curves, experiments
from pgserver import PostgresServer
from served_process import Served, free_port

PFD_DB = str(Path(sys.executable).with_name("pfd-db"))
EPOCHS_PER_EXPERIMENT = 1_000
EXPERIMENTS = 10  # per round: 10 000 epochs, 100 requests or calls
BATCH = 100
ROUNDS = 3
MLFLOW_EPOCHS = 2_000
CONCURRENCY = 32
REQUESTS_EACH = 60
SHARE_REQUESTS = 400
ENV = {
    **os.environ,
    "PFD_DB_SECRET_KEY": os.environ.get("PFD_DB_SECRET_KEY") or Fernet.generate_key().decode(),
    "PFD_DB_SLOW_QUERY_SECONDS": "60",
}


@dataclass
class Figures:
    """What one dialect measured."""

    dialect: str
    workers: int
    client_eps: float = 0.0
    inprocess_eps: float = 0.0
    mlflow_eps: float | None = None
    mlflow_note: str = ""
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    share: float = 0.0
    logged: int = 0
    served: int = 0
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)


def main() -> int:
    """Measure each dialect against its own server, then print the figures."""
    results = []
    with tempfile.TemporaryDirectory(prefix="pfd_bench_server_") as folder:
        results.append(bench_dialect("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}",
                                     f"sqlite:///{Path(folder) / 'mlflow.db'}", 1))  # fmt: skip
        server = PostgresServer()
        server.start()
        try:
            server.create_database("pfd_bench")
            server.create_database("mlflow_bench")
            mlflow_url = server.url("mlflow_bench").replace("postgresql://", "postgresql+psycopg://")
            results.append(bench_dialect("postgresql", server.url("pfd_bench"), mlflow_url, 2))
        finally:
            server.stop()
    print_figures(results)
    return 0


def bench_dialect(dialect: str, url: str, mlflow_url: str, workers: int) -> Figures:
    figures = Figures(dialect, workers)
    run_cli("init", "--quiet", "--url", url)
    key = run_cli("apikey", "create", "admin", "--name", "bench", "--scope", "admin",
                  "--rate-limit", "1000000000", "--quiet", "--url", url).split()[-1]  # fmt: skip
    engine = make_engine(url)
    try:
        progress(f"{dialect}: serving with {workers} worker(s)")
        with Served(url, workers=workers, env=ENV) as server:
            served = remote_logging(figures, engine, server.base_url, key)
            served += concurrent_reads(figures, server.base_url, key)
            figures.exit_code = server.stop()
            if figures.exit_code != 0:
                figures.notes.append(server.output()[-2000:])
        figures.served = served
        with engine.connect() as connection:
            figures.logged = connection.scalar(
                select(func.count()).select_from(APIRequestLog)
                .where(APIRequestLog.endpoint.like("/api/%"))
            ) or 0  # fmt: skip
        progress(f"{dialect}: the middleware's share, in-process")
        figures.share = middleware_share(url, key)
    finally:
        engine.dispose()
    progress(f"{dialect}: MLflow")
    figures.mlflow_eps, figures.mlflow_note = mlflow_epochs_per_second(mlflow_url, workers)
    return figures


def run_cli(*args: str) -> str:
    done = subprocess.run([PFD_DB, *args], env=ENV, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pfd-db {args[0]} failed: {done.stderr}")
    return done.stdout.strip()


# --- 1. remote logging vs in-process -------------------------------------------------


def curve_rows(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"epoch": n, "train_loss": rng.random(), "val_loss": rng.random(),
         "train_accuracy": rng.random(), "val_accuracy": rng.random(),
         "learning_rate": 0.001}
        for n in range(EPOCHS_PER_EXPERIMENT)
    ]


def remote_logging(figures: Figures, engine: Any, base_url: str, key: str) -> int:
    """Best of ROUNDS rounds each, alternating; returns the requests served."""
    rows = [curve_rows(seed) for seed in range(EXPERIMENTS)]
    best_client = best_local = float("inf")
    with Client(base_url, key, batch_size=BATCH) as client:
        dataset = "Default"
        for round_ in range(ROUNDS + 1):  # the first round warms up
            remote = [client.create_experiment(f"remote-{round_}-{i}", "cnn1d", dataset, {})["id"]
                      for i in range(EXPERIMENTS)]  # fmt: skip
            began = time.perf_counter()
            for experiment, curve in zip(remote, rows, strict=True):
                client.log_epochs(experiment, curve)
            took = time.perf_counter() - began
            best_client = min(best_client, took) if round_ else best_client
            local = local_experiments(engine, round_)
            began = time.perf_counter()
            with Session(engine) as session:
                for experiment, curve in zip(local, rows, strict=True):
                    for start in range(0, len(curve), BATCH):
                        curves.log_epochs(session, experiment, curve[start : start + BATCH])
                        session.commit()
            took = time.perf_counter() - began
            best_local = min(best_local, took) if round_ else best_local
        served = client.requests
    epochs = EXPERIMENTS * EPOCHS_PER_EXPERIMENT
    figures.client_eps = epochs / best_client
    figures.inprocess_eps = epochs / best_local
    return served


def local_experiments(engine: Any, round_: int) -> list[int]:
    with Session(engine) as session:
        dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == "Default"))
        assert dataset_id is not None
        made = [experiments.create_experiment(session, f"local-{round_}-{i}", "cnn1d",
                                              dataset_id, {}).id
                for i in range(EXPERIMENTS)]  # fmt: skip
        session.commit()
        return made


# --- 3. 32 concurrent readers ------------------------------------------------------------


def concurrent_reads(figures: Figures, base_url: str, key: str) -> int:
    """Returns the requests served."""
    with Client(base_url, key) as client:
        experiment = client.search(limit=1)[0]["id"]
    answered = client.requests
    latencies: list[float] = []
    failures = 0

    async def reader(http: httpx.AsyncClient) -> None:
        nonlocal failures, answered
        for _ in range(REQUESTS_EACH):
            began = time.perf_counter()
            try:
                response = await http.get(f"/api/v1/experiments/{experiment}")
                ok = response.status_code == 200
                answered += 1
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - began)
            failures += not ok

    async def everyone() -> float:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=30, headers=headers
        ) as http:
            await asyncio.gather(*(reader(http) for _ in range(CONCURRENCY)))  # warm-up
            latencies.clear()
            began = time.perf_counter()
            await asyncio.gather(*(reader(http) for _ in range(CONCURRENCY)))
            return time.perf_counter() - began

    took = asyncio.run(everyone())
    ordered = sorted(latencies)
    figures.rps = len(ordered) / took
    figures.p50_ms = 1000 * statistics.median(ordered)
    figures.p99_ms = 1000 * ordered[int(0.99 * (len(ordered) - 1))]
    figures.errors = failures
    return answered


# --- 4. the middleware's share ---------------------------------------------------------------


class Timed:
    """An ASGI app that adds the time spent in ``app`` to ``spent``."""

    def __init__(self, app: Any, spent: list[float]) -> None:
        self.app = app
        self.spent = spent

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        began = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.spent.append(time.perf_counter() - began)


def middleware_share(url: str, key: str) -> float:
    """(time above the router + time counting the request against its limit) ÷
    (time in the whole app), summed over SHARE_REQUESTS sequential reads after a
    warm-up. Above the router: the auth, request-timing, body-limit and error
    middleware; the limit's one write runs in the route's thread
    (``pfd_db.api.db.count_request``), so it is timed there."""
    from starlette.testclient import TestClient

    from pfd_db.api import create_app
    from pfd_db.api import db as api_db

    app = create_app(url)
    whole: list[float] = []
    below: list[float] = []
    limit: list[float] = []
    counting = api_db.count_request

    def timed_count(scope: Any, session: Any) -> None:
        began = time.perf_counter()
        try:
            counting(scope, session)
        finally:
            limit.append(time.perf_counter() - began)

    api_db.count_request = timed_count
    try:
        with TestClient(Timed(app, whole)) as http:
            headers = {"Authorization": f"Bearer {key}"}
            listed = http.get("/api/v1/experiments", headers=headers).json()
            experiment = listed["items"][0]["id"]
            innermost = app.middleware_stack
            while getattr(innermost, "app", None) is not None and innermost.app is not app.router:
                innermost = innermost.app
            innermost.app = Timed(innermost.app, below)
            for _round in range(2):  # the first warms up
                for spent in (whole, below, limit):
                    spent.clear()
                for _ in range(SHARE_REQUESTS):
                    answer = http.get(f"/api/v1/experiments/{experiment}", headers=headers)
                    assert answer.is_success, answer.text
    finally:
        api_db.count_request = counting
    return (sum(whole) - sum(below) + sum(limit)) / sum(whole)


# --- 2. MLflow -------------------------------------------------------------------------


MLFLOW_CLIENT = textwrap.dedent("""
    import json, random, sys, time
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    uri, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = MlflowClient(uri)
    experiment = client.create_experiment(f"bench-{time.time_ns()}")
    rng = random.Random(0)
    names = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
    def calls():
        now = int(time.time() * 1000)
        rows = [[Metric(name, rng.random(), now, n) for name in names] for n in range(epochs)]
        return [sum(rows[i:i + batch], []) for i in range(0, epochs, batch)]
    best = float("inf")
    for round_ in range(3):
        run = client.create_run(experiment).info.run_id
        batches = calls()
        began = time.perf_counter()
        for metrics in batches:
            client.log_batch(run, metrics=metrics)
        took = time.perf_counter() - began
        best = min(best, took) if round_ else best
    print(json.dumps({"epochs_per_second": epochs / best}))
""")


def mlflow_epochs_per_second(backend_uri: str, workers: int) -> tuple[float | None, str]:
    """MLflow's epochs/s through its own server with as many workers as pfd-db's,
    or None and why not."""
    python = os.environ.get("PFD_BENCH_MLFLOW_PYTHON", sys.executable)
    has = subprocess.run([python, "-c", "import mlflow"], capture_output=True, check=False)
    if has.returncode != 0:
        return None, "MLflow is not installed (pip install -e '.[bench]'): figure skipped"
    with tempfile.TemporaryDirectory(prefix="pfd_bench_mlflow_") as artifacts, mlflow_server(
        python, backend_uri, artifacts, workers
    ) as tracking_uri:
        done = subprocess.run(
            [python, "-c", MLFLOW_CLIENT, tracking_uri, str(MLFLOW_EPOCHS), str(BATCH)],
            capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
    if done.returncode != 0:
        return None, f"MLflow's client failed: {done.stderr.strip().splitlines()[-1:]}"
    return float(json.loads(done.stdout.strip().splitlines()[-1])["epochs_per_second"]), ""


@contextmanager
def mlflow_server(python: str, backend_uri: str, artifacts: str, workers: int) -> Iterator[str]:
    port = free_port()
    argv = [python, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
            "--default-artifact-root", artifacts, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers)]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"mlflow server exited: {log.read().decode()[-2000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            yield url
        finally:
            os.killpg(process.pid, 15)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


# --- output ------------------------------------------------------------------------------


def print_figures(results: list[Figures]) -> None:
    print("pfd-db serve against a real server process; ratios measured in the same run")
    for f in results:
        remote = f.client_eps / f.inprocess_eps
        print(f"\n{f.dialect} ({f.workers} worker{'s' * (f.workers > 1)})")
        line("Client epochs/s ÷ in-process log_epochs", f"{f.client_eps:,.0f} ÷ "
             f"{f.inprocess_eps:,.0f} = {remote:.2f}", "≥ 0.5", remote >= 0.5)  # fmt: skip
        if f.mlflow_eps is None:
            print(f"  {'pfd-db ÷ MLflow tracking server epochs/s':<46} {f.mlflow_note}")
        else:
            times = f.client_eps / f.mlflow_eps
            line("pfd-db ÷ MLflow tracking server epochs/s", f"{f.client_eps:,.0f} ÷ "
                 f"{f.mlflow_eps:,.0f} = {times:.1f}x", "≥ 10x", times >= 10)  # fmt: skip
        spread = f.p99_ms / f.p50_ms if f.p50_ms else float("inf")
        line(f"GET experiment, {CONCURRENCY} concurrent clients",
             f"{f.rps:,.0f} req/s, p50 {f.p50_ms:.1f} ms, p99 {f.p99_ms:.1f} ms "
             f"(p99/p50 {spread:.1f}), {f.errors} errors",
             "0 errors, p99 <= 10 p50", f.errors == 0 and spread <= 10)  # fmt: skip
        line("auth + limit + logging share of server time", f"{100 * f.share:.0f} %",
             "≤ 30 %", f.share <= 0.30)  # fmt: skip
        ratio = f.logged / f.served if f.served else 0.0
        line("request-log rows ÷ requests served (after SIGTERM)",
             f"{f.logged} ÷ {f.served} = {ratio:.3f}, exit {f.exit_code}", "1.0, exit 0",
             ratio == 1.0 and f.exit_code == 0)  # fmt: skip
        for note in f.notes:
            print(textwrap.indent(note, "    "))


def line(measure: str, value: str, goal: str, met: bool) -> None:
    print(f"  {measure:<46} {value:<58} goal {goal:<24} {'met' if met else 'MISSED'}")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
