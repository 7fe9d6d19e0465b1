"""Workers racing on one database: threads on PostgreSQL, processes on SQLite.

SQLite serialises writers with a lock on the file, which only separate
processes (each with its own connections, as workers of a web app have) show
truthfully; on PostgreSQL, threads with a connection each already race for the
same rows. ``race`` runs ``work(engine, index, ready)`` on ``count`` workers;
each calls ``ready()`` once it has set up, and all go on together from there.
``work`` must be a module-level function (processes are spawned, so they import
it by name) and return something picklable.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

Work = Callable[[Engine, int, Callable[[], object]], Any]
TIMEOUT = 120  # seconds a worker may take before the race counts as hung


def race(dialect: str, engine: Engine, db_url: str, count: int, work: Work) -> list[Any]:
    """``work``'s results, by worker index; the first worker error is raised."""
    if dialect == "sqlite":
        return _in_processes(db_url, count, work)
    return _on_threads(engine, count, work)


def _on_threads(engine: Engine, count: int, work: Work) -> list[Any]:
    barrier = threading.Barrier(count, timeout=TIMEOUT)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = work(engine, index, barrier.wait)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    if errors:
        raise errors[0]
    return results


def _in_processes(db_url: str, count: int, work: Work) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    barrier, outcomes = context.Barrier(count, timeout=TIMEOUT), context.Queue()
    workers = [
        context.Process(target=_worker, args=(db_url, work, i, barrier, outcomes))
        for i in range(count)
    ]
    for worker in workers:
        worker.start()
    try:
        finished = dict(outcomes.get(timeout=TIMEOUT) for _ in workers)
    finally:
        for worker in workers:
            worker.join(TIMEOUT)
    failures = [error for _, error in finished.values() if error is not None]
    if failures:
        raise AssertionError(f"a worker process failed: {failures[0]}")
    return [finished[i][0] for i in range(count)]


def _worker(db_url: str, work: Work, index: int, barrier: Any, outcomes: Any) -> None:
    from pfd_db.engine import make_engine

    engine = make_engine(db_url)
    try:
        outcomes.put((index, (work(engine, index, barrier.wait), None)))
    except BaseException as exc:
        barrier.abort()
        outcomes.put((index, (None, repr(exc))))
    finally:
        engine.dispose()
