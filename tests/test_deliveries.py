"""The delivery queue (pfd_db.store.notify.deliveries) on both dialects: claims with a lease,
retries with backoff, leases that run out, racing workers, history; and revision 0003,
which made the queue, upgraded and downgraded with data in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from pfd_db import migrations
from pfd_db.config import get_settings
from pfd_db.engine import make_engine
from pfd_db.errors import InvalidInput, LeaseLost
from pfd_db.models import EmailLog, User, WebhookConfiguration, WebhookLog
from pfd_db.models.enums import NOTIFIABLE_EVENTS, EventType
from pfd_db.store.identity import users
from pfd_db.store.notify import deliveries, delivery_history, notifications, webhooks
from pfd_db.store.notify.deliveries import Channel
from racing import race

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WORKERS = {"postgresql": 8, "sqlite": 4}
RACE_DELIVERIES = 240
QUEUED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def queue_settings(monkeypatch):
    """Set delivery settings for one test: ``queue_settings(delivery_max_attempts=3)``."""

    def change(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"PFD_DB_{name.upper()}", str(value))
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def user(db) -> User:
    ada = users.create_user(db, "ada", "ada@example.com", "a long passphrase")
    db.commit()
    return ada


@pytest.fixture
def hook(db, user, plaintexts) -> WebhookConfiguration:
    config, secret = webhooks.create_webhook(
        db, user, "https://hooks.example.com/pfd", NOTIFIABLE_EVENTS
    )
    plaintexts.append(secret)
    db.commit()
    return config


def queue_webhook_calls(db, hook, count: int, now: datetime = T0) -> list[int]:
    """``count`` pending webhook deliveries, one second apart from ``now``, committed."""
    rows = [
        webhooks.new_delivery(
            hook, EventType.TRAINING_COMPLETE, {"n": i}, now + timedelta(seconds=i)
        )
        for i in range(count)
    ]
    db.add_all(rows)
    db.commit()
    return [row.id for row in rows]


def queue_email(db, user, now: datetime = T0) -> EmailLog:
    [email] = notifications.emit(db, "training.complete", [user], {"run": "cnn"}, now=now).emails
    db.commit()
    return email


def state(db, model, delivery_id: int) -> dict:
    db.expire_all()
    row = db.get(model, delivery_id)
    return {
        key: getattr(row, key)
        for key in ("status", "attempts", "lease_owner", "lease_expires_at", "next_attempt_at")
    } | {"retry_count": row.retry_count, "error_message": row.error_message}


# --- claiming ------------------------------------------------------------------------


def test_claim_hands_out_due_deliveries_longest_due_first_up_to_the_limit(db, hook):
    ids = queue_webhook_calls(db, hook, 5)
    claimed = deliveries.claim(
        db, "webhook", "w1", limit=3, lease_seconds=60, now=T0 + timedelta(minutes=1)
    )
    db.commit()
    assert [d.id for d in claimed] == ids[:3]
    assert {(d.lease_owner, d.attempts) for d in claimed} == {("w1", 1)}
    assert all(d.lease_expires_at == T0 + timedelta(minutes=2) for d in claimed)
    rest = deliveries.claim(
        db, Channel.WEBHOOK, "w2", limit=10, lease_seconds=60, now=T0 + timedelta(minutes=1)
    )
    assert [d.id for d in rest] == ids[3:]


def test_a_delivery_is_not_due_before_its_next_attempt(db, hook):
    queue_webhook_calls(db, hook, 1, now=T0)
    assert deliveries.claim(db, "webhook", "w1", now=T0 - timedelta(seconds=1)) == []
    assert len(deliveries.claim(db, "webhook", "w1", now=T0)) == 1


def test_email_and_webhook_deliveries_are_separate_channels(db, user, hook):
    email = queue_email(db, user)
    claimed = deliveries.claim(db, "email", "mailer", now=T0)
    assert [d.id for d in claimed] == [email.id]
    assert isinstance(claimed[0], EmailLog)
    assert claimed[0].recipient_email == "ada@example.com"
    [call] = deliveries.claim(db, "webhook", "poster", now=T0)
    assert isinstance(call, WebhookLog) and call.webhook_url == hook.webhook_url


def test_a_claimed_delivery_is_not_handed_out_again_while_its_lease_runs(db, hook):
    queue_webhook_calls(db, hook, 1)
    assert len(deliveries.claim(db, "webhook", "w1", lease_seconds=30, now=T0)) == 1
    db.commit()
    for later in (1, 15, 29):
        assert deliveries.claim(db, "webhook", "w2", now=T0 + timedelta(seconds=later)) == []


def test_a_delivery_whose_lease_ran_out_is_claimed_again_and_the_first_worker_is_refused(db, hook):
    [delivery_id] = queue_webhook_calls(db, hook, 1)
    [first] = deliveries.claim(db, "webhook", "w1", lease_seconds=30, now=T0)
    db.commit()
    [again] = deliveries.claim(
        db, "webhook", "w2", lease_seconds=30, now=T0 + timedelta(seconds=31)
    )
    db.commit()
    assert again.id == delivery_id and again.lease_owner == "w2" and again.attempts == 2
    held = state(db, WebhookLog, delivery_id)
    stale = WebhookLog(id=delivery_id, attempts=1, retry_count=0)  # what w1 was handed
    with pytest.raises(LeaseLost, match="w1"):
        deliveries.succeed(db, stale, "w1", now=T0 + timedelta(seconds=32))
    with pytest.raises(LeaseLost):
        deliveries.fail(db, stale, "w1", "too late", now=T0 + timedelta(seconds=32))
    db.rollback()
    assert state(db, WebhookLog, delivery_id) == held
    done = deliveries.succeed(db, again, "w2", http_status_code=204, now=T0 + timedelta(seconds=33))
    db.commit()
    assert done.status == "sent" and done.lease_owner is None
    assert first.id == delivery_id


def test_a_worker_whose_lease_ran_out_unnoticed_still_reports(db, user):
    email = queue_email(db, user)
    [claimed] = deliveries.claim(db, "email", "w1", lease_seconds=10, now=T0)
    done = deliveries.succeed(db, claimed, "w1", now=T0 + timedelta(minutes=5))
    db.commit()
    assert done.id == email.id and done.status == "sent"


def test_a_finished_delivery_cannot_be_reported_twice(db, user):
    queue_email(db, user)
    [claimed] = deliveries.claim(db, "email", "w1", now=T0)
    deliveries.succeed(db, claimed, "w1", now=T0)
    db.commit()
    with pytest.raises(LeaseLost):
        deliveries.fail(db, claimed, "w1", "second report", now=T0)


def test_another_worker_cannot_report_on_a_held_delivery(db, user):
    queue_email(db, user)
    [claimed] = deliveries.claim(db, "email", "w1", now=T0)
    with pytest.raises(LeaseLost):
        deliveries.succeed(db, claimed, "w2", now=T0)


# --- finishing -----------------------------------------------------------------------


def test_succeed_records_an_email_with_its_provider_and_message_id(db, user):
    queue_email(db, user)
    [claimed] = deliveries.claim(db, "email", "mailer", now=T0)
    done = deliveries.succeed(
        db, claimed, "mailer", provider="ses", message_id="<m1@ses>", now=T0 + timedelta(seconds=2)
    )
    db.commit()
    db.expire_all()
    stored = db.get(EmailLog, done.id)
    assert (stored.status, stored.provider, stored.message_id) == ("sent", "ses", "<m1@ses>")
    assert stored.sent_at == T0 + timedelta(seconds=2)
    assert stored.lease_owner is None and stored.lease_expires_at is None


def test_succeed_records_a_webhook_call_and_resets_the_webhook_failure_count(db, hook):
    queue_webhook_calls(db, hook, 2)
    first, second = deliveries.claim(db, "webhook", "w1", limit=2, now=T0 + timedelta(seconds=5))
    deliveries.fail(
        db, first, "w1", "HTTP 502", http_status_code=502, now=T0 + timedelta(seconds=6)
    )
    db.commit()
    db.refresh(hook)
    assert hook.consecutive_failures == 1 and hook.last_error == "HTTP 502"
    deliveries.succeed(
        db, second, "w1", http_status_code=200, response_body="ok", response_time_ms=41.5,
        now=T0 + timedelta(seconds=7),
    )  # fmt: skip
    db.commit()
    db.refresh(hook)
    db.refresh(second)
    assert hook.consecutive_failures == 0 and hook.last_used_at == T0 + timedelta(seconds=7)
    assert (second.status, second.http_status_code, second.response_body) == ("sent", 200, "ok")
    assert second.response_time_ms == 41.5


def test_a_failure_is_retried_with_exponential_backoff_then_failed_for_good(
    db, user, queue_settings
):
    queue_settings(delivery_max_attempts=3, delivery_backoff_seconds=10)
    email = queue_email(db, user)
    now = T0
    waits = []
    for attempt in (1, 2):
        [claimed] = deliveries.claim(db, "email", "w1", now=now)
        assert claimed.attempts == attempt
        failed = deliveries.fail(db, claimed, "w1", f"SMTP 451 try {attempt}", now=now)
        db.commit()
        assert failed.status == "pending" and failed.lease_owner is None
        waits.append(failed.next_attempt_at - now)
        assert (
            deliveries.claim(db, "email", "w2", now=failed.next_attempt_at - timedelta(seconds=1))
            == []
        )
        now = failed.next_attempt_at
    assert waits == [timedelta(seconds=10), timedelta(seconds=20)]
    [last] = deliveries.claim(db, "email", "w1", now=now)
    deliveries.fail(db, last, "w1", "SMTP 451 try 3", now=now)
    db.commit()
    final = state(db, EmailLog, email.id)
    assert (final["status"], final["attempts"], final["retry_count"]) == ("failed", 3, 3)
    assert final["error_message"] == "SMTP 451 try 3"
    assert deliveries.claim(db, "email", "w1", now=now + timedelta(days=1)) == []


def test_the_backoff_doubles_up_to_its_ceiling(queue_settings):
    queue_settings(delivery_backoff_seconds=30, delivery_backoff_max_seconds=300)
    assert [deliveries.backoff(n).total_seconds() for n in range(1, 7)] == [
        30, 60, 120, 240, 300, 300,
    ]  # fmt: skip
    assert deliveries.backoff(10_000).total_seconds() == 300


def test_retry_false_fails_at_once_with_the_status_given(db, hook):
    [delivery_id] = queue_webhook_calls(db, hook, 1)
    [claimed] = deliveries.claim(db, "webhook", "w1", now=T0)
    done = deliveries.fail(
        db, claimed, "w1", "no such host", status="invalid_url", retry=False, now=T0
    )
    db.commit()
    assert (done.status, done.failed_at, done.retry_count) == ("invalid_url", T0, 1)
    assert deliveries.claim(db, "webhook", "w1", now=T0 + timedelta(days=1)) == []
    assert state(db, WebhookLog, delivery_id)["status"] == "invalid_url"


@pytest.mark.parametrize(
    ("channel", "status"), [("email", "timeout"), ("webhook", "bounced"), ("email", "sent")]
)
def test_a_failure_status_must_belong_to_the_channel(db, user, hook, channel, status):
    queue_email(db, user)  # an e-mail and, as the hook subscribes to all, a webhook call
    [claimed] = deliveries.claim(db, channel, "w1", limit=1, now=T0)
    db.commit()
    before = state(db, type(claimed), claimed.id)
    with pytest.raises(InvalidInput, match="status"):
        deliveries.fail(db, claimed, "w1", "x", status=status, retry=False, now=T0)
    assert state(db, type(claimed), claimed.id) == before


def test_a_delivery_whose_last_lease_ran_out_is_failed_instead_of_handed_out(
    db, user, queue_settings
):
    queue_settings(delivery_max_attempts=1)
    email = queue_email(db, user)
    assert len(deliveries.claim(db, "email", "w1", lease_seconds=10, now=T0)) == 1
    db.commit()
    assert deliveries.claim(db, "email", "w2", now=T0 + timedelta(seconds=11)) == []
    db.commit()
    final = state(db, EmailLog, email.id)
    assert final["status"] == "failed" and final["lease_owner"] is None
    assert "lease ran out" in final["error_message"]


def test_outcome_details_must_fit_the_channel(db, user):
    queue_email(db, user)
    [claimed] = deliveries.claim(db, "email", "w1", now=T0)
    db.commit()
    before = state(db, EmailLog, claimed.id)
    with pytest.raises(InvalidInput, match="http_status_code"):
        deliveries.succeed(db, claimed, "w1", http_status_code=200, now=T0)
    with pytest.raises(InvalidInput, match="delivery"):
        deliveries.succeed(db, db.get(User, claimed.user_id), "w1")
    assert state(db, EmailLog, claimed.id) == before


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"channel": "sms"}, "channel"),
        ({"worker": "  "}, "worker"),
        ({"worker": "w\x00"}, "worker"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"lease_seconds": 1.5}, "lease_seconds"),
        ({"now": "2026-06-01"}, "datetime"),
    ],
)
def test_claim_refuses_bad_arguments(db, hook, arguments, field):
    queue_webhook_calls(db, hook, 1)
    given = {"channel": "webhook", "worker": "w1", "limit": 5, "lease_seconds": 60, "now": T0}
    given.update(arguments)
    channel, worker = given.pop("channel"), given.pop("worker")
    with pytest.raises(InvalidInput, match=field):
        deliveries.claim(db, channel, worker, **given)
    db.rollback()
    assert deliveries.claim(db, "webhook", "w1", now=T0)[0].attempts == 1


def test_a_remote_response_body_is_stored_cut_and_cleaned(db, hook):
    queue_webhook_calls(db, hook, 1)
    [claimed] = deliveries.claim(db, "webhook", "w1", now=T0)
    body = "bad\x00gateway \udc80" + "x" * 20_000
    done = deliveries.fail(db, claimed, "w1", "HTTP 502", response_body=body, now=T0)
    db.commit()
    db.expire_all()
    stored = db.get(WebhookLog, done.id).response_body
    assert len(stored) == deliveries.RESPONSE_MAX
    # the one cleaner (store.remote_text), as the login history's: escaped, nothing lost
    assert stored.startswith("bad\\x00gateway \\udc80x")


# --- racing workers ------------------------------------------------------------------


def drain(engine: Engine, index: int, ready) -> list[tuple[int, str]]:
    """A worker: claim in small batches and succeed each until nothing is due;
    returns ``(delivery id, worker)`` for every delivery it was handed."""
    worker = f"worker-{index}"
    handed: list[tuple[int, str]] = []
    ready()
    with Session(engine, expire_on_commit=False) as session:
        while True:
            claimed = deliveries.claim(session, "webhook", worker, limit=3, lease_seconds=600)
            session.commit()
            if not claimed:
                return handed
            for delivery in claimed:
                handed.append((delivery.id, worker))
                deliveries.succeed(session, delivery, worker, http_status_code=200)
                session.commit()


def test_racing_workers_never_hold_one_delivery_at_once(db, engine, db_url, dialect, hook):
    """8 threads (PostgreSQL) or 4 processes (SQLite) drain one queue: every delivery
    is handed out exactly once (the lease outlives the race) and ends sent."""
    ids = queue_webhook_calls(db, hook, RACE_DELIVERIES, now=T0)
    db.close()
    handed = [
        pair for worker in race(dialect, engine, db_url, WORKERS[dialect], drain) for pair in worker
    ]
    handed_ids = sorted(delivery_id for delivery_id, _ in handed)
    assert handed_ids == sorted(ids)  # none twice, none missed
    assert len({worker for _, worker in handed}) > 1
    statuses = db.execute(select(WebhookLog.status, func.count()).group_by(WebhookLog.status)).all()
    assert statuses == [("sent", RACE_DELIVERIES)]


# --- history -------------------------------------------------------------------------


def test_history_is_newest_first_filtered_and_paged(db, user, hook):
    other = users.create_user(db, "bob", "bob@example.com", "another long passphrase")
    for i in range(5):
        notifications.emit(
            db, "training.complete", [user, other], {"i": i}, now=T0 + timedelta(minutes=i)
        )
    notifications.emit(db, "training.failed", [user], {"i": 5}, now=T0 + timedelta(minutes=5))
    db.commit()
    emails = db.scalars(
        select(EmailLog).where(EmailLog.user_id == user.id).order_by(EmailLog.id)
    ).all()
    for minute, email in enumerate(emails):
        email.created_at = T0 + timedelta(minutes=minute)
    db.commit()
    page = delivery_history.history(db, "email", user, limit=4)
    assert [e.event_data["i"] for e in page] == [5, 4, 3, 2]
    second = delivery_history.history(db, "email", user, limit=4, before_id=page[-1].id)
    assert [e.event_data["i"] for e in second] == [1, 0]
    assert delivery_history.history(db, "email", user, limit=4, before_id=second[-1].id) == []
    failed = delivery_history.history(db, "email", user.id, event_type="training.failed")
    assert [e.event_data["i"] for e in failed] == [5]
    window = delivery_history.history(
        db, "email", user, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)
    )
    assert [e.event_data["i"] for e in window] == [2, 1]
    assert delivery_history.history(db, "email", user, status="sent") == []
    assert len(delivery_history.history(db, "webhook", user)) == 6
    with pytest.raises(InvalidInput, match="status"):
        delivery_history.history(db, "email", user, status="rate_limited")
    with pytest.raises(InvalidInput, match="limit"):
        delivery_history.history(db, "email", user, limit=0)


def test_counts_by_status_lists_every_status(db, user, hook):
    queue_webhook_calls(db, hook, 3)
    first, second = deliveries.claim(db, "webhook", "w1", limit=2, now=T0 + timedelta(minutes=1))
    deliveries.succeed(db, first, "w1", now=T0 + timedelta(minutes=1))
    deliveries.fail(
        db, second, "w1", "timed out", status="timeout", retry=False, now=T0 + timedelta(minutes=1)
    )
    db.commit()
    counts = delivery_history.counts_by_status(db, "webhook", user)
    assert counts == {
        "pending": 1, "sent": 1, "failed": 0, "rate_limited": 0, "timeout": 1,
        "invalid_url": 0, "provider_error": 0,
    }  # fmt: skip
    assert sum(delivery_history.counts_by_status(db, "email", user).values()) == 0


# --- revision 0003 -------------------------------------------------------------------


def test_revision_0003_upgrades_a_database_holding_data_and_downgrades_again(fresh_url):
    engine = make_engine(fresh_url)
    try:
        migrations.upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO users (username, email) VALUES ('ada', 'ada@example.com')")
            )
            conn.execute(
                text(
                    "INSERT INTO email_logs (user_id, recipient_email, event_type, subject, "
                    "template_name, status, created_at) VALUES "
                    "(1, 'ada@example.com', 'training.complete', 'Done', 't', 'pending', :queued), "
                    "(1, 'ada@example.com', 'training.failed', 'Failed', 't', 'sent', :queued)"
                ),
                {
                    "queued": QUEUED
                    if engine.dialect.name == "postgresql"
                    else "2026-01-02 03:04:05"
                },
            )
            conn.execute(
                text(
                    "INSERT INTO webhook_configurations (user_id, provider_type, webhook_url) "
                    "VALUES (1, 'slack', 'https://hooks.slack.com/x')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO webhook_logs (webhook_config_id, user_id, event_type, "
                    "provider_type, webhook_url, status) "
                    "VALUES (1, 1, 'training.complete', 'slack', 'https://hooks.slack.com/x', "
                    "'sent')"
                )
            )
        assert migrations.upgrade(engine).current == migrations.head_revision()
        with Session(engine) as session:
            pending, sent = session.scalars(select(EmailLog).order_by(EmailLog.id)).all()
            assert pending.next_attempt_at == QUEUED
            assert (pending.attempts, pending.lease_owner, sent.status) == (0, None, "sent")
            [claimed] = deliveries.claim(session, "email", "w1")
            assert claimed.id == pending.id
            hook = session.get(WebhookConfiguration, 1)
            assert hook.signing_secret is None and hook.disabled_reason is None
            webhooks.send_test(session, hook)  # a pending test.webhook delivery
            session.commit()
        migrations.downgrade(engine, "0002")
        with engine.connect() as conn:
            logs = conn.execute(
                text("SELECT event_type, status FROM webhook_logs ORDER BY id")
            ).all()
            emails = conn.execute(text("SELECT status FROM email_logs ORDER BY id")).scalars().all()
            columns = {c["name"] for c in inspect(conn).get_columns("email_logs")}
        assert logs == [("training.complete", "sent")]  # the test.webhook row is gone
        assert emails == ["pending", "sent"]
        assert "lease_owner" not in columns
        assert migrations.upgrade(engine).current == migrations.head_revision()
        assert migrations.schema_drift(engine) == []
    finally:
        engine.dispose()


def test_downgrading_0003_keeps_queued_webhook_calls_as_failed(fresh_url):
    engine = make_engine(fresh_url)
    try:
        migrations.upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO users (username, email) VALUES ('ada', 'ada@example.com')")
            )
            conn.execute(
                text(
                    "INSERT INTO webhook_configurations (user_id, provider_type, webhook_url) "
                    "VALUES (1, 'webhook', 'https://example.com/h')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO webhook_logs (webhook_config_id, user_id, event_type, "
                    "provider_type, webhook_url, status) "
                    "VALUES (1, 1, 'model.deployed', 'webhook', 'https://example.com/h', 'pending')"
                )
            )
        migrations.downgrade(engine, "0002")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT status, error_message FROM webhook_logs")).one()
        assert row == ("failed", "still queued when revision 0003 was undone")
    finally:
        engine.dispose()
