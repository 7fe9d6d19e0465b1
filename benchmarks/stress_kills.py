"""SIGKILL copy, restore and backup many times on both dialects: ``make stress``.

The loops of tests/test_kills.py (tests/kill_harness.py), longer: each mode is
killed ``--rounds`` times (default 100) at random progress calls or after random
delays, on a SQLite file and on the suite's throwaway PostgreSQL. Prints, per
mode and dialect, the kills, the databases or backups lost (left unmarked and
incomplete, or a search index out of step, or a backup at its name that does not
verify) and the rows duplicated; exits 1 if anything was lost or duplicated.

    .venv/bin/python benchmarks/stress_kills.py --rounds 200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("PFD_DB_SECRET_KEY", "LFd7TlRSdWR5dW9ycFctSW5mVUw2WTIzT1JqTFRGOHA=")
os.environ.setdefault("PFD_DB_ARGON2_MEMORY_COST", "1024")
os.environ.setdefault("PFD_DB_ARGON2_TIME_COST", "1")
os.environ.setdefault("PFD_DB_ARGON2_PARALLELISM", "1")

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from kill_harness import Tally, backup_kills, fill_kills  # noqa: E402 - needs tests/ on sys.path
from pfd_db.engine import make_engine  # noqa: E402
from pfd_db.portability.backup import backup  # noqa: E402
from pgserver import PostgresServer  # noqa: E402
from test_copy import make_demo  # noqa: E402


@contextmanager
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run(rounds: int, seed: int) -> list[tuple[str, Tally]]:
    """Every mode on both dialects; (dialect, tally) of each."""
    results: list[tuple[str, Tally]] = []
    with postgres() as server, tempfile.TemporaryDirectory(prefix="pfd_stress_") as scratch:
        folder = Path(scratch)
        names = [f"pfd_stress_{uuid.uuid4().hex[:8]}" for _ in range(3)]
        for name in names:
            server.create_database(name)
        pg_demo, pg_target, pg_restored = (server.url(name) for name in names)
        sqlite_demo = f"sqlite:///{folder / 'demo.db'}"
        for url in (sqlite_demo, pg_demo):
            make_demo(url)
        demo_backup = folder / "demo.bak"
        engine = make_engine(pg_demo)
        try:
            backup(engine, demo_backup, tools_path="")
        finally:
            engine.dispose()
        for dialect, source, into, restored in (
            ("sqlite", pg_demo, f"sqlite:///{folder / 'copy.db'}", f"sqlite:///{folder / 'r.db'}"),
            ("postgresql", sqlite_demo, pg_target, pg_restored),
        ):
            results.append((dialect, fill_kills(source, into, rounds, seed, "copy")))
            results.append(
                (dialect, fill_kills(str(demo_backup), restored, rounds, seed + 1, "restore"))
            )
            backups = folder / f"backups-{dialect}"
            backups.mkdir()
            demo = sqlite_demo if dialect == "sqlite" else pg_demo
            results.append((dialect, backup_kills(demo, backups, rounds, seed + 2)))
            print(*(f"{d:<10} {t.line()}" for d, t in results[-3:]), sep="\n", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="kills per mode and dialect")
    parser.add_argument("--seed", type=int, default=19)
    options = parser.parse_args()
    results = run(options.rounds, options.seed)
    kills = sum(t.kills for _, t in results)
    lost = sum(t.lost for _, t in results)
    duplicated = sum(t.duplicated for _, t in results)
    print(f"total: {kills} kills, {lost} lost, {duplicated} duplicated")
    for dialect, tally in results:
        for problem in tally.problems[:5]:
            print(f"  {dialect} {tally.mode}: {problem}")
    return 1 if lost or duplicated else 0


if __name__ == "__main__":
    sys.exit(main())
