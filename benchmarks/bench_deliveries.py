"""Does the delivery queue hand each webhook call to one worker at a time, lose none
when workers die, and scale with workers?

On a SQLite file and on PostgreSQL, 20 000 pending webhook deliveries are drained
by 1 worker process, then 20 000 more by 8 worker processes, 2 of which are killed
with SIGKILL once half are sent. A worker claims 10 at a time with a 3-second
lease, signs each body, fails the first attempt of every 50th delivery (retried
after a 0.2 s backoff), succeeds the rest, and commits after each report; it logs
every claim (delivery, attempt, the claim's clock, the lease's end) and every
failure report to its own file as it goes, so the log of a killed worker survives.

Printed per dialect and run:
- handed out twice while a lease was valid: a claim of a delivery made before the
  previous attempt's lease ran out and before that attempt was reported (goal 0);
- lost: deliveries not sent at the end (goal 0);
- born expired: claims whose lease had run out by the time the claim returned
  (goal 0), and the least lease left at that moment (3 s less the claim's own time).
  ``PFD_BENCH_CLOCK_BEFORE_CLAIM=1`` makes the workers pass ``now=`` read before
  the claim waits for its lock, as claims did before issue 19, for comparison;
- throughput, and 8-worker ÷ 1-worker throughput: over the whole run (lease
  recovery after the kill included) and over the part before the kill.

    python benchmarks/bench_deliveries.py
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from databases import on_each_database
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

DELIVERIES = int(os.environ.get("PFD_BENCH_DELIVERIES", "20000"))  # smaller for a quick look
CLOCK_BEFORE_CLAIM = os.environ.get("PFD_BENCH_CLOCK_BEFORE_CLAIM") == "1"
WEBHOOKS = 20
WORKERS = 8
KILLED = 2
CLAIM_BATCH = 10
LEASE_SECONDS = 3
FAIL_EVERY = 50  # the first attempt of every 50th delivery fails
INSERT_BATCH = 5_000
SETTINGS = {
    "PFD_DB_DELIVERY_BACKOFF_SECONDS": "0.2",
    "PFD_DB_SLOW_QUERY_SECONDS": "60",  # contention stalls are measured, not logged
    "PFD_DB_SECRET_KEY": "LFd7TlRSdWR5dW9ycFctSW5mVUw2WTIzT1JqTFRGOHA=",  # a throwaway key
}
for name, value in SETTINGS.items():
    os.environ.setdefault(name, value)  # the workers are spawned with this environment

from pfd_db.engine import make_engine  # noqa: E402 - after the settings above
from pfd_db.errors import LeaseLost  # noqa: E402
from pfd_db.models import Base, User, WebhookConfiguration, WebhookLog  # noqa: E402
from pfd_db.models.enums import EventType  # noqa: E402
from pfd_db.store.notify import deliveries, webhooks  # noqa: E402
from pfd_db.types import utcnow  # noqa: E402


@dataclass(frozen=True)
class Run:
    dialect: str
    workers: int
    killed: int
    seconds: float
    sent_before_kill: int
    seconds_before_kill: float
    claims: int
    overlapping: int
    lost: int
    lease_lost: int
    born_expired: int
    least_left: float

    @property
    def throughput(self) -> float:
        return DELIVERIES / self.seconds

    @property
    def throughput_before_kill(self) -> float:
        if not self.seconds_before_kill:
            return self.throughput
        return self.sent_before_kill / self.seconds_before_kill


def main() -> int:
    """Both runs on each dialect, the table, and the verdict."""
    runs = on_each_database(bench_dialect)
    print_table(runs)
    print_verdict(runs)
    return 0


def bench_dialect(dialect: str, url: str) -> list[Run]:
    engine = make_engine(url)
    try:
        Base.metadata.create_all(engine)
        hook_ids = make_webhooks(engine)
        runs = []
        for workers, killed in ((1, 0), (WORKERS, KILLED)):
            queue_deliveries(engine, hook_ids)
            runs.append(drain(dialect, url, engine, workers, killed))
            progress(f"{dialect}, {workers} worker(s): {runs[-1].seconds:.1f} s")
        return runs
    finally:
        engine.dispose()


def make_webhooks(engine: Engine) -> list[int]:
    with Session(engine, expire_on_commit=False) as session:
        owners = [User(username=f"owner{i}", email=f"owner{i}@example.com") for i in range(5)]
        session.add_all(owners)
        hooks = [
            webhooks.create_webhook(
                session, owners[i % len(owners)], f"https://hooks.example.com/{i}",
                ["training.complete"],
            )[0]
            for i in range(WEBHOOKS)
        ]  # fmt: skip
        session.commit()
        return [hook.id for hook in hooks]


def queue_deliveries(engine: Engine, hook_ids: list[int]) -> None:
    """A fresh queue of DELIVERIES pending calls, spread over the webhooks."""
    with Session(engine) as session:
        hooks = {hook.id: hook for hook in session.scalars(select(WebhookConfiguration))}
    now = utcnow()
    rows = []
    for i in range(DELIVERIES):
        hook = hooks[hook_ids[i % len(hook_ids)]]
        rows.append(
            {
                "webhook_config_id": hook.id,
                "user_id": hook.user_id,
                "event_type": EventType.TRAINING_COMPLETE.value,
                "provider_type": hook.provider_type,
                "webhook_url": hook.webhook_url,
                "payload": webhooks.payload(EventType.TRAINING_COMPLETE, {"run": i}, now),
                "status": "pending",
                "next_attempt_at": now,
            }
        )
    with engine.begin() as conn:
        conn.execute(WebhookLog.__table__.delete())
        for start in range(0, DELIVERIES, INSERT_BATCH):
            conn.execute(insert(WebhookLog), rows[start : start + INSERT_BATCH])


def drain(dialect: str, url: str, engine: Engine, workers: int, killed: int) -> Run:
    """Run ``workers`` worker processes until the queue is empty, killing ``killed``
    of them once half the deliveries are sent; then check the logs and the table."""
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="pfd_deliveries_") as directory:
        logs = [Path(directory) / f"worker{i}.log" for i in range(workers)]
        go = context.Event()
        processes = [
            context.Process(target=work, args=(url, f"worker-{i}", str(logs[i]), go))
            for i in range(workers)
        ]
        for process in processes:
            process.start()
        time.sleep(1.0)  # let every worker import and connect before the clock starts
        began = time.perf_counter()
        go.set()
        sent_before_kill, seconds_before_kill = 0, 0.0
        if killed:
            sent_before_kill = wait_for_sent(engine, DELIVERIES // 2)
            seconds_before_kill = time.perf_counter() - began
            for process in processes[:killed]:
                process.kill()  # SIGKILL: no cleanup, leases left behind
        for process in processes:
            process.join()
        seconds = time.perf_counter() - began
        claims, overlapping, lease_lost, born_expired, least_left = read_logs(logs)
    return Run(
        dialect=dialect,
        workers=workers,
        killed=killed,
        seconds=seconds,
        sent_before_kill=sent_before_kill,
        seconds_before_kill=seconds_before_kill,
        claims=claims,
        overlapping=overlapping,
        lost=DELIVERIES - count_sent(engine),
        lease_lost=lease_lost,
        born_expired=born_expired,
        least_left=least_left,
    )


def wait_for_sent(engine: Engine, target: int) -> int:
    while (sent := count_sent(engine)) < target:
        time.sleep(0.05)
    return sent


def count_sent(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(WebhookLog.status == "sent")
        return int(conn.execute(query.select_from(WebhookLog)).scalar_one())


def count_pending(session: Session) -> int:
    query = select(func.count()).select_from(WebhookLog).where(WebhookLog.status == "pending")
    return int(session.scalar(query) or 0)


def work(url: str, worker: str, log_path: str, go: Any) -> None:
    """A delivery worker: claim, sign, report, commit; until nothing is pending."""
    engine = make_engine(url)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    go.wait()
    with Session(engine, expire_on_commit=False) as session:
        while True:
            claimed = deliveries.claim(
                session,
                "webhook",
                worker,
                limit=CLAIM_BATCH,
                lease_seconds=LEASE_SECONDS,
                now=utcnow() if CLOCK_BEFORE_CLAIM else None,
            )
            returned = utcnow().timestamp()
            session.commit()
            if not claimed:
                if count_pending(session) == 0:
                    break
                session.commit()
                time.sleep(0.1)  # what is left is leased to others, or backing off
                continue
            ends = [(d, d.lease_expires_at.timestamp()) for d in claimed]  # start: end - lease
            os.write(log, "".join(
                f"claim {d.id} {d.attempts} {end - LEASE_SECONDS} {end} {returned}\n"
                for d, end in ends
            ).encode())  # fmt: skip
            for delivery in claimed:
                report(session, worker, delivery, log)
    os.close(log)
    engine.dispose()


def report(session: Session, worker: str, delivery: WebhookLog, log: int) -> None:
    body = json.dumps(delivery.payload)
    webhooks.signature(delivery.webhook_config, body)
    try:
        if delivery.id % FAIL_EVERY == 0 and delivery.attempts == 1:
            done = utcnow()
            deliveries.fail(session, delivery, worker, "HTTP 503", http_status_code=503, now=done)
            session.commit()
            os.write(log, f"fail {delivery.id} {delivery.attempts} {done.timestamp()}\n".encode())
        else:
            deliveries.succeed(
                session, delivery, worker, http_status_code=200, response_time_ms=1.0
            )
            session.commit()
    except LeaseLost:
        session.rollback()
        os.write(log, f"lost {delivery.id} {delivery.attempts}\n".encode())


def read_logs(paths: list[Path]) -> tuple[int, int, int, int, float]:
    """(claims, claims made while the previous attempt's lease was valid, LeaseLost
    reports, claims returned with their lease run out, the least lease left)."""
    claims: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
    released: dict[tuple[int, int], float] = {}
    lease_lost = born_expired = 0
    least_left = float(LEASE_SECONDS)
    for path in paths:
        for line in path.read_text().splitlines():
            kind, *fields = line.split()
            if kind == "claim":
                claims[int(fields[0])].append((int(fields[1]), float(fields[2]), float(fields[3])))
                left = float(fields[3]) - float(fields[4])
                least_left = min(least_left, left)
                born_expired += left <= 0
            elif kind == "fail":
                released[int(fields[0]), int(fields[1])] = float(fields[2])
            elif kind == "lost":
                lease_lost += 1
    overlapping = 0
    for delivery_id, attempts in claims.items():
        attempts.sort()
        for (attempt, _, expires), (next_attempt, claimed_at, _) in pairwise(attempts):
            valid_until = min(expires, released.get((delivery_id, attempt), expires))
            if next_attempt == attempt or claimed_at < valid_until:
                overlapping += 1
    total = sum(len(a) for a in claims.values())
    return total, overlapping, lease_lost, born_expired, least_left


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def print_table(runs: list[Run]) -> None:
    print(
        f"{'dialect':<11} {'workers':>7} {'killed':>6} {'seconds':>8} {'per s':>7} "
        f"{'per s pre-kill':>14} {'claims':>7} {'twice in lease':>14} {'lost':>5} "
        f"{'LeaseLost':>9} {'born expired':>12} {'least left':>10}"
    )
    for r in runs:
        print(
            f"{r.dialect:<11} {r.workers:>7} {r.killed:>6} {r.seconds:>8.1f} "
            f"{r.throughput:>7.0f} {r.throughput_before_kill:>14.0f} {r.claims:>7} "
            f"{r.overlapping:>14} {r.lost:>5} {r.lease_lost:>9} {r.born_expired:>12} "
            f"{r.least_left:>9.2f}s"
        )


def print_verdict(runs: list[Run]) -> None:
    print()
    for dialect in dict.fromkeys(r.dialect for r in runs):
        one, many = (r for r in runs if r.dialect == dialect)
        twice = one.overlapping + many.overlapping
        lost = one.lost + many.lost
        expired = one.born_expired + many.born_expired
        print(
            f"{dialect}: handed out twice while a lease was valid: {twice} "
            f"({yes(twice == 0)}); lost: {lost} ({yes(lost == 0)}); "
            f"leases born expired: {expired} ({yes(expired == 0)}); "
            f"{WORKERS}-worker ÷ 1-worker throughput: {many.throughput / one.throughput:.2f} "
            f"over the whole run, {many.throughput_before_kill / one.throughput:.2f} "
            f"before the kill"
        )


def yes(holds: bool) -> str:
    return "goal met" if holds else "GOAL MISSED"


if __name__ == "__main__":
    sys.exit(main())
