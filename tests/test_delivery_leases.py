"""Leases of the delivery queue on both dialects: a claim that waits for a lock still
gets its full lease, a lease is free exactly at its expiry, and a worker that reports
on an attempt it no longer holds (its own earlier one) is refused."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from pfd_db.errors import LeaseLost
from pfd_db.models import EventType, User, WebhookConfiguration, WebhookLog
from pfd_db.models.enums import NOTIFIABLE_EVENTS
from pfd_db.store.identity import users
from pfd_db.store.notify import deliveries, webhooks
from pfd_db.store.writes import take_write_lock

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOLD_SECONDS = 1.0
LEASE_SECONDS = 2


@pytest.fixture
def hook(db, plaintexts) -> WebhookConfiguration:
    ada: User = users.create_user(db, "ada", "ada@example.com", "a long passphrase")
    config, secret = webhooks.create_webhook(
        db, ada, "https://hooks.example.com/pfd", NOTIFIABLE_EVENTS
    )
    plaintexts.append(secret)
    db.commit()
    return config


def queue_call(db, hook, now: datetime = T0) -> int:
    call = webhooks.new_delivery(hook, EventType.TRAINING_COMPLETE, {"run": 1}, now)
    db.add(call)
    db.commit()
    return call.id


def hold_the_queue(engine, dialect: str, held: threading.Event, released: list[datetime]) -> None:
    """Another connection holds what a claim needs (SQLite: the write lock;
    PostgreSQL: a lock on webhook_logs that ``FOR UPDATE`` waits for) for
    :data:`HOLD_SECONDS`, and notes the time just before it lets go."""
    with Session(engine) as other:
        if dialect == "sqlite":
            take_write_lock(other)
        else:
            other.execute(text("LOCK TABLE webhook_logs IN EXCLUSIVE MODE"))
        held.set()
        time.sleep(HOLD_SECONDS)
        released.append(datetime.now(UTC))
        other.commit()


def test_a_claim_that_waits_for_a_lock_still_gets_its_full_lease(db, engine, dialect, hook):
    queue_call(db, hook)
    held, released = threading.Event(), []
    holder = threading.Thread(target=hold_the_queue, args=(engine, dialect, held, released))
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        [claimed] = deliveries.claim(db, "webhook", "w1", lease_seconds=LEASE_SECONDS)
        waited = time.monotonic() - started
        db.commit()
    finally:
        holder.join()
    assert waited >= HOLD_SECONDS * 0.8  # the claim did wait for the lock
    # the lease starts once the lock is held, after the holder let go: never shortened
    assert claimed.lease_expires_at >= released[0] + timedelta(seconds=LEASE_SECONDS)
    assert claimed.lease_expires_at > datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS / 2)


def test_a_lease_is_held_until_just_before_its_expiry_and_free_at_it(db, hook):
    """A lease covers [claimed, lease_expires_at): at lease_expires_at the delivery is free."""
    delivery_id = queue_call(db, hook)
    [first] = deliveries.claim(db, "webhook", "w1", lease_seconds=30, now=T0)
    db.commit()
    expiry = T0 + timedelta(seconds=30)
    assert first.lease_expires_at == expiry
    just_before = expiry - timedelta(microseconds=1)
    assert deliveries.claim(db, "webhook", "w2", now=just_before) == []
    db.commit()
    [again] = deliveries.claim(db, "webhook", "w2", lease_seconds=30, now=expiry)
    db.commit()
    assert (again.id, again.lease_owner, again.attempts) == (delivery_id, "w2", 2)


def test_a_worker_reporting_on_its_own_earlier_attempt_gets_lease_lost(db, engine, hook):
    """w1's lease runs out, w1 claims the delivery again (attempt 2), then reports on
    attempt 1: refused with nothing written; its report on attempt 2 is taken."""
    delivery_id = queue_call(db, hook)
    with Session(engine, expire_on_commit=False) as first_run:
        [stale] = deliveries.claim(first_run, "webhook", "w1", lease_seconds=30, now=T0)
        first_run.commit()
    later = T0 + timedelta(seconds=31)
    [current] = deliveries.claim(db, "webhook", "w1", lease_seconds=30, now=later)
    db.commit()
    assert (stale.attempts, current.attempts) == (1, 2)
    with Session(engine, expire_on_commit=False) as first_run:
        with pytest.raises(LeaseLost, match="attempt 1"):
            deliveries.succeed(first_run, stale, "w1", http_status_code=200, now=later)
        with pytest.raises(LeaseLost, match="w1"):
            deliveries.fail(first_run, stale, "w1", "too late", now=later)
        first_run.rollback()
    db.expire_all()
    row = db.get(WebhookLog, delivery_id)
    assert (row.status, row.attempts, row.lease_owner) == ("pending", 2, "w1")
    assert (row.retry_count, row.error_message, row.http_status_code) == (0, None, None)
    done = deliveries.succeed(db, current, "w1", http_status_code=204, now=later)
    db.commit()
    assert (done.status, done.lease_owner, done.http_status_code) == ("sent", None, 204)
