"""How fast is ``api_keys.verify``, and does it stay fast as keys pile up?

For 1, 1 000 and 100 000 stored keys, on a SQLite file and on PostgreSQL, time
``verify`` of one real key against a baseline: one primary-key SELECT of the
same ``api_keys`` row through the ORM (``session.get`` bypassing the identity
map). Both run interleaved, in one transaction, on the same database, with
``last_used_at`` fresh so verify only reads. Goal: verify at most 3x the
baseline at every size, and flat in the number of keys.

Refusals take one path: at each size it also times, interleaved, ``verify`` of
the real key's prefix with a wrong secret and of a prefix no key has (both
refused with AuthenticationFailed). Goal: the unknown prefix's median within
SAME_PATH_TOLERANCE of the wrong secret's, so timing does not tell which
prefixes exist.

    python benchmarks/bench_api_keys.py
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from databases import on_each_database
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from pfd_db.engine import make_engine
from pfd_db.errors import AuthenticationFailed
from pfd_db.models import APIKey, Base, User
from pfd_db.store.identity import api_keys
from pfd_db.types import utcnow

SIZES = (1, 1_000, 100_000)
WARMUP_CALLS = 300
TIMED_CALLS = 3_000
GOAL_RATIO = 3.0
FLAT_TOLERANCE = 1.5
SAME_PATH_TOLERANCE = 0.1  # unknown prefix / wrong secret within 1 ± this
INSERT_BATCH = 10_000
SLOW_QUERY_SECONDS = 60.0  # the bulk inserts are slow on purpose: keep the log quiet


@dataclass(frozen=True)
class Result:
    dialect: str
    keys: int
    verify_us: float
    baseline_us: float
    wrong_secret_us: float
    unknown_prefix_us: float

    @property
    def ratio(self) -> float:
        return self.verify_us / self.baseline_us

    @property
    def refusal_ratio(self) -> float:
        """Median time refusing an unknown prefix over refusing a wrong secret."""
        return self.unknown_prefix_us / self.wrong_secret_us


def main() -> int:
    """Run every dialect and size, print the table and the verdict."""
    results = on_each_database(bench_dialect)
    print_table(results)
    print_verdict(results)
    return 0


def bench_dialect(dialect: str, url: str) -> list[Result]:
    """Results for each size on one database, growing it from 1 key to the largest size."""
    engine = make_engine(url, slow_query_seconds=SLOW_QUERY_SECONDS)
    try:
        Base.metadata.create_all(engine)
        with Session(engine, expire_on_commit=False) as session:
            plaintext, key = real_key(session)
            stored = 1
            results = []
            for size in SIZES:
                began = time.perf_counter()
                add_filler_keys(engine, key.user_id, first=stored, count=size - stored)
                stored = size
                analyze(engine)
                results.append(measure(dialect, size, session, plaintext, key))
                progress(f"{dialect} N={size:,}: {time.perf_counter() - began:.1f} s")
            return results
    finally:
        engine.dispose()


def real_key(session: Session) -> tuple[str, APIKey]:
    """The one key that is verified: issued the normal way, committed."""
    owner = User(username="bench", email="bench@example.com")
    session.add(owner)
    plaintext, key = api_keys.issue(session, owner, name="bench")
    session.commit()
    return plaintext, key


def add_filler_keys(engine: Engine, user_id: int, first: int, count: int) -> None:
    """``count`` more keys, in batched Core executemany (only their uniqueness matters)."""
    for start in range(first, first + count, INSERT_BATCH):
        stop = min(start + INSERT_BATCH, first + count)
        with engine.begin() as conn:
            conn.execute(insert(APIKey), [filler_row(user_id, i) for i in range(start, stop)])


def filler_row(user_id: int, number: int) -> dict[str, object]:
    return {
        "user_id": user_id,
        "name": f"filler {number}",
        "prefix": f"{number:016x}",
        "key_hash": f"{number:064x}",
        "scopes": ["read"],
    }


def analyze(engine: Engine) -> None:
    """Fresh planner statistics, as a live database would have."""
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def measure(dialect: str, size: int, session: Session, plaintext: str, key: APIKey) -> Result:
    """Median per-call time of verify and of the baseline, interleaved call by call."""
    keep_fresh(session, key)
    touched = key.last_used_at

    def verify() -> object:
        return api_keys.verify(session, plaintext)

    def baseline() -> object:
        return session.get(APIKey, key.id, populate_existing=True)

    wrong_secret, unknown_prefix = refused_variants(plaintext)

    def refuse_wrong_secret() -> object:
        return refusal(session, wrong_secret)

    def refuse_unknown_prefix() -> object:
        return refusal(session, unknown_prefix)

    assert verify() is key, "the real key must verify"
    assert refuse_wrong_secret() == "wrong secret", "the forged secret must be refused as such"
    assert refuse_unknown_prefix() == "unknown key", "the forged prefix must be no key's"
    verify_times, baseline_times = interleaved_times(verify, baseline)
    wrong_times, unknown_times = interleaved_times(refuse_wrong_secret, refuse_unknown_prefix)
    assert key.last_used_at == touched, "verify wrote during the timing"
    session.commit()
    return Result(
        dialect,
        size,
        median_us(verify_times),
        median_us(baseline_times),
        median_us(wrong_times),
        median_us(unknown_times),
    )


def refused_variants(plaintext: str) -> tuple[str, str]:
    """The real key with its last secret character changed, and with its first
    prefix character changed (a prefix the filler keys, all starting 0, never have)."""
    head, last = plaintext[:-1], plaintext[-1]
    wrong_secret = head + ("A" if last != "A" else "B")
    prefix_at = len(api_keys.KEY_TAG) + 1
    unknown_prefix = plaintext[:prefix_at] + "f" + plaintext[prefix_at + 1 :]
    if unknown_prefix == plaintext:
        unknown_prefix = plaintext[:prefix_at] + "e" + plaintext[prefix_at + 1 :]
    return wrong_secret, unknown_prefix


def refusal(session: Session, presented: str) -> str:
    """The reason ``verify`` refuses ``presented`` with."""
    try:
        api_keys.verify(session, presented)
    except AuthenticationFailed as refused:
        return refused.reason
    raise AssertionError("a forged key was accepted")


def keep_fresh(session: Session, key: APIKey) -> None:
    """Mark the key used just now, so verify has nothing to write for a minute."""
    key.last_used_at = utcnow()
    session.commit()
    session.connection()  # one transaction for the whole timing


def interleaved_times(
    first: Callable[[], object], second: Callable[[], object]
) -> tuple[list[int], list[int]]:
    """Nanoseconds of each call of ``first`` and ``second``, alternating, after a warm-up."""
    for _ in range(WARMUP_CALLS):
        first()
        second()
    gc.collect()
    times: tuple[list[int], list[int]] = ([], [])
    for _ in range(TIMED_CALLS):
        for call, sink in ((first, times[0]), (second, times[1])):
            began = time.perf_counter_ns()
            call()
            sink.append(time.perf_counter_ns() - began)
    return times


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def median_us(nanoseconds: list[int]) -> float:
    return statistics.median(nanoseconds) / 1000


def print_table(results: list[Result]) -> None:
    print(
        f"{'dialect':<11} {'N':>8} {'verify µs':>10} {'baseline µs':>12} {'ratio':>6}"
        f" {'wrong secret µs':>16} {'unknown prefix µs':>18} {'ratio':>6}"
    )
    for r in results:
        print(
            f"{r.dialect:<11} {r.keys:>8,} {r.verify_us:>10.1f} {r.baseline_us:>12.1f} "
            f"{r.ratio:>6.2f} {r.wrong_secret_us:>16.1f} {r.unknown_prefix_us:>18.1f} "
            f"{r.refusal_ratio:>6.2f}"
        )


def print_verdict(results: list[Result]) -> None:
    """Within 3x of the baseline at every N, and flat: the ratio at the largest N no
    more than FLAT_TOLERANCE times the ratio at N=1 (a scan would grow with N while
    the primary-key baseline does not; the ratio also cancels out load drift)."""
    print()
    for dialect, rows in by_dialect(results):
        worst = max(r.ratio for r in rows)
        growth = rows[-1].ratio / rows[0].ratio
        print(
            f"{dialect}: verify <= {GOAL_RATIO:g}x baseline at every N: "
            f"{yes(worst <= GOAL_RATIO)} (worst {worst:.2f}); flat in N: "
            f"{yes(growth <= FLAT_TOLERANCE)} (ratio at N={rows[-1].keys:,} is "
            f"{growth:.2f}x the ratio at N={rows[0].keys:,}; tolerance {FLAT_TOLERANCE:g})"
        )
        farthest = max(rows, key=lambda r: abs(r.refusal_ratio - 1))
        print(
            f"{dialect}: unknown prefix refused as fast as a wrong secret at every N: "
            f"{yes(abs(farthest.refusal_ratio - 1) <= SAME_PATH_TOLERANCE)} (ratios "
            f"{', '.join(f'{r.refusal_ratio:.3f}' for r in rows)}; tolerance "
            f"1 ± {SAME_PATH_TOLERANCE:g})"
        )


def by_dialect(results: list[Result]) -> Iterator[tuple[str, list[Result]]]:
    for dialect in dict.fromkeys(r.dialect for r in results):
        yield dialect, [r for r in results if r.dialect == dialect]


def yes(holds: bool) -> str:
    return "yes" if holds else "NO"


if __name__ == "__main__":
    sys.exit(main())
