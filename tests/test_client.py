"""`pfd_db.client.Client`, the remote client of training jobs.

Against the real app in-process (the contract's TestClient transport), both
dialects: every verb, buffering and batching, and each store error rebuilt from
its problem document. Retries against real HTTP servers (uvicorn in a thread):
scripted ASGI apps that answer 429/503 or drop the connection, and the real
app behind a wrapper that drops the answer after the epochs were written.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select

from api_support import IssuedKey
from pfd_db import errors
from pfd_db.client import Client
from pfd_db.models import Dataset

pytest_plugins = ["api_support"]


# --- real servers in a thread ------------------------------------------------------


@contextmanager
def serving(app: Any, lifespan: str = "off") -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread; its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


DROP = "drop"
EXPERIMENT = b'{"id": 1, "name": "x", "status": "running"}'


class Scripted:
    """A real ASGI app: the n-th request gets the n-th scripted answer, ``(status,
    headers)`` or DROP (headers sent, then the connection closed before the body);
    once the script is spent, 200 with an experiment. ``seen`` lists (method, path)."""

    def __init__(self, *answers: tuple[Any, ...] | str) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body"):
            pass
        self.seen.append((scope["method"], scope["path"]))
        answer = self.answers.pop(0) if self.answers else (200, {})
        if answer == DROP:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"100")]})  # fmt: skip
            raise ConnectionAbortedError("dropped on purpose")
        status, headers, *given = answer
        body = EXPERIMENT if status < 400 else b'{"status": %d}' % status
        if path_is_epochs(scope["path"]) and status < 400:
            body = b'{"written": 1}'
        body = given[0] if given else body
        await send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"),
                        *((k.encode(), v.encode()) for k, v in headers.items())],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def path_is_epochs(path: str) -> bool:
    return path.endswith("/epochs")


def test_503_is_retried_after_the_servers_retry_after():
    app = Scripted((503, {"Retry-After": "1"}))
    with serving(app) as url, Client(url, "k", backoff=0.01) as client:
        began = time.monotonic()
        assert client.experiment(1)["status"] == "running"
        waited = time.monotonic() - began
    assert app.seen == [("GET", "/api/v1/experiments/1")] * 2
    assert waited >= 1.0
    assert client.requests == 2


def test_429_is_retried_until_the_retries_run_out():
    app = Scripted(*[(429, {"Retry-After": "0"})] * 3)
    with serving(app) as url:
        with Client(url, "k", retries=3) as client:
            assert client.experiment(1)["id"] == 1  # 3 refusals, then the answer
        app.answers = [(429, {"Retry-After": "0"})] * 3
        with Client(url, "k", retries=2) as client, pytest.raises(errors.RateLimited) as refused:
            client.experiment(1)
    assert len(app.seen) == 4 + 3
    assert refused.value.status == 429 and refused.value.retry_after == 0


def test_a_wait_longer_than_max_wait_is_not_slept_but_raised():
    app = Scripted((429, {"Retry-After": "3600"}))
    with serving(app) as url, Client(url, "k", max_wait=5) as client:
        began = time.monotonic()
        with pytest.raises(errors.RateLimited) as refused:
            client.experiment(1)
        assert time.monotonic() - began < 2
    assert refused.value.retry_after == 3600
    assert len(app.seen) == 1


def test_503_without_retry_after_backs_off_and_gives_up_as_unavailable():
    app = Scripted(*[(503, {})] * 10)
    with (
        serving(app) as url,
        Client(url, "k", retries=2, backoff=0.01) as client,
        pytest.raises(errors.DatabaseUnavailable),
    ):
        client.experiment(1)
    assert len(app.seen) == 3


def test_a_dropped_connection_resends_a_batch_but_not_a_creation():
    app = Scripted(DROP, DROP)
    with serving(app) as url, Client(url, "k", backoff=0.01) as client:
        assert client.log_epochs(1, [{"epoch": 0, "train_loss": 1, "val_loss": 1,
                                      "train_accuracy": 0, "val_accuracy": 0}]) == 1  # fmt: skip
        assert [path for _, path in app.seen] == ["/api/v1/experiments/1/epochs"] * 3
        app.answers = [DROP]
        with pytest.raises(errors.DatabaseUnavailable, match="may have been done"):
            client.create_experiment("x", "cnn1d", "Default", {})
    assert app.seen[-1] == ("POST", "/api/v1/experiments") and len(app.seen) == 4


def test_a_status_change_whose_answer_was_lost_is_not_refused_on_retry():
    refused = json.dumps({"type": "urn:pfd-db:problem:invalid-transition", "status": 422,
                          "title": "Unprocessable Content",
                          "detail": "experiment 1 is running already"}).encode()  # fmt: skip
    app = Scripted(DROP, (422, {}, refused), (200, {}), (422, {}, refused))
    with serving(app) as url, Client(url, "k", backoff=0.01) as client:
        assert client.start(1)["status"] == "running"  # the lost answer had done it
        with pytest.raises(errors.InvalidTransition, match="running already"):
            client.start(1)  # nothing was lost: the refusal stands
    assert [method for method, _ in app.seen] == ["POST", "POST", "GET", "POST"]


def test_a_problem_without_a_known_type_falls_back_on_its_status():
    app = Scripted((404, {}, b"<html>not here</html>"), (418, {}, b"{}"))
    with serving(app) as url, Client(url, "k") as client:
        with pytest.raises(errors.NotFound, match="404"):
            client.experiment(1)
        with pytest.raises(errors.PfdDbError) as teapot:
            client.experiment(1)
    assert type(teapot.value) is errors.PfdDbError and teapot.value.status == 418


def test_a_server_not_listening_is_unavailable_after_the_retries():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", "k", retries=2, backoff=0.01)
    with pytest.raises(errors.DatabaseUnavailable, match="cannot be reached"):
        client.experiment(1)
    assert client.requests == 0
    client.close()


# --- against the real app -----------------------------------------------------------


@pytest.fixture
def dataset(db) -> Dataset:
    made = Dataset(name="Default", num_signals=0, fault_types=["normal"],
                   severity_levels=["mild"], file_path="d")  # fmt: skip
    db.add(made)
    db.commit()
    return made


@pytest.fixture
def remote(client, user_key, dataset) -> Iterator[Client]:
    """A Client over the app's in-process transport, with a read-write key."""
    with Client(str(client.base_url), user_key(), transport=client._transport) as made:
        yield made


def epoch(n: int, **extra: Any) -> dict[str, Any]:
    return {"epoch": n, "train_loss": 1 / (n + 1), "val_loss": 1.5 / (n + 1),
            "train_accuracy": n / 100, "val_accuracy": n / 110, **extra}  # fmt: skip


def test_a_training_run_through_every_verb(remote, dataset):
    run = remote.create_experiment("remote-1", "cnn1d", "Default", {"lr": 0.01},
                                   hyperparameters={"depth": 4}, notes="first")  # fmt: skip
    assert run["status"] == "pending" and run["dataset_id"] == dataset.id
    assert remote.start(run)["status"] == "running"
    for n in range(5):
        remote.log_epoch(run, n, **{k: v for k, v in epoch(n).items() if k != "epoch"},
                         learning_rate=0.01, metrics={"f1": n / 10})  # fmt: skip
    assert remote.buffered == 5 and remote.requests == 2  # nothing sent yet
    assert remote.log_epochs(run["id"], [epoch(n) for n in range(5, 12)]) == 7
    assert remote.buffered == 0  # the buffered five went first
    curve = remote.curve(run, ["val_loss", "f1"])
    assert curve["epoch"] == list(range(12))
    assert curve["f1"] == [n / 10 for n in range(5)] + [None] * 7
    assert remote.curve_csv(run).splitlines()[0].startswith("epoch,")
    done = remote.finish(run, {"test_accuracy": 0.9}, duration_seconds=12.5)
    assert done["status"] == "completed" and done["total_epochs"] == 12
    assert done["metrics"]["test_accuracy"] == 0.9
    assert remote.experiment(run["id"])["best_epoch"] == 11
    assert [e["name"] for e in remote.search("status:completed")] == ["remote-1"]
    assert remote.search("status:running") == []


def test_epochs_are_sent_in_batches_of_batch_size_and_on_finish(client, user_key, dataset):
    key = user_key()
    with Client(str(client.base_url), key, batch_size=10, transport=client._transport) as remote:
        run = remote.create_experiment("batched", "cnn1d", dataset.id, {})
        remote.start(run)
        sent = remote.requests
        for n in range(25):
            remote.log_epoch(run["id"], n, 1.0, 1.0, 0.5, 0.5)
        assert remote.requests - sent == 2 and remote.buffered == 5
        remote.log_epoch(run, 3, 9.0, 9.0, 0.1, 0.1)  # again: replaces, in the next batch
        assert remote.finish(run)["total_epochs"] == 25
        assert remote.requests - sent == 2 + 1 + 1 and remote.buffered == 0
        assert remote.curve(run, ["train_loss"])["train_loss"][3] == 9.0


def test_a_batch_sent_twice_changes_nothing(remote):
    run = remote.start(remote.create_experiment("twice", "cnn1d", "Default", {}))
    batch = [epoch(n, metrics={"f1": 0.5}) for n in range(50)]
    assert remote.log_epochs(run, batch) == 50
    first = remote.curve(run)
    assert remote.log_epochs(run, batch) == 50
    assert remote.curve(run) == first and len(first["epoch"]) == 50


def test_the_failed_verb_and_fail_flushes_first(remote):
    run = remote.start(remote.create_experiment("doomed", "cnn1d", "Default", {}))
    remote.log_epoch(run, 0, 1.0, 1.0, 0.1, 0.1)
    failed = remote.fail(run, "CUDA out of memory")
    assert failed["status"] == "failed" and failed["total_epochs"] in (None, 1)
    assert remote.curve(run)["epoch"] == [0]


def test_bad_epochs_are_refused_at_the_call_and_nothing_is_sent(remote):
    run = remote.create_experiment("strict", "cnn1d", "Default", {})
    sent = remote.requests
    with pytest.raises(errors.InvalidInput, match="val_loss"):
        remote.log_epoch(run, 0, 1.0, math.nan, 0.5, 0.5)
    with pytest.raises(errors.InvalidInput, match=r"rows\[1\]\.metrics"):
        remote.log_epochs(run, [epoch(0), epoch(1, metrics={"bad name": 1.0})])
    with pytest.raises(errors.InvalidInput, match="epoch"):
        remote.log_epoch(run, -1, 1.0, 1.0, 0.5, 0.5)
    assert remote.requests == sent and remote.buffered == 0


@pytest.mark.parametrize(
    ("call", "kind", "status"),
    [
        (lambda c, run: c.experiment(987654), errors.NotFound, 404),
        (lambda c, run: c.create_experiment("taken", "cnn1d", "Default", {}), errors.Conflict, 409),
        (lambda c, run: c.create_experiment("x", "", "Default", {}), errors.InvalidInput, 422),
        (lambda c, run: c.finish(run), errors.InvalidTransition, 422),
        (lambda c, run: c.search("metric.val_loss >> 1"), errors.InvalidQuery, 422),
        (lambda c, run: c.log_epochs(987654, [epoch(0)]), errors.NotFound, 404),
    ],
    ids=[
        "not-found",
        "conflict",
        "invalid-input",
        "invalid-transition",
        "invalid-query",
        "epochs-of-nothing",
    ],
)
def test_store_errors_come_back_as_their_own_classes(remote, call, kind, status):
    run = remote.create_experiment("taken", "cnn1d", "Default", {})
    with pytest.raises(kind) as raised:
        call(remote, run)
    assert type(raised.value) is kind
    assert raised.value.status == status
    assert raised.value.problem["status"] == status
    assert str(raised.value) == raised.value.problem["detail"]


def test_refused_input_names_its_field(remote):
    with pytest.raises(errors.InvalidInput) as raised:
        remote.create_experiment("x", "", "Default", {})
    assert raised.value.field == "model_type"


def test_an_invalid_query_keeps_its_position(remote):
    with pytest.raises(errors.InvalidQuery) as raised:
        remote.search("status:")
    assert isinstance(raised.value.position, int)


def test_refused_keys_and_scopes(client, user_key, dataset):
    def remote(key: str) -> Client:
        return Client(str(client.base_url), key, transport=client._transport)

    with remote("pfd_" + "x" * 40) as unknown, pytest.raises(errors.AuthenticationFailed) as no:
        unknown.search()
    assert no.value.status == 401
    with remote(user_key(scopes=("read",))) as reader:
        assert reader.search() == []
        with pytest.raises(errors.PermissionDenied) as denied:
            reader.create_experiment("nope", "cnn1d", "Default", {})
    assert denied.value.status == 403


def test_a_spent_rate_limit_is_raised_with_its_retry_after(client, user_key: Any, dataset):
    key: IssuedKey = user_key(rate_limit=2)
    with Client(str(client.base_url), key, transport=client._transport, max_wait=5) as remote:
        remote.search()
        remote.search()
        with pytest.raises(errors.RateLimited) as limited:
            remote.search()
    assert limited.value.status == 429 and limited.value.retry_after > 5


def test_a_refused_batch_is_dropped_and_raised_not_retried_forever(remote):
    remote.log_epoch(987654, 0, 1.0, 1.0, 0.5, 0.5)
    with pytest.raises(errors.NotFound):
        remote.flush()
    assert remote.buffered == 0
    assert remote.flush() == 0


def test_leaving_a_with_block_sends_the_buffer(client, user_key, dataset):
    key = user_key()
    with Client(str(client.base_url), key, transport=client._transport) as remote:
        run = remote.start(remote.create_experiment("kept", "cnn1d", "Default", {}))
        remote.log_epoch(run, 0, 1.0, 1.0, 0.5, 0.5)
    assert remote.buffered == 0
    with Client(str(client.base_url), key, transport=client._transport) as reader:
        assert reader.curve(run)["epoch"] == [0]
    with pytest.raises(errors.InvalidInput, match="closed"):
        remote.experiment(run)


def test_a_retried_batch_the_server_had_written_is_not_written_twice(api_app, user_key, dataset):
    """The answer to the first POST of the batch is lost after the app wrote it;
    the client sends it again; each epoch is stored once, with its values."""
    drops = {"left": 1}

    async def dropping(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/epochs") or not drops["left"]:
            await api_app(scope, receive, send)
            return
        drops["left"] -= 1
        answered: list[Any] = []

        async def hold(message: Any) -> None:
            answered.append(message)

        await api_app(scope, receive, hold)  # the real app writes the batch
        await send(answered[0])  # the status line and headers, then the connection drops
        raise ConnectionAbortedError("answer lost on purpose")

    with serving(dropping, lifespan="on") as url, Client(url, user_key(), backoff=0.01) as remote:
        run = remote.start(remote.create_experiment("lossy", "cnn1d", "Default", {}))
        sent = remote.requests
        assert remote.log_epochs(run, [epoch(n) for n in range(100)]) == 100
        assert remote.requests - sent == 1 and drops["left"] == 0  # one answer lost, one received
        curve = remote.curve(run, ["train_loss"])
    assert curve["epoch"] == list(range(100))
    assert curve["train_loss"] == [1 / (n + 1) for n in range(100)]


def test_a_long_curve_goes_out_in_concurrent_batches(api_app, user_key, dataset):
    """log_epochs sends its batches up to in_flight at once, every one arrives once."""
    live = {"now": 0, "most": 0, "batches": 0}

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/epochs"):
            await api_app(scope, receive, send)
            return
        live["now"] += 1
        live["most"] = max(live["most"], live["now"])
        live["batches"] += 1
        try:
            await asyncio.sleep(0.05)  # long enough for the others to arrive
            await api_app(scope, receive, send)
        finally:
            live["now"] -= 1

    with serving(counting, lifespan="on") as url, Client(url, user_key(), in_flight=3) as remote:
        run = remote.start(remote.create_experiment("wide", "cnn1d", "Default", {}))
        assert remote.log_epochs(run, [epoch(n) for n in range(1_000)]) == 1_000
        assert remote.curve(run, ["train_loss"])["train_loss"] == [
            1 / (n + 1) for n in range(1_000)
        ]
    assert live["batches"] == 10 and live["most"] == 3


def test_concurrent_batches_are_all_tried_then_the_first_error_raised(
    client, user_key, dataset, db
):
    from pfd_db.models import TrainingRun

    key: IssuedKey = user_key(rate_limit=5)  # create + start, then three batches of eight
    with Client(str(client.base_url), key, transport=client._transport, max_wait=1) as remote:
        run = remote.start(remote.create_experiment("capped", "cnn1d", "Default", {}))
        with pytest.raises(errors.RateLimited):
            remote.log_epochs(run, [epoch(n) for n in range(800)])
    written = select(func.count()).where(TrainingRun.experiment_id == run["id"])
    assert db.scalar(written) == 300


def test_importing_the_client_stays_light():
    """The client brings no store, models, ORM, server or database driver."""
    code = ("import sys, pfd_db.client; "
            "print(' '.join(m for m in sys.modules if m.startswith(("
            "'pfd_db.store', 'pfd_db.models', 'pfd_db.session', 'pfd_db.engine', 'pfd_db.api',"
            "'sqlalchemy.orm', 'fastapi', 'starlette', 'psycopg', 'uvicorn'))))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_every_problem_type_the_server_sends_is_known_to_the_client():
    from pfd_db.api import problems
    from pfd_db.client.problems import BY_SLUG, BY_STATUS

    for kind, status, slug in problems.STORE_ERRORS:  # a MigrationError is sent as unavailable
        assert issubclass(kind, BY_SLUG[slug]) or slug == "database-unavailable", slug
        assert status in BY_STATUS or status >= 500
    assert set(problems._SLUGS.values()) <= set(BY_SLUG)
