"""Notification preferences and emit (pfd_db.store.notify.notifications) on both dialects:
every new user gets the defaults, preferences change only to known values, and emit
queues what each preference and webhook asks for inside the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import (
    EmailDigestQueue,
    EmailLog,
    NotificationPreference,
    User,
    WebhookLog,
    default_preferences,
)
from pfd_db.models.enums import NOTIFIABLE_EVENTS
from pfd_db.seed import seed
from pfd_db.store.identity import users
from pfd_db.store.notify import digests, inbox, notifications, webhooks

T0 = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)  # a Wednesday
T1 = datetime(2026, 6, 3, 13, 0, tzinfo=UTC)
QUEUES = (EmailLog, EmailDigestQueue, WebhookLog)


@pytest.fixture
def ada(db):
    user = users.create_user(db, "ada", "ada@example.com", "a long passphrase")
    db.commit()
    return user


def queued(db) -> dict[str, int]:
    return {
        model.__tablename__: db.scalar(select(func.count()).select_from(model)) for model in QUEUES
    }


def preference_table(db, user) -> dict[str, tuple]:
    return {
        event.value: (p.email_enabled, p.in_app_enabled, p.slack_enabled, p.webhook_enabled,
                      p.email_frequency)
        for event, p in notifications.preferences(db, user).items()
    }  # fmt: skip


# --- preferences -----------------------------------------------------------------------


def test_a_new_user_gets_the_seeded_admins_preference_for_every_event(db, ada):
    seed(db)
    db.commit()
    admin = users.get_by_username(db, "admin")
    mine = preference_table(db, ada)
    assert list(mine) == [event.value for event in NOTIFIABLE_EVENTS]
    assert mine == preference_table(db, admin)
    defaults = default_preferences()
    assert {e: v[0] for e, v in mine.items()} == {
        e.value: d["email_enabled"] for e, d in defaults.items()
    }


def test_default_preferences_are_added_once(db):
    bare = User(username="legacy", email="legacy@example.com")
    db.add(bare)
    db.flush()
    assert notifications.preferences(db, bare) == {}
    assert notifications.add_default_preferences(db, bare) == len(NOTIFIABLE_EVENTS)
    assert notifications.add_default_preferences(db, bare.id) == 0
    assert len(notifications.preferences(db, bare)) == len(NOTIFIABLE_EVENTS)


def test_set_preference_changes_only_what_it_is_given(db, ada):
    pref = notifications.set_preference(
        db, ada, "training.started", email_enabled=True, email_frequency="digest_daily"
    )
    db.commit()
    db.expire_all()
    stored = notifications.preferences(db, ada.id)[pref.event_type]
    assert (stored.email_enabled, stored.email_frequency) == (True, "digest_daily")
    assert (stored.in_app_enabled, stored.slack_enabled) == (True, False)


def test_set_preference_makes_a_missing_preference_from_the_defaults(db):
    bare = User(username="legacy", email="legacy@example.com")
    db.add(bare)
    db.commit()
    pref = notifications.set_preference(db, bare, "model.deployed", slack_enabled=True)
    db.commit()
    assert (pref.slack_enabled, pref.email_enabled, pref.email_frequency) == (
        True, False, "immediate",
    )  # fmt: skip
    assert list(notifications.preferences(db, bare)) == ["model.deployed"]


@pytest.mark.parametrize(
    ("event", "changes", "field"),
    [
        ("training.done", {"email_enabled": True}, "event_type"),
        ("test.webhook", {"email_enabled": True}, "event_type"),
        ("training.complete", {"email_frequency": "hourly"}, "email_frequency"),
        ("training.complete", {"email_enabled": 1}, "email_enabled"),
        ("training.complete", {"sms_enabled": True}, "sms_enabled"),
    ],
)
def test_set_preference_refuses_unknown_events_frequencies_and_fields(
    db, ada, event, changes, field
):
    before = preference_table(db, ada)
    with pytest.raises(InvalidInput, match=field):
        notifications.set_preference(db, ada, event, **changes)
    db.rollback()
    assert preference_table(db, ada) == before


# --- emit ------------------------------------------------------------------------------


def test_emit_queues_an_email_for_an_immediate_preference(db, ada):
    emitted = notifications.emit(db, "training.complete", [ada], {"run": "cnn-1"}, now=T0)
    db.commit()
    [email] = emitted.emails
    assert emitted.total == 1
    assert (email.recipient_email, email.status, email.subject) == (
        "ada@example.com", "pending", "Training complete",
    )  # fmt: skip
    assert (email.template_name, email.event_data) == ("training_complete", {"run": "cnn-1"})
    assert (email.next_attempt_at, email.attempts, email.lease_owner) == (T0, 0, None)


def test_emit_takes_a_subject(db, ada):
    emitted = notifications.emit(
        db, "training.failed", [ada], {}, subject="cnn-1 diverged at epoch 3", now=T0
    )
    assert emitted.emails[0].subject == "cnn-1 diverged at epoch 3"


def test_emit_follows_each_users_preference(db, ada):
    bob = users.create_user(db, "bob", "bob@example.com", "another long passphrase")
    cy = users.create_user(db, "cyd", "cyd@example.com", "yet another passphrase")
    notifications.set_preference(db, bob, "model.deployed", email_enabled=True)
    notifications.set_preference(
        db, cy, "model.deployed", email_enabled=True, email_frequency="digest_weekly"
    )
    emitted = notifications.emit(db, "model.deployed", [ada, bob, cy], {"model": "v2"}, now=T0)
    db.commit()
    assert [e.user_id for e in emitted.emails] == [bob.id]  # off by default for ada
    [entry] = emitted.digest_entries
    assert (entry.user_id, entry.event_type, entry.included_in_digest) == (
        cy.id, "model.deployed", False,
    )  # fmt: skip
    assert entry.scheduled_for == digests.next_digest_at("digest_weekly", T0)
    assert entry.event_data == {"model": "v2"}


def test_emit_gives_users_without_stored_preferences_the_defaults(db):
    bare = User(username="legacy", email="legacy@example.com")
    db.add(bare)
    db.commit()
    assert len(notifications.emit(db, "training.failed", [bare], {}, now=T0).emails) == 1
    assert notifications.emit(db, "training.started", [bare], {}, now=T0).total == 0


def test_emit_skips_inactive_users_and_counts_each_user_once(db, ada):
    bob = users.create_user(db, "bob", "bob@example.com", "another long passphrase")
    users.deactivate(db, bob)
    emitted = notifications.emit(db, "training.complete", [ada, ada.id, bob], {}, now=T0)
    assert [e.user_id for e in emitted.emails] == [ada.id]


def test_emit_queues_a_delivery_for_each_active_subscribed_webhook(db, ada, plaintexts):
    def hook(url, events):
        config, secret = webhooks.create_webhook(db, ada, url, events)
        plaintexts.append(secret)
        return config

    subscribed = hook("https://a.example.com/h", ["training.complete"])
    also = hook("https://b.example.com/h", ["training.complete", "training.failed"])
    hook("https://c.example.com/h", ["training.failed"])
    disabled = hook("https://d.example.com/h", ["training.complete"])
    webhooks.disable(db, disabled)
    notifications.set_preference(db, ada, "training.complete", email_enabled=False)
    emitted = notifications.emit(db, "training.complete", [ada], {"run": "cnn-1"}, now=T0)
    db.commit()
    assert emitted.emails == [] and emitted.digest_entries == []
    calls = emitted.webhook_deliveries
    assert [c.webhook_config_id for c in calls] == [subscribed.id, also.id]
    assert {(c.status, c.event_type, c.user_id) for c in calls} == {
        ("pending", "training.complete", ada.id)
    }
    assert calls[0].payload == {
        "event": "training.complete", "created_at": T0.isoformat(), "data": {"run": "cnn-1"},
    }  # fmt: skip


def test_emit_in_a_transaction_that_rolls_back_queues_nothing(db, ada, plaintexts):
    _, secret = webhooks.create_webhook(db, ada, "https://a.example.com/h", ["training.complete"])
    plaintexts.append(secret)
    db.commit()
    emitted = notifications.emit(db, "training.complete", [ada], {"run": 1}, now=T0)
    assert emitted.total == 2 and queued(db) == {
        "email_logs": 1, "email_digest_queue": 0, "webhook_logs": 1,
    }  # fmt: skip
    db.rollback()
    assert queued(db) == {"email_logs": 0, "email_digest_queue": 0, "webhook_logs": 0}
    with pytest.raises(RuntimeError), db.begin_nested():
        notifications.emit(db, "training.complete", [ada], {"run": 2}, now=T0)
        raise RuntimeError("the caller's own work failed")
    db.commit()
    assert sum(queued(db).values()) == 0


@pytest.mark.parametrize(
    ("event", "who", "data", "error", "field"),
    [
        ("training.done", "ada", {}, InvalidInput, "event_type"),
        ("test.webhook", "ada", {}, InvalidInput, "event_type"),
        ("training.complete", "ada", {"x": float("nan")}, InvalidInput, "data"),
        ("training.complete", "ada", ["not", "an", "object"], InvalidInput, "data"),
        ("training.complete", "one user", {}, InvalidInput, "users"),
        ("training.complete", [999], {}, NotFound, "999"),
        ("training.complete", ["ada"], {}, InvalidInput, "users"),
    ],
)
def test_emit_refuses_bad_input_and_queues_nothing(db, ada, event, who, data, error, field):
    users_given = [ada] if who == "ada" else ada if who == "one user" else who
    with pytest.raises(error, match=field):
        notifications.emit(db, event, users_given, data, now=T0)
    db.rollback()
    assert sum(queued(db).values()) == 0


def test_emit_refuses_a_subject_too_long(db, ada):
    with pytest.raises(InvalidInput, match="subject"):
        notifications.emit(db, "training.complete", [ada], {}, subject="x" * 256)
    assert db.scalar(select(func.count()).select_from(NotificationPreference)) == len(
        NOTIFIABLE_EVENTS
    )


def test_mark_all_read_marks_each_unread_notification_once(db, ada, engine):
    emails = [
        notifications.emit(db, "training.complete", [ada], {"run": f"r{i}"}, now=T0).emails[0]
        for i in range(3)
    ]
    db.commit()
    inbox.mark_read(db, ada, emails[0], now=T0)
    db.commit()
    assert [e.opened_at for e in emails] == [T0, None, None]  # loaded in this session
    with Session(engine) as other:  # another session holds the same rows, loaded
        mine = other.get(EmailLog, emails[1].id)
        assert mine is not None and mine.opened_at is None
        assert inbox.mark_all_read(db, ada, now=T1) == 2
        assert [e.opened_at for e in emails] == [T0, T1, T1]  # this session's copies follow
        db.commit()
        assert inbox.mark_all_read(other, ada.id, now=T1) == 0  # none left unread
        other.commit()
        assert mine.opened_at == T1
    assert inbox.unread_count(db, ada) == 0
