"""Throwaway databases for the benchmarks: a SQLite file and a private PostgreSQL.

    with databases() as targets:
        for name, url in targets:
            ...

Both are empty and deleted afterwards. The PostgreSQL server is the test suite's
(tests/pgserver.py): Unix socket only, durability off, so the numbers compare
the dialects' query paths rather than their disks.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from pgserver import PostgresServer  # noqa: E402 - needs tests/ on sys.path

DIALECTS = ("sqlite", "postgresql")
R = TypeVar("R")
DATABASE_NAME = "pfd_bench"


@contextmanager
def databases(dialects: tuple[str, ...] = DIALECTS) -> Iterator[list[tuple[str, str]]]:
    """``(dialect, url)`` of one fresh, empty database per dialect, removed on exit."""
    with ExitStack() as stack:
        yield [(name, stack.enter_context(_database(name))) for name in dialects]


def on_each_database(bench: Callable[[str, str], list[R]]) -> list[R]:
    """``bench(dialect, url)`` on a fresh database of each dialect; all results."""
    with databases() as targets:
        return [result for dialect, url in targets for result in bench(dialect, url)]


@contextmanager
def _database(dialect: str) -> Iterator[str]:
    if dialect == "sqlite":
        with _sqlite_file() as url:
            yield url
    elif dialect == "postgresql":
        with _postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")


@contextmanager
def _sqlite_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="pfd_bench_") as directory:
        yield f"sqlite:///{Path(directory) / 'bench.db'}"


@contextmanager
def _postgres_database() -> Iterator[str]:
    server = PostgresServer()
    server.start()
    try:
        server.create_database(DATABASE_NAME)
        yield server.url(DATABASE_NAME)
    finally:
        server.stop()
