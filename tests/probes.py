"""Test instruments: what an engine sends, and work released on threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event


@contextmanager
def executions(engine) -> Iterator[list[tuple[str, Any]]]:
    """(statement, parameters) of each statement ``engine`` sends while the block runs."""
    sent: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def statements(engine) -> Iterator[list[str]]:
    """The SQL texts ``engine`` sent while the block ran (filled when it ends)."""
    texts: list[str] = []
    with executions(engine) as sent:
        yield texts
    texts.extend(statement for statement, _ in sent)


def run_together(
    count: int, work: Callable[[int], Any], *, seconds: float = 300
) -> tuple[list[Any], list[BaseException]]:
    """Run ``work(0) ... work(count - 1)`` on threads released at the same moment;
    their results and errors. A thread still running after ``seconds`` fails the test."""
    barrier = threading.Barrier(count, timeout=60)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return results, errors


def partition_parents(conn) -> dict[str, str]:
    """PostgreSQL: the name of each partition, and of each index of a partition, mapped
    to its parent's (a plan reads partitions; a test asks about the table and its index)."""
    rows = conn.exec_driver_sql(
        "SELECT c.relname, p.relname FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
    )
    return {str(child): str(parent) for child, parent in rows}


def empty_partitions(conn) -> set[str]:
    """PostgreSQL: the partitions that hold no page (as the last VACUUM saw them): a
    plan may read those whole, at no cost."""
    rows = conn.exec_driver_sql(
        "SELECT relname FROM pg_class WHERE relispartition AND relkind = 'r' AND relpages = 0"
    )
    return {str(name) for (name,) in rows}
