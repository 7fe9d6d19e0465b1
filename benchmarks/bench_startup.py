"""How fast does ``pfd-db`` start? ``--help`` and ``--version`` against a baseline.

The baseline is ``python -c 'import sqlalchemy'``: the least any command that
touches a database pays. Each of the three is a fresh process, run in
alternation (baseline, --help, --version, baseline, ...) so that a busy machine
slows them alike; the figures are medians. Goal: each at most GOAL_RATIO times
the baseline (the command loads the database machinery only when it runs).

    python benchmarks/bench_startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROUNDS = 15
WARMUP_ROUNDS = 2
GOAL_RATIO = 2.0
PFD_DB = str(Path(sys.executable).with_name("pfd-db"))
COMMANDS = {
    "import sqlalchemy": [sys.executable, "-c", "import sqlalchemy"],
    "pfd-db --help": [PFD_DB, "--help"],
    "pfd-db --version": [PFD_DB, "--version"],
}
BASELINE = "import sqlalchemy"


def seconds(argv: list[str]) -> float:
    """Wall time of one run of ``argv`` (which must succeed)."""
    began = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - began


def measure() -> dict[str, list[float]]:
    """Times of every command, rounds alternating between them."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for round_number in range(WARMUP_ROUNDS + ROUNDS):
        for name, argv in COMMANDS.items():
            elapsed = seconds(argv)
            if round_number >= WARMUP_ROUNDS:
                times[name].append(elapsed)
    return times


def main() -> int:
    """Print each command's median and its ratio to the baseline, then the verdict."""
    times = measure()
    baseline = statistics.median(times[BASELINE])
    print(f"{'command':<20} {'median ms':>10} {'ratio':>7}   ({ROUNDS} alternating runs each)")
    ratios = {}
    for name, runs in times.items():
        median = statistics.median(runs)
        ratios[name] = median / baseline
        print(f"{name:<20} {median * 1000:>10.1f} {ratios[name]:>7.2f}")
    worst = max(ratio for name, ratio in ratios.items() if name != BASELINE)
    verdict = "yes" if worst <= GOAL_RATIO else "NO"
    print(f"\n--help and --version <= {GOAL_RATIO:g}x import sqlalchemy: {verdict} "
          f"(worst {worst:.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
