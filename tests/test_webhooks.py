"""Webhooks (pfd_db.store.notify.webhooks) on both dialects: configurations, one URL per user,
event subscriptions, the encrypted signing secret and signatures, disabling after 10
consecutive failures, the test delivery, and statistics."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict, InvalidInput, NotFound
from pfd_db.models import WebhookConfiguration, WebhookLog
from pfd_db.models.enums import NOTIFIABLE_EVENTS
from pfd_db.store.identity import users
from pfd_db.store.notify import deliveries, notifications, webhooks

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
URL = "https://hooks.example.com/pfd"


@pytest.fixture
def ada(db):
    user = users.create_user(db, "ada", "ada@example.com", "a long passphrase")
    db.commit()
    return user


@pytest.fixture
def make_hook(db, ada, plaintexts):
    """Create a webhook of ``ada`` (committed); its secret joins the plaintext guard."""

    def make(url: str = URL, events=("training.complete",), **options) -> WebhookConfiguration:
        config, secret = webhooks.create_webhook(db, ada, url, list(events), **options)
        plaintexts.append(secret)
        db.commit()
        return config

    return make


def count_hooks(db) -> int:
    return db.scalar(select(func.count()).select_from(WebhookConfiguration))


def fail_once(db, delivery_count: int, now: datetime) -> None:
    """Claim ``delivery_count`` deliveries and fail each once (they stay queued)."""
    for delivery in deliveries.claim(db, "webhook", "w1", limit=delivery_count, now=now):
        deliveries.fail(db, delivery, "w1", "HTTP 503", http_status_code=503, now=now)
    db.commit()


# --- configurations ------------------------------------------------------------------


def test_create_returns_the_configuration_and_its_secret_once(db, ada, plaintexts):
    config, secret = webhooks.create_webhook(
        db, ada, URL, ["training.complete", "hpo.campaign_failed"], provider="slack",
        name="Team channel", settings={"channel": "#ml"},
    )  # fmt: skip
    plaintexts.append(secret)
    db.commit()
    assert secret.startswith("whsec_") and len(secret) > 40
    assert (config.user_id, config.webhook_url, config.provider_type) == (ada.id, URL, "slack")
    assert config.enabled_events == ["training.complete", "hpo.campaign_failed"]
    assert config.is_active and config.consecutive_failures == 0
    assert config.signing_secret is not None and secret not in config.signing_secret
    assert "signing_secret" not in config.to_dict()


def test_one_url_per_user(db, ada, make_hook):
    make_hook()
    with pytest.raises(Conflict, match="URL"):
        webhooks.create_webhook(db, ada, URL, ["training.complete"])
    bob = users.create_user(db, "bob", "bob@example.com", "another long passphrase")
    webhooks.create_webhook(db, bob, URL, ["training.complete"])
    db.commit()
    assert count_hooks(db) == 2


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https:///no-host"}, "url"),
        ({"url": "https://exa mple.com/"}, "url"),
        ({"url": "https://example.com/" + "x" * 2100}, "url"),
        ({"url": "https://example.com/\x00"}, "url"),
        ({"events": ["training.done"]}, "events"),
        ({"events": ["test.webhook"]}, "events"),
        ({"events": "training.complete"}, "events"),
        ({"provider": "discord"}, "provider"),
        ({"settings": {"n": float("nan")}}, "settings"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(db, ada, arguments, field):
    given = {"url": URL, "events": ["training.complete"]} | arguments
    with pytest.raises(InvalidInput, match=field):
        webhooks.create_webhook(db, ada, given.pop("url"), given.pop("events"), **given)
    db.rollback()
    assert count_hooks(db) == 0


def test_list_get_update_and_delete(db, ada, make_hook):
    first = make_hook()
    second = make_hook("https://hooks.example.com/other", NOTIFIABLE_EVENTS)
    assert [c.id for c in webhooks.list_webhooks(db, ada)] == [first.id, second.id]
    assert webhooks.get_webhook(db, first.id, ada).id == first.id
    bob = users.create_user(db, "bob", "bob@example.com", "another long passphrase")
    with pytest.raises(NotFound):
        webhooks.get_webhook(db, first.id, bob)
    updated = webhooks.update_webhook(
        db, first, url="https://hooks.example.com/renamed", events=["model.deployed"], name="n"
    )
    db.commit()
    assert (updated.webhook_url, updated.enabled_events, updated.name) == (
        "https://hooks.example.com/renamed", ["model.deployed"], "n",
    )  # fmt: skip
    with pytest.raises(Conflict, match="URL"):
        webhooks.update_webhook(db, first, url=second.webhook_url)
    with pytest.raises(InvalidInput, match="secret"):
        webhooks.update_webhook(db, first, secret="mine")
    with pytest.raises(InvalidInput, match="events"):
        webhooks.update_webhook(db, first, url="https://ok.example.com", events=["nope"])
    db.rollback()
    db.refresh(first)
    assert first.webhook_url == "https://hooks.example.com/renamed"
    webhooks.send_test(db, second)
    webhooks.delete_webhook(db, second)
    db.commit()
    assert [c.id for c in webhooks.list_webhooks(db, ada)] == [first.id]
    assert db.scalar(select(func.count()).select_from(WebhookLog)) == 0


def test_disable_and_enable(db, make_hook):
    config = make_hook()
    webhooks.disable(db, config, reason="moving to Teams")
    db.commit()
    assert not config.is_active and config.disabled_reason == "moving to Teams"
    webhooks.enable(db, config.id)
    db.commit()
    db.refresh(config)
    assert config.is_active and config.disabled_reason is None


def test_a_url_change_onto_a_taken_url_is_a_conflict_and_changes_nothing(db, make_hook):
    """The one uniqueness path (writes.set_unique): Conflict naming the URL, none of
    the changes applied, and the caller's transaction still usable."""
    make_hook()
    other = make_hook("https://hooks.example.com/other")
    with pytest.raises(Conflict, match="URL"):
        webhooks.update_webhook(db, other, url=URL, name="renamed")
    db.refresh(other)
    assert other.webhook_url == "https://hooks.example.com/other" and other.name is None
    webhooks.update_webhook(db, other, name="still usable")
    db.commit()
    assert other.name == "still usable" and count_hooks(db) == 2


def test_enable_and_disable_are_conditional_updates_and_a_gone_webhook_is_not_found(
    db, engine, make_hook
):
    """enable/disable go through store.status.update_if: the object shows what was
    stored; a webhook another session deleted meanwhile is NotFound, nothing written."""
    config = make_hook()
    disabled = webhooks.disable(db, config.id, reason="paused")
    assert disabled is config and not config.is_active and config.disabled_reason == "paused"
    db.commit()
    with Session(engine) as other:
        other.execute(delete(WebhookConfiguration).where(WebhookConfiguration.id == config.id))
        other.commit()
    for change in (webhooks.enable, webhooks.disable):
        with pytest.raises(NotFound):
            change(db, config)
        db.rollback()
    assert count_hooks(db) == 0


# --- signing -------------------------------------------------------------------------


def test_the_signature_is_an_hmac_of_timestamp_and_body_under_the_secret(db, ada, plaintexts):
    config, secret = webhooks.create_webhook(db, ada, URL, ["training.complete"])
    plaintexts.append(secret)
    db.commit()
    body = b'{"event": "training.complete"}'
    header = webhooks.signature(config, body, now=T0)
    timestamp = int(T0.timestamp())
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert header == f"t={timestamp},v1={expected.hexdigest()}"
    assert webhooks.signature(config, body.decode(), now=T0) == header
    assert webhooks.signature(config, body + b" ", now=T0) != header
    assert webhooks.signature(config, body, now=T0 + timedelta(seconds=1)) != header


def test_rotating_the_secret_changes_the_signature(db, make_hook, plaintexts):
    config = make_hook()
    before = webhooks.signature(config, b"{}", now=T0)
    secret = webhooks.rotate_secret(db, config)
    plaintexts.append(secret)
    db.commit()
    after = webhooks.signature(config, b"{}", now=T0)
    assert after != before
    digest = hmac.new(secret.encode(), f"{int(T0.timestamp())}.{{}}".encode(), "sha256")
    assert after.endswith(digest.hexdigest())


def test_a_webhook_without_a_secret_cannot_sign(db, make_hook):
    config = make_hook()
    config.signing_secret = None
    with pytest.raises(InvalidInput, match="rotate_secret"):
        webhooks.signature(config, b"{}")


# --- health ----------------------------------------------------------------------------


def test_the_10th_consecutive_failure_disables_the_webhook(db, ada, make_hook):
    config = make_hook()
    for i in range(10):
        notifications.emit(db, "training.complete", [ada], {"run": i}, now=T0)
    db.commit()
    fail_once(db, 9, T0)
    db.refresh(config)
    assert config.is_active and config.consecutive_failures == 9
    fail_once(db, 1, T0)
    db.refresh(config)
    assert not config.is_active and config.consecutive_failures == 10
    assert config.disabled_reason.startswith("disabled after 10 consecutive failed deliveries")
    assert "HTTP 503" in config.disabled_reason
    later = T0 + timedelta(days=1)
    assert deliveries.claim(db, "webhook", "w1", now=later) == []  # held while disabled
    webhooks.enable(db, config)
    db.commit()
    assert config.consecutive_failures == 0 and config.disabled_reason is None
    assert len(deliveries.claim(db, "webhook", "w1", limit=20, now=later)) == 10


def test_a_success_between_failures_starts_the_count_again(db, ada, make_hook):
    config = make_hook()
    for i in range(12):
        notifications.emit(db, "training.complete", [ada], {"run": i}, now=T0)
    db.commit()
    fail_once(db, 9, T0)
    [ok] = deliveries.claim(db, "webhook", "w1", limit=1, now=T0)
    deliveries.succeed(db, ok, "w1", now=T0)
    db.commit()
    fail_once(db, 2, T0)
    db.refresh(config)
    assert config.is_active and config.consecutive_failures == 2


def test_a_test_delivery_goes_out_to_a_disabled_webhook(db, make_hook):
    config = make_hook(events=[])
    webhooks.disable(db, config)
    test = webhooks.send_test(db, config, now=T0)
    db.commit()
    assert (test.event_type, test.status, test.webhook_url) == ("test.webhook", "pending", URL)
    assert test.payload["event"] == "test.webhook" and test.payload["data"]["message"]
    [claimed] = deliveries.claim(db, "webhook", "w1", now=T0)
    assert claimed.id == test.id


# --- statistics ------------------------------------------------------------------------


def test_stats_count_deliveries_rate_last_times_and_p95(db, ada, make_hook):
    config = make_hook()
    for i in range(24):
        notifications.emit(db, "training.complete", [ada], {"run": i}, now=T0)
    db.commit()
    claimed = deliveries.claim(db, "webhook", "w1", limit=22, now=T0)
    for i, delivery in enumerate(claimed[:20]):
        latency = float(20 - i)  # 20 .. 1 ms
        deliveries.succeed(
            db, delivery, "w1", response_time_ms=latency, now=T0 + timedelta(seconds=i)
        )
    for i, delivery in enumerate(claimed[20:]):
        deliveries.fail(
            db, delivery, "w1", "timed out", status="timeout", retry=False,
            now=T0 + timedelta(minutes=1, seconds=i),
        )  # fmt: skip
    db.commit()
    stats = webhooks.stats(db, config)
    assert stats.deliveries == 24
    assert stats.by_status == {"sent": 20, "timeout": 2, "pending": 2}
    assert stats.success_rate == pytest.approx(20 / 22)
    assert stats.last_success_at == T0 + timedelta(seconds=19)
    assert stats.last_failure_at == T0 + timedelta(minutes=1, seconds=1)
    assert stats.p95_latency_ms == 19.0  # nearest rank: the 19th of 20


def test_stats_of_a_new_webhook(db, make_hook):
    stats = webhooks.stats(db, make_hook())
    assert (stats.deliveries, stats.success_rate, stats.p95_latency_ms) == (0, None, None)
    assert stats.last_success_at is None and stats.last_failure_at is None


def test_rotating_the_instance_key_keeps_the_signing_secrets(db, make_hook, monkeypatch):
    from cryptography.fernet import Fernet

    from pfd_db.config import get_settings

    config = make_hook()
    before = webhooks.signature(config, b"{}", now=T0)
    old = os.environ["PFD_DB_SECRET_KEY"]
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("PFD_DB_SECRET_KEY", f"{new},{old}")
    get_settings.cache_clear()
    try:
        assert webhooks.reencrypt_secrets(db) == (1, 1, config.id, [config.id])
        assert webhooks.reencrypt_secrets(db) == (1, 0, config.id, [])  # done already
        db.commit()
        monkeypatch.setenv("PFD_DB_SECRET_KEY", new)
        get_settings.cache_clear()
        assert webhooks.signature(config, b"{}", now=T0) == before
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
