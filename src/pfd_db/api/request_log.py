"""The request log's buffer: rows of served requests, written in batches off the request path.

The timing middleware (:mod:`pfd_db.api.request_timing`) hands each ``/api``
request's row to :meth:`RequestLog.add`, which only appends it to a bounded
buffer (a lock and a deque: no I/O on the request path). A flusher thread writes
the buffer every ``flush_seconds``, or as soon as ``flush_rows`` rows wait, in
one transaction per batch: the rows through
:func:`pfd_db.store.ops.request_log.record_requests`, and those made with a key
to ``api_usage`` through :func:`pfd_db.store.ops.usage_log.record_usage`.

Nothing here ever fails a request:

- a flush that fails (the database gone or locked for a moment) puts its rows
  back at the head of the buffer, is counted (:attr:`RequestLog.failed_flushes`)
  and retried after a back-off that doubles up to ``max_backoff_seconds``;
- when the buffer holds ``capacity`` rows, the oldest is dropped for a new one
  and counted (:attr:`RequestLog.dropped_rows`);
- a key deleted after its request leaves the row with no key (and no usage row),
  as deleting it afterwards would; a row the store refuses (a bug) is dropped,
  counted and logged, never retried forever.

:meth:`RequestLog.close` stops the thread and flushes everything, retrying for
up to ``close_seconds``. Rows hold no secrets: the middleware stores the route
template, never the URL, its query, the headers (but the user agent) or a body.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import APIKey
from pfd_db.store.ops.request_log import record_requests
from pfd_db.store.ops.usage_log import record_usage

log = logging.getLogger(__name__)

Row = Mapping[str, Any]
"""One request's row: the fields of :func:`~pfd_db.store.ops.request_log.record_requests`."""


class RequestLog:
    """A bounded buffer of request-log rows and the thread that writes them.

    ``sessions`` makes the sessions the flusher writes through; ``capacity``
    bounds the rows kept in memory; a flush happens every ``flush_seconds`` or
    once ``flush_rows`` rows wait, ``batch_rows`` rows per transaction. The
    thread starts with the first row, so an app that serves nothing starts none.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        capacity: int = 100_000,
        flush_rows: int = 500,
        flush_seconds: float = 1.0,
        batch_rows: int = 5_000,
        max_backoff_seconds: float = 30.0,
        close_seconds: float = 10.0,
    ) -> None:
        if capacity < 1 or flush_rows < 1 or batch_rows < 1 or flush_seconds <= 0:
            raise ValueError("capacity, flush_rows, batch_rows and flush_seconds must be positive")
        self.sessions = sessions
        self.capacity = capacity
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.max_backoff_seconds = max_backoff_seconds
        self.close_seconds = close_seconds
        self.failed_flushes = 0
        """Flushes that failed (each was retried later)."""
        self.dropped_rows = 0
        """Rows lost: pushed out of a full buffer, refused by the store, or left at close."""
        self.written_rows = 0
        """Rows written to ``api_request_logs``."""
        self._rows: deque[Row] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flushing = threading.Lock()  # one flush at a time (the thread's or a caller's)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._backoff = 0.0  # 0: the last flush worked
        self._in_flight = 0  # rows of the batch being written

    @property
    def depth(self) -> int:
        """Rows not written yet: buffered, or in the batch being written."""
        return len(self._rows) + self._in_flight

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def add(self, row: Row) -> None:
        """Queue one request's row; never blocks on I/O, never raises. A full buffer
        drops its oldest row (counted); after :meth:`close` the row is dropped."""
        with self._lock:
            if self._closed:
                self.dropped_rows += 1
                return
            if len(self._rows) >= self.capacity:
                self._rows.popleft()
                self.dropped_rows += 1
            self._rows.append(row)
            if self._thread is None:
                self._start()
            elif len(self._rows) >= self.flush_rows:
                self._wake.notify()

    def flush(self) -> int:
        """Write every row buffered now, a batch per transaction; returns how many were
        written. A failed batch stays buffered (counted in :attr:`failed_flushes`) and
        ends this flush; nothing is raised."""
        written = 0
        with self._flushing:
            while True:
                batch = self._take()
                if not batch:
                    return written
                try:
                    written += self._write(batch)
                except Exception as exc:  # any failure: keep the rows, count, retry later
                    self._put_back(batch)
                    self.failed_flushes += 1
                    self._backoff = min(
                        max(self._backoff * 2, self.flush_seconds), self.max_backoff_seconds
                    )
                    log.warning(
                        "request log: writing %d rows failed (%s); retrying in %.1f s",
                        len(batch),
                        type(exc).__name__,
                        self._backoff,
                    )
                    return written
                with self._lock:
                    self._in_flight = 0
                self._backoff = 0.0
                if len(batch) < self.batch_rows:
                    return written

    def close(self) -> None:
        """Stop the flusher and write everything buffered, retrying for up to
        ``close_seconds``; rows still unwritten then are counted as dropped. Idempotent."""
        with self._lock:
            if self._closed and self._thread is None:
                return
            self._closed = True
            thread, self._thread = self._thread, None
            self._wake.notify()
        if thread is not None:
            thread.join()
        deadline = time.monotonic() + self.close_seconds
        pause = 0.05
        while self.depth:
            self.flush()
            if not self.depth or time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        with self._lock:
            left = len(self._rows)
            self._rows.clear()
            self.dropped_rows += left
        if left:
            log.error("request log: %d rows could not be written before shutdown", left)

    # --- the flusher ---------------------------------------------------------

    def _start(self) -> None:
        """Start the flusher thread (called with the lock held; at interpreter
        shutdown, when no thread can start, the rows wait for :meth:`close`)."""
        thread = threading.Thread(target=self._run, name="pfd-db-request-log", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            return
        self._thread = thread

    def _run(self) -> None:
        """Flush every ``flush_seconds``, as soon as ``flush_rows`` rows wait, or after
        the back-off once a flush failed; until :meth:`close`."""
        while True:
            with self._lock:
                if not self._closed:
                    if self._backoff:
                        self._wake.wait(self._backoff)
                    elif len(self._rows) < self.flush_rows:
                        self._wake.wait(self.flush_seconds)
                if self._closed:
                    return
            try:
                self.flush()
            except Exception:  # never let the thread die (flush itself does not raise)
                log.exception("request log: flusher error")

    def _take(self) -> list[Row]:
        """The next batch, counted in flight until written or put back."""
        with self._lock:
            count = min(len(self._rows), self.batch_rows)
            self._in_flight = count
            return [self._rows.popleft() for _ in range(count)]

    def _put_back(self, batch: Sequence[Row]) -> None:
        """Return a failed batch to the head of the buffer, dropping the oldest rows
        beyond the capacity."""
        with self._lock:
            self._in_flight = 0
            self._rows.extendleft(reversed(batch))
            while len(self._rows) > self.capacity:
                self._rows.popleft()
                self.dropped_rows += 1

    def _write(self, batch: list[Row]) -> int:
        """Write ``batch`` in one transaction; a key deleted since is left out, a row
        the store refuses is dropped (logged); other errors raise."""
        try:
            return self._commit(batch)
        except NotFound:
            batch = self._without_deleted_keys(batch)
        except InvalidInput:
            return self._one_by_one(batch)
        try:
            return self._commit(batch)
        except (InvalidInput, NotFound):
            return self._one_by_one(batch)

    def _commit(self, batch: Sequence[Row]) -> int:
        usage = [_usage_row(row) for row in batch if row.get("api_key_id") is not None]
        with self.sessions.begin() as session:
            written = record_requests(session, batch)
            if usage:
                record_usage(session, usage)
        self.written_rows += written
        return written

    def _without_deleted_keys(self, batch: list[Row]) -> list[Row]:
        wanted = {row["api_key_id"] for row in batch if row.get("api_key_id") is not None}
        with self.sessions() as session:
            kept = set(session.scalars(select(APIKey.id).where(APIKey.id.in_(wanted))))
        return [
            row if row.get("api_key_id") in kept else {**row, "api_key_id": None} for row in batch
        ]

    def _one_by_one(self, batch: list[Row]) -> int:
        """The slow path after a refusal: each row alone; refused ones are dropped."""
        written = 0
        for row in batch:
            try:
                written += self._write_alone(row)
            except (InvalidInput, NotFound) as exc:
                with self._lock:
                    self.dropped_rows += 1
                log.error("request log: a row was refused and dropped: %s", exc)
        return written

    def _write_alone(self, row: Row) -> int:
        try:
            return self._commit([row])
        except NotFound:
            return self._commit([{**row, "api_key_id": None}])


def _usage_row(row: Row) -> dict[str, Any]:
    """The ``api_usage`` row of a request made with a key (InvalidInput for a row
    that lacks what it needs)."""
    try:
        return {
            "api_key_id": row["api_key_id"],
            "endpoint": row["endpoint"],
            "method": row["method"],
            "status_code": row["status_code"],
            "response_time_ms": round(row["response_time_ms"]),
            "timestamp": row.get("request_time"),
        }
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"not a request-log row: {type(exc).__name__}") from None
