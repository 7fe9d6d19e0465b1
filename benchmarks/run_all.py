"""Run every ``benchmarks/bench_*.py`` in turn, each in its own interpreter.

Exits non-zero if any of them fails (a crash or a non-zero exit, not a missed
goal: the scripts report those in their output). ``make bench`` calls this.
bench_scale.py is left out (it loads 10 million rows twice): ``make bench-scale``.

    python benchmarks/run_all.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parent
LEFT_OUT = frozenset({"bench_scale.py"})  # long: `make bench-scale` runs it


def main() -> int:
    """Run each benchmark; 1 if any failed (naming them), else 0."""
    scripts = sorted(s for s in BENCHMARKS_DIR.glob("bench_*.py") if s.name not in LEFT_OUT)
    if not scripts:
        print(f"no bench_*.py in {BENCHMARKS_DIR}")
        return 0
    failed = [script.name for script in scripts if not run(script)]
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\nall {len(scripts)} benchmarks ran")
    return 0


def run(script: Path) -> bool:
    """Run ``script`` with this interpreter, its output passed through; True if it succeeded."""
    print(f"=== {script.name}", flush=True)
    began = time.perf_counter()
    returncode = subprocess.run([sys.executable, str(script)], check=False).returncode
    outcome = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
    print(f"=== {script.name}: {outcome} in {time.perf_counter() - began:.0f} s\n", flush=True)
    return returncode == 0


if __name__ == "__main__":
    sys.exit(main())
