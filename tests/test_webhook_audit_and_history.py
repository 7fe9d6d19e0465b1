"""On both dialects: a webhook's creation, URL change, deletion and new secret are
audited in the caller's transaction, with no secret (nor the URL's path) in the
details; a webhook's own delivery history, bounded and read through an index; and
webhook statistics over a time window."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from pfd_db.errors import InvalidInput
from pfd_db.models import SystemLog, WebhookConfiguration
from pfd_db.models.enums import EventType
from pfd_db.store.identity import users
from pfd_db.store.notify import deliveries, delivery_history, webhooks
from pfd_db.store.ops import audit

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SLACK_TOKEN = "T0AAA/B0BBB/s3cr3tPathToken"
URL = f"https://hooks.slack.com/services/{SLACK_TOKEN}"


@pytest.fixture
def ada(db):
    user = users.create_user(db, "ada", "ada@example.com", "a long passphrase")
    db.commit()
    return user


def webhook_entries(db) -> list[SystemLog]:
    return list(reversed(audit.entries(db, action="webhook.")))


# --- audit ---------------------------------------------------------------------------


def test_create_url_change_delete_and_rotate_are_audited_without_secrets(db, ada, plaintexts):
    admin = users.create_user(db, "root", "root@example.com", "another long passphrase")
    audit.acting_as(db, admin)
    config, first_secret = webhooks.create_webhook(db, ada, URL, ["training.complete"])
    webhooks.update_webhook(db, config, name="renamed")  # not the URL: no entry
    webhooks.update_webhook(db, config, url="https://hooks.example.com/pfd?key=abc123")
    second_secret = webhooks.rotate_secret(db, config)
    plaintexts.extend([first_secret, second_secret])
    webhook_id = config.id
    webhooks.delete_webhook(db, config)
    db.commit()
    entries = webhook_entries(db)
    assert [(e.action, e.user_id, e.status) for e in entries] == [
        ("webhook.created", admin.id, "success"),
        ("webhook.url_changed", admin.id, "success"),
        ("webhook.secret_rotated", admin.id, "success"),
        ("webhook.deleted", admin.id, "success"),
    ]
    about = {"webhook_id": webhook_id, "user_id": ada.id}
    assert entries[0].details == about | {
        "host": "hooks.slack.com",
        "events": ["training.complete"],
    }
    assert entries[1].details == about | {
        "host": "hooks.example.com",
        "from_host": "hooks.slack.com",
    }
    assert entries[2].details == entries[3].details == about | {"host": "hooks.example.com"}
    stored = json.dumps([e.details for e in entries])
    for secret in (first_secret, second_secret, SLACK_TOKEN, "abc123", "s3cr3t"):
        assert secret not in stored


def test_the_audit_entry_goes_with_the_callers_rollback(db, ada, plaintexts):
    _config, secret = webhooks.create_webhook(db, ada, URL, ["training.complete"])
    plaintexts.append(secret)
    assert [e.action for e in webhook_entries(db)] == ["webhook.created"]
    db.rollback()
    assert webhook_entries(db) == []
    assert db.scalar(select(func.count()).select_from(WebhookConfiguration)) == 0


def test_a_refused_change_writes_no_audit_entry(db, ada, plaintexts):
    config, secret = webhooks.create_webhook(db, ada, URL, ["training.complete"])
    plaintexts.append(secret)
    db.commit()
    with pytest.raises(InvalidInput):
        webhooks.update_webhook(db, config, url="http://169.254.169.254/latest/meta-data/")
    with pytest.raises(InvalidInput):
        webhooks.update_webhook(db, config, url="https://ok.example.com/", events=["nope"])
    assert [e.action for e in webhook_entries(db)] == ["webhook.created"]


# --- one webhook's delivery history ------------------------------------------------


@pytest.fixture
def two_hooks(db, ada, plaintexts) -> tuple[WebhookConfiguration, WebhookConfiguration]:
    """Two webhooks of ada: 5 deliveries to the first, 3 to the second, a minute apart
    (created_at set), the first's oldest two finished."""
    hooks = []
    for url in ("https://a.example.com/hook", "https://b.example.com/hook"):
        config, secret = webhooks.create_webhook(db, ada, url, ["training.complete"])
        plaintexts.append(secret)
        hooks.append(config)
    for minute, config in enumerate([hooks[0]] * 5 + [hooks[1]] * 3):
        call = webhooks.new_delivery(config, EventType.TRAINING_COMPLETE, {"i": minute}, T0)
        call.created_at = call.next_attempt_at = T0 + timedelta(minutes=minute)
        db.add(call)
    db.commit()
    # only the first two are due by then, so the claim cannot pick others of equal due time
    first, second = deliveries.claim(db, "webhook", "w1", limit=2, now=T0 + timedelta(minutes=1))
    deliveries.succeed(db, first, "w1", http_status_code=200, response_time_ms=10.0, now=T0)
    deliveries.fail(db, second, "w1", "gone", status="invalid_url", retry=False, now=T0)
    db.commit()
    return hooks[0], hooks[1]


def test_a_webhooks_history_is_its_own_deliveries_newest_first_and_paged(db, ada, two_hooks):
    first, second = two_hooks
    page = delivery_history.history(db, "webhook", webhook=first, limit=3)
    assert [d.payload["data"]["i"] for d in page] == [4, 3, 2]
    rest = delivery_history.history(db, "webhook", webhook=first.id, limit=3, before_id=page[-1].id)
    assert [d.payload["data"]["i"] for d in rest] == [1, 0]
    theirs = delivery_history.history(db, "webhook", ada, webhook=second)
    assert [d.payload["data"]["i"] for d in theirs] == [7, 6, 5]
    sent = delivery_history.history(db, "webhook", webhook=first, status="sent")
    assert [d.payload["data"]["i"] for d in sent] == [0]
    window = delivery_history.history(
        db,
        "webhook",
        webhook=first,
        since=T0 + timedelta(minutes=1),
        until=T0 + timedelta(minutes=3),
    )
    assert [d.payload["data"]["i"] for d in window] == [2, 1]
    other = users.create_user(db, "bob", "bob@example.com", "yet another passphrase")
    assert delivery_history.history(db, "webhook", other, webhook=first) == []
    counts = delivery_history.counts_by_status(db, "webhook", webhook=first)
    assert (counts["pending"], counts["sent"], counts["invalid_url"]) == (3, 1, 1)
    assert sum(delivery_history.counts_by_status(db, "webhook", webhook=second).values()) == 3


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"channel": "webhook"}, "needs a user or a webhook"),
        ({"channel": "email", "webhook": 1}, "webhook deliveries only"),
        ({"channel": "webhook", "webhook": "1"}, "webhook must be"),
        ({"channel": "webhook", "webhook": 1, "limit": 1001}, "limit"),
        ({"channel": "webhook", "webhook": 1, "before_id": -1}, "before_id"),
    ],
)
def test_a_webhook_history_refuses_bad_arguments(db, two_hooks, arguments, message):
    if "webhook" in arguments and arguments["webhook"] == 1:
        arguments = arguments | {"webhook": two_hooks[0].id}
    with pytest.raises(InvalidInput, match=message):
        delivery_history.history(db, **arguments)


def plans(db, dialect: str, call) -> list[str]:
    """The plans of the statements on webhook_logs that ``call`` runs (PostgreSQL:
    with sequential scans off, so a missing index shows even on a small table)."""
    seen: list[tuple[str, object]] = []
    connection = db.connection()

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if "FROM webhook_logs" in statement:
            seen.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    if dialect == "postgresql":
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        explain = "EXPLAIN "
    else:
        explain = "EXPLAIN QUERY PLAN "
    found = []
    for statement, parameters in seen:
        rows = connection.exec_driver_sql(explain + statement, parameters).all()
        found.append(" | ".join(str(row[-1]) for row in rows))
    return found


def test_a_webhooks_history_and_stats_read_through_its_index(db, dialect, two_hooks):
    first = two_hooks[0]
    since = T0 - timedelta(days=1)
    read = plans(
        db,
        dialect,
        lambda: (
            delivery_history.history(db, "webhook", webhook=first, limit=10),
            webhooks.stats(db, first, since=since, until=T0 + timedelta(days=1)),
        ),
    )
    assert len(read) >= 4
    for plan in read:
        assert "Seq Scan" not in plan and not re.search(r"SCAN webhook_logs\b", plan), plan
        if dialect == "sqlite":
            assert re.search(r"ix_webhook_logs_(webhook_config_id|created_at)\b", plan), plan
        else:  # on a few rows PostgreSQL's planner may prefer another index plus a filter
            assert "Index" in plan, plan


# --- stats over a time window --------------------------------------------------------


def test_stats_over_a_time_window(db, two_hooks):
    first = two_hooks[0]
    # deliveries 0 (sent, 10 ms) and 1 (failed) were created at T0 and T0 + 1 min
    everything = webhooks.stats(db, first)
    assert everything.deliveries == 5 and everything.success_rate == 0.5
    early = webhooks.stats(db, first, since=T0, until=T0 + timedelta(minutes=1))
    assert early.by_status == {"sent": 1} and early.success_rate == 1.0
    assert early.p95_latency_ms == 10.0 and early.last_failure_at is None
    assert early.last_success_at == T0
    later = webhooks.stats(db, first, since=T0 + timedelta(minutes=1))
    assert later.deliveries == 4 and later.by_status == {"invalid_url": 1, "pending": 3}
    assert later.success_rate == 0.0 and later.p95_latency_ms is None
    assert later.last_failure_at == T0 and later.last_success_at is None
    before = webhooks.stats(db, first, until=T0)
    assert before.deliveries == 0 and before.success_rate is None
    with pytest.raises(InvalidInput, match="until"):
        webhooks.stats(db, first, since=T0, until=T0)
    with pytest.raises(InvalidInput):
        webhooks.stats(db, first, since=datetime(2026, 6, 1))  # naive


def test_stats_window_boundaries_are_since_inclusive_until_exclusive(db, two_hooks):
    first = two_hooks[0]
    at_two = T0 + timedelta(minutes=2)
    assert (
        webhooks.stats(db, first, since=at_two, until=at_two + timedelta(minutes=1)).deliveries == 1
    )
    assert webhooks.stats(db, first, until=at_two).deliveries == 2
    assert webhooks.stats(db, first, since=at_two).deliveries == 3
