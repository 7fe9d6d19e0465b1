"""``Client``: what a training script does in-process, over HTTP to ``pfd-db serve``.

One ``httpx.Client`` per ``Client``: keep-alive connections, timeouts, the key in
the ``Authorization`` header (never in a URL, never in ``repr``).

**Retries.** 429 and 503 are answered before anything is written, so every call
retries them, waiting the ``Retry-After`` the server gives (else an exponential
back-off with jitter), up to ``retries`` times; a wait longer than
``max_wait`` is not slept: the error is raised with its ``retry_after``. A
connection that could not be made is retried the same way. A connection dropped
after the request went out is retried only where sending again is harmless:
reads, and epoch batches (the epochs route is an upsert per (experiment,
epoch): a batch the server wrote before the connection dropped is written again
with the same values, so no epoch is ever stored twice). A status change
retried that way and refused because the first attempt did it is answered with
the experiment as it now is. Creating an experiment is not resent.

**Errors** are the store's own classes (:mod:`pfd_db.errors`), rebuilt from the
problem documents (:mod:`pfd_db.client.problems`); a server that cannot be
reached after the retries is :class:`~pfd_db.errors.DatabaseUnavailable`.
"""

from __future__ import annotations

import atexit
import json
import logging
import random
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any

import httpx

from pfd_db.client.epochs import EpochBuffer, ExperimentRef, Row, epoch_row, id_of_experiment
from pfd_db.client.problems import error_from_response, retry_after_seconds
from pfd_db.errors import DatabaseUnavailable, InvalidInput, InvalidTransition, PfdDbError

log = logging.getLogger(__name__)

API = "/api/v1"
RETRY_STATUSES = frozenset({429, 503})
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors raised before the request reached the server: always safe to retry."""
DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadTimeout,
           httpx.WriteTimeout)  # fmt: skip
"""Transport errors after the request may have reached the server."""

Record = dict[str, Any]

_open_clients: weakref.WeakSet[Client] = weakref.WeakSet()


class Client:
    """A remote pfd-db store for training jobs.

    ``Client(base_url, api_key)`` (a key with the ``write`` scope to log).
    ``log_epoch`` buffers; a batch of ``batch_size`` rows goes out when that many
    are buffered, and whatever is buffered on :meth:`flush`, :meth:`finish`,
    :meth:`close`, leaving a ``with`` block, and at interpreter exit. Use it as a
    context manager::

        with Client("http://127.0.0.1:8000", key) as client:
            run = client.create_experiment("resnet-7", "cnn1d", "Default", {"lr": 0.01})
            client.start(run)
            for epoch in range(10):
                client.log_epoch(run, epoch, 0.5, 0.6, 0.8, 0.7)
            client.finish(run, {"test_accuracy": 0.9})

    ``log_epochs`` sends its batches up to ``in_flight`` at once (4), over as many
    keep-alive connections. ``transport`` (an ``httpx.BaseTransport``) replaces the
    network, e.g. to talk to an app in-process. ``requests`` counts the responses
    received.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        batch_size: int = 100,
        retries: int = 5,
        backoff: float = 0.25,
        max_wait: float = 60.0,
        in_flight: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise InvalidInput("api_key: give the API key's text")
        if batch_size < 1:
            raise InvalidInput("batch_size: must be at least 1")
        if retries < 0:
            raise InvalidInput("retries: must be 0 or more")
        if in_flight < 1:
            raise InvalidInput("in_flight: must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.in_flight = in_flight
        self.requests = 0
        self._counting = threading.Lock()
        self._senders: ThreadPoolExecutor | None = None
        self._buffer = EpochBuffer()
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key.strip()}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )
        self._closed = False
        _open_clients.add(self)

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, buffered={len(self._buffer)})"

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server answers ``GET /ready`` (its database reachable and
        at head), for a job that starts with its server;
        :class:`~pfd_db.errors.DatabaseUnavailable` if it does not within ``timeout``
        seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._http.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() >= deadline:
                raise DatabaseUnavailable(f"the pfd-db server at {self.base_url} is not ready"
                                          f" after {timeout:g} s")  # fmt: skip
            time.sleep(0.1)

    # --- experiments -----------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        model_type: str,
        dataset: int | str,
        config: Mapping[str, Any],
        *,
        hyperparameters: Mapping[str, Any] | None = None,
        notes: str | None = None,
    ) -> Record:
        """A new, pending experiment on ``dataset`` (its id or name), as stored
        (a dict with ``id``, ``name``, ``status``, ...). :class:`~pfd_db.errors.Conflict`
        if the name is taken."""
        body = {"name": name, "model_type": model_type, "dataset": dataset, "config": config,
                "hyperparameters": hyperparameters, "notes": notes}  # fmt: skip
        return self._json("POST", f"{API}/experiments", body=body, resend=False)

    def experiment(self, experiment: ExperimentRef) -> Record:
        """The experiment as stored now."""
        return self._json("GET", f"{API}/experiments/{id_of_experiment(experiment)}")

    def start(self, experiment: ExperimentRef) -> Record:
        """pending or paused → running; the experiment as stored."""
        return self._move(experiment, "start", None, ("running",))

    def finish(
        self,
        experiment: ExperimentRef,
        metrics: Mapping[str, Any] | None = None,
        *,
        duration_seconds: float | None = None,
    ) -> Record:
        """Send the experiment's buffered epochs, then end it (completed) with
        ``metrics`` merged into its stored ones; the experiment as stored."""
        self.flush(experiment)
        body = {"metrics": metrics, "duration_seconds": duration_seconds}
        return self._move(experiment, "finish", body, ("completed",))

    def fail(self, experiment: ExperimentRef, error_message: str) -> Record:
        """Send the experiment's buffered epochs, then mark it failed with what
        went wrong; the experiment as stored."""
        self.flush(experiment)
        return self._move(experiment, "fail", {"error_message": error_message}, ("failed",))

    def search(self, query: str = "", *, limit: int = 100) -> list[Record]:
        """Experiments matching ``query`` (the store's search language; empty:
        all, newest first), at most ``limit``, following the pages."""
        if limit < 1:
            raise InvalidInput("limit: must be at least 1")
        found: list[Record] = []
        cursor: str | None = None
        while len(found) < limit:
            params: dict[str, Any] = {"q": query, "limit": min(1000, limit - len(found))}
            if cursor:
                params["cursor"] = cursor
            page = self._json("GET", f"{API}/experiments", params=params)
            found += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:  # (a page may be short, even empty, and still not the last)
                break
        return found[:limit]

    # --- curves ------------------------------------------------------------------

    def log_epoch(
        self,
        experiment: ExperimentRef,
        epoch: int,
        train_loss: float,
        val_loss: float,
        train_accuracy: float,
        val_accuracy: float,
        *,
        learning_rate: float | None = None,
        duration_seconds: float | None = None,
        checkpoint_path: str | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Buffer one epoch (checked now: :class:`~pfd_db.errors.InvalidInput`
        naming the field); a full batch is sent at once. Logging an epoch again
        replaces it, as in-process."""
        row = epoch_row({
            "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
            "train_accuracy": train_accuracy, "val_accuracy": val_accuracy,
            "learning_rate": learning_rate, "duration_seconds": duration_seconds,
            "checkpoint_path": checkpoint_path, "metrics": metrics,
        })  # fmt: skip
        if self._buffer.add(id_of_experiment(experiment), row) >= self.batch_size:
            self.flush()

    def log_epochs(self, experiment: ExperimentRef, rows: Iterable[Mapping[str, Any]]) -> int:
        """Send many epochs now (the experiment's buffered ones first), in
        batches of ``batch_size``; returns how many were written. All rows are
        checked before any is sent."""
        experiment_id = id_of_experiment(experiment)
        checked = [epoch_row(row, f"rows[{i}].") for i, row in enumerate(rows)]
        self.flush(experiment_id)
        latest = {row["epoch"]: row for row in checked}  # an epoch twice: the last one wins
        values = list(latest.values())
        batches = [values[i : i + self.batch_size] for i in range(0, len(values), self.batch_size)]
        return self._send_batches(experiment_id, batches)

    def flush(self, experiment: ExperimentRef | None = None) -> int:
        """Send the buffered epochs (of every experiment, or of ``experiment``);
        returns how many were written. A batch the server refuses (its experiment
        gone, say) is dropped and the error raised; a batch that could not be
        delivered stays buffered for the next flush, and the error is raised."""
        only = None if experiment is None else id_of_experiment(experiment)
        written = 0
        for experiment_id, rows in self._buffer.batches(self.batch_size, only):
            try:
                written += self._send_epochs(experiment_id, rows)
            except DatabaseUnavailable:
                raise  # stays buffered
            except PfdDbError:
                self._buffer.sent(experiment_id, rows)
                raise
            self._buffer.sent(experiment_id, rows)
        return written

    def curve(self, experiment: ExperimentRef, metrics: Iterable[str] | None = None) -> Record:
        """The curve as columns (``curve_columns``): ``{"epoch": [...], "val_loss":
        [...], ...}``; ``metrics`` picks columns. Buffered epochs are sent first."""
        self.flush(experiment)
        params = None if metrics is None else {"metrics": ",".join(metrics)}
        return self._json(
            "GET", f"{API}/experiments/{id_of_experiment(experiment)}/curve", params=params
        )

    def curve_csv(self, experiment: ExperimentRef, metrics: Iterable[str] | None = None) -> str:
        """The curve as CSV text (a header row, then one row per epoch)."""
        self.flush(experiment)
        params = None if metrics is None else {"metrics": ",".join(metrics)}
        response = self._request("GET", f"{API}/experiments/{id_of_experiment(experiment)}/curve",
                                 params=params, headers={"Accept": "text/csv"})  # fmt: skip
        return response.text

    # --- lifetime ----------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Epochs logged and not yet sent."""
        return len(self._buffer)

    def close(self) -> None:
        """Send the buffered epochs, then close the connections (also when the
        flush fails: its error is raised after). Closing twice does nothing."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            _open_clients.discard(self)
            if self._senders is not None:
                self._senders.shutdown()
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
            return
        try:  # the block failed: keep what was logged, but let its error through
            self.close()
        except PfdDbError as failed:
            log.warning("pfd-db client: %d epochs not sent: %s", self.buffered, failed)

    # --- HTTP ----------------------------------------------------------------------

    def _send_batches(self, experiment_id: int, batches: list[list[Row]]) -> int:
        """Send the batches, up to ``in_flight`` at once (each is an upsert: their
        order does not matter); every batch is tried, then the first error raised."""
        if len(batches) <= 1 or self.in_flight == 1:
            return sum(self._send_epochs(experiment_id, rows) for rows in batches)
        if self._senders is None:
            self._senders = ThreadPoolExecutor(self.in_flight, thread_name_prefix="pfd-db-client")
        sending = [self._senders.submit(self._send_epochs, experiment_id, rows) for rows in batches]
        wait(sending)
        for failed in (future.exception() for future in sending):
            if failed is not None:
                raise failed
        return sum(future.result() for future in sending)

    def _send_epochs(self, experiment_id: int, rows: list[Row]) -> int:
        answer = self._json("POST", f"{API}/experiments/{experiment_id}/epochs",
                            body={"epochs": rows})  # fmt: skip
        return int(answer["written"])

    def _move(
        self, experiment: ExperimentRef, verb: str, body: Any, done: tuple[str, ...]
    ) -> Record:
        experiment_id = id_of_experiment(experiment)
        path = f"{API}/experiments/{experiment_id}/{verb}"
        dropped: list[httpx.TransportError] = []
        try:
            return self._json("POST", path, body=body, dropped=dropped)
        except InvalidTransition:
            if not dropped:
                raise
            now = self.experiment(experiment_id)  # a dropped answer: did the first try do it?
            if now.get("status") in done:
                return now
            raise

    def _json(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        resend: bool = True,
        dropped: list[httpx.TransportError] | None = None,
    ) -> Record:
        response = self._request(method, path, body=body, params=params, resend=resend,
                                 dropped=dropped)  # fmt: skip
        document = response.json()
        if not isinstance(document, dict):
            raise PfdDbError(f"the server answered {method} {path} with no JSON object")
        return document

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        resend: bool = True,
        dropped: list[httpx.TransportError] | None = None,
    ) -> httpx.Response:
        """Send, retrying as the module says; the successful response, or the
        store's error. ``resend``: whether a request that may have reached the
        server can be sent again. ``dropped`` collects the connections dropped
        after a request went out (and which were retried)."""
        if self._closed:
            raise InvalidInput("this pfd-db client is closed")
        content = None
        sent_headers = dict(headers or {})
        if body is not None:
            content = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
            sent_headers["Content-Type"] = "application/json"
        tried = 0
        while True:
            tried += 1
            try:
                response = self._http.request(method, path, content=content, params=params,
                                              headers=sent_headers)  # fmt: skip
            except httpx.TransportError as exc:
                retryable = isinstance(exc, NOT_SENT) or (resend and isinstance(exc, DROPPED))
                if not retryable or tried > self.retries:
                    raise _unreachable(self.base_url, exc, resend) from exc
                if dropped is not None and isinstance(exc, DROPPED):
                    dropped.append(exc)
                self._sleep(self._backoff_after(tried))
                continue
            with self._counting:
                self.requests += 1
            if response.status_code < 400:
                return response
            error = error_from_response(response)
            if response.status_code not in RETRY_STATUSES or tried > self.retries:
                raise error
            wait = retry_after_seconds(response)
            wait = self._backoff_after(tried) if wait is None else wait
            if wait > self.max_wait:
                raise error
            self._sleep(wait)

    def _backoff_after(self, tried: int) -> float:
        delay: float = min(self.max_wait, self.backoff * 2 ** (tried - 1))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    @staticmethod
    def _sleep(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def _unreachable(base_url: str, exc: httpx.TransportError, resend: bool) -> DatabaseUnavailable:
    kind = type(exc).__name__
    if isinstance(exc, DROPPED) and not resend:
        return DatabaseUnavailable(
            f"the connection to the pfd-db server at {base_url} failed after the request was"
            f" sent ({kind}); it may have been done: check before trying again"
        )
    return DatabaseUnavailable(f"the pfd-db server at {base_url} cannot be reached ({kind})")


@atexit.register
def _close_open_clients() -> None:
    """At interpreter exit, send what every open client still buffers."""
    for client in list(_open_clients):
        try:
            client.close()
        except PfdDbError as failed:
            log.warning("pfd-db client: %d epochs not sent at exit: %s", client.buffered, failed)
