"""SIGKILL a copy, backup or restore at random points and judge what it left.

Each round forks a child (the fork start method: no interpreter start-up) that
runs the operation and SIGKILLs itself at a random progress call, or is killed
by the parent after a random delay (which also reaches the steps between
progress calls: verifying, finishing, renaming). Then the parent looks at what
is left: a database without the unfinished-copy marker, or a backup at its
name, must be whole (``lost`` counts those that are not), and the operation run
again (``--replace`` for a database) must succeed and give the whole data
(``duplicated`` counts rows found twice). Used by tests/test_kills.py (20
kills per mode) and benchmarks/stress_kills.py (as many kills as asked).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from pfd_db.engine import make_engine
from pfd_db.portability import filling
from pfd_db.portability.backup import backup, count_rows, restore, verify_backup
from pfd_db.portability.copy import copy_database
from pfd_db.progress import Progress

FORK = multiprocessing.get_context("fork")


@dataclass
class Tally:
    """What the kills of one mode left."""

    mode: str
    rounds: int = 0
    kills: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.mode}: {self.rounds} rounds, {self.kills} kills, {self.lost} lost, "
            f"{self.duplicated} duplicated"
        )


def killed(work: Callable[[Progress], object], at_call: int | None, after: float | None) -> bool:
    """Run ``work`` in a forked child, killed at its ``at_call``-th progress call or
    after ``after`` seconds; whether the kill came before it finished."""

    def child() -> None:
        calls = 0

        def progress(_what: str, _done: int, _total: int) -> None:
            nonlocal calls
            calls += 1
            if calls == at_call:
                os.kill(os.getpid(), signal.SIGKILL)

        work(progress)

    process = FORK.Process(target=child)
    process.start()
    if after is not None:
        process.join(after)
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)  # type: ignore[arg-type]
    process.join()
    if process.exitcode not in (0, -signal.SIGKILL):
        raise AssertionError(f"the child failed on its own: exit {process.exitcode}")
    return process.exitcode == -signal.SIGKILL


def _calls_and_seconds(work: Callable[[Progress], object]) -> tuple[int, float]:
    calls = 0

    def count(_what: str, _done: int, _total: int) -> None:
        nonlocal calls
        calls += 1

    began = time.perf_counter()
    work(count)
    return calls, time.perf_counter() - began


def _kill_point(rng: random.Random, calls: int, seconds: float) -> tuple[int | None, float | None]:
    # Mostly within the measured run; one round in five past its end, so that runs
    # that finish are judged too.
    late = rng.random() < 0.2
    if rng.random() < 0.5 and calls > 0:
        return (calls + 1 if late else rng.randint(1, calls)), None
    return None, (seconds * rng.uniform(1, 2) if late else rng.uniform(0, seconds))


def _more_rounds(tally: Tally, kills: int) -> bool:
    """Go on until ``kills`` rounds were really cut short (at most three times as many rounds)."""
    return tally.kills < kills and tally.rounds < 3 * kills


def _engines(*urls: str) -> list[Engine]:
    return [make_engine(url) for url in urls]


def fill_kills(source_url: str, target_url: str, kills: int, seed: int, mode: str) -> Tally:
    """Kill a copy (``mode`` "copy") or a restore (``mode`` "restore": ``source_url``
    is then a backup file's path) of the source into the target until it was killed
    ``kills`` times; after each round, check the target and fill it again with replace."""
    expected = _expected_rows(source_url, mode)

    def fill(progress: Progress, replace: bool = True) -> object:
        (destination,) = _engines(target_url)
        try:
            if mode == "restore":
                return restore(Path(source_url), destination, replace=replace, progress=progress)
            (source,) = _engines(source_url)
            try:
                return copy_database(
                    source, destination, replace=replace, progress=progress, batch_size=50
                )
            finally:
                source.dispose()
        finally:
            destination.dispose()

    _calls_and_seconds(fill)  # the first run also pays for cold caches: time the second
    calls, seconds = _calls_and_seconds(fill)
    tally = Tally(mode)
    rng = random.Random(seed)
    while _more_rounds(tally, kills):
        tally.rounds += 1
        at_call, after = _kill_point(rng, calls, seconds)
        tally.kills += killed(fill, at_call, after)
        _judge_database(target_url, expected, tally)
        fill(lambda *_: None)  # --replace recovers, whatever the kill left
        _judge_database(target_url, expected, tally, must_be_whole=True)
    return tally


def _expected_rows(source_url: str, mode: str) -> dict[str, int]:
    if mode == "restore":
        return verify_backup(Path(source_url))[1].tables
    (source,) = _engines(source_url)
    try:
        return count_rows(source)
    finally:
        source.dispose()


def _judge_database(
    url: str, expected: dict[str, int], tally: Tally, *, must_be_whole: bool = False
) -> None:
    (engine,) = _engines(url)
    try:
        if filling.unfinished_copy(engine) is not None and not must_be_whole:
            return  # marked: refused as a source, refused as a target without --replace
        found = {name: rows for name, rows in count_rows(engine).items() if name in expected}
        empty = not any(found.values())
        if found != expected and not (empty and not must_be_whole):
            tally.lost += 1
            tally.duplicated += sum(
                max(0, found.get(n, 0) - expected[n]) for n in expected if found.get(n)
            )
            tally.problems.append(f"unmarked and incomplete: {found} != {expected}")
        with engine.begin() as conn:
            problem = filling.search_index_problem(conn)
        if problem is not None:
            tally.lost += 1
            tally.problems.append(problem)
    finally:
        engine.dispose()


def backup_kills(source_url: str, folder: Path, kills: int, seed: int) -> Tally:
    """Kill ``pfd-db backup`` of the source until it was killed ``kills`` times (PostgreSQL: without
    pg_dump, the copy into a SQLite file); a file left at its name must verify and
    hold every row, and restore must refuse anything else."""
    (source,) = _engines(source_url)
    try:
        expected = count_rows(source)
    finally:
        source.dispose()
    tally = Tally("backup")
    rng = random.Random(seed)

    def take(path: Path) -> Callable[[Progress], object]:
        def work(progress: Progress) -> object:
            (engine,) = _engines(source_url)
            try:
                return backup(engine, path, progress=progress, tools_path="")
            finally:
                engine.dispose()

        return work

    calls, seconds = _calls_and_seconds(take(folder / "measured.bak"))
    while _more_rounds(tally, kills):
        path = folder / f"round-{tally.rounds}.bak"
        tally.rounds += 1
        at_call, after = _kill_point(rng, calls, seconds)
        tally.kills += killed(take(path), at_call, after)
        if not path.exists():
            continue
        try:
            rows = verify_backup(path)[1].tables
        except Exception as exc:  # a file at its name that restore refuses: lost
            tally.lost += 1
            tally.problems.append(f"{path.name}: {exc}")
            continue
        if rows != expected:
            tally.lost += 1
            tally.problems.append(f"{path.name}: {rows} != {expected}")
    return tally
