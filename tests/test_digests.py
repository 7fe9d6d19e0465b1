"""E-mail digests (pfd_db.store.notify.digests) on both dialects: when they fall due, what is
due per user, and marking entries sent all or none, so racing digest workers never
send one entry twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pfd_db.config import get_settings
from pfd_db.errors import Conflict, InvalidInput, NotFound
from pfd_db.models import EmailDigestQueue
from pfd_db.store.identity import users
from pfd_db.store.notify import digests, notifications
from racing import race

WEDNESDAY = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)
MONDAY = datetime(2026, 6, 1, tzinfo=UTC)
WORKERS = {"postgresql": 8, "sqlite": 4}


@pytest.fixture
def digest_hour(monkeypatch):
    def change(hour: int) -> None:
        monkeypatch.setenv("PFD_DB_DIGEST_HOUR", str(hour))
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


def digest_user(db, name: str, frequency: str = "digest_daily"):
    user = users.create_user(db, name, f"{name}@example.com", "a long passphrase")
    notifications.set_preference(db, user, "training.complete", email_frequency=frequency)
    return user


def entries_of(db, user) -> list[EmailDigestQueue]:
    return list(
        db.scalars(
            select(EmailDigestQueue)
            .where(EmailDigestQueue.user_id == user.id)
            .order_by(EmailDigestQueue.id)
        )
    )


def included(db) -> dict[int, bool]:
    db.expire_all()
    return {e.id: e.included_in_digest for e in db.scalars(select(EmailDigestQueue))}


# --- scheduling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frequency", "now", "expected"),
    [
        ("digest_daily", MONDAY.replace(hour=7, minute=59), MONDAY.replace(hour=8)),
        ("digest_daily", MONDAY.replace(hour=8), MONDAY.replace(hour=8) + timedelta(days=1)),
        ("digest_daily", MONDAY.replace(hour=23), MONDAY.replace(hour=8) + timedelta(days=1)),
        ("digest_weekly", MONDAY.replace(hour=7), MONDAY.replace(hour=8)),
        ("digest_weekly", MONDAY.replace(hour=8), MONDAY.replace(hour=8) + timedelta(days=7)),
        ("digest_weekly", WEDNESDAY, MONDAY.replace(hour=8) + timedelta(days=7)),
        ("digest_weekly", MONDAY - timedelta(seconds=1), MONDAY.replace(hour=8)),
    ],
)
def test_the_next_digest_time(frequency, now, expected):
    assert digests.next_digest_at(frequency, now) == expected


def test_the_digest_hour_is_a_setting(digest_hour):
    digest_hour(18)
    assert digests.next_digest_at("digest_daily", WEDNESDAY) == WEDNESDAY.replace(hour=18)


def test_an_immediate_preference_has_no_digest():
    with pytest.raises(InvalidInput, match="digest"):
        digests.next_digest_at("immediate", WEDNESDAY)


# --- what is due -----------------------------------------------------------------------


def test_due_groups_the_entries_whose_time_has_come_by_user(db):
    ada, bob = digest_user(db, "ada"), digest_user(db, "bob", "digest_weekly")
    quiet = digest_user(db, "quiet")
    for run in range(3):
        notifications.emit(db, "training.complete", [ada, bob, quiet], {"run": run}, now=WEDNESDAY)
    users.deactivate(db, quiet)
    db.commit()
    thursday_digest = WEDNESDAY.replace(hour=8) + timedelta(days=1)
    due = digests.due(db, thursday_digest)
    assert [(d.user_id, d.email) for d in due] == [(ada.id, "ada@example.com")]
    assert [e.event_data["run"] for e in due[0].entries] == [0, 1, 2]
    monday_digest = MONDAY.replace(hour=8) + timedelta(days=7)
    assert [d.user_id for d in digests.due(db, monday_digest)] == [ada.id, bob.id]
    assert digests.due(db, WEDNESDAY) == []


def test_mark_sent_marks_exactly_the_entries_given(db):
    ada = digest_user(db, "ada")
    for run in range(3):
        notifications.emit(db, "training.complete", [ada], {"run": run}, now=WEDNESDAY)
    db.commit()
    first, second, third = entries_of(db, ada)
    assert digests.mark_sent(db, ada, [second, first.id]) == sorted([first.id, second.id])
    db.commit()
    assert included(db) == {first.id: True, second.id: True, third.id: False}
    [left] = digests.due(db, WEDNESDAY + timedelta(days=1))
    assert [e.id for e in left.entries] == [third.id]


def test_marking_is_all_or_nothing(db):
    ada, bob = digest_user(db, "ada"), digest_user(db, "bob")
    for run in range(2):
        notifications.emit(db, "training.complete", [ada, bob], {"run": run}, now=WEDNESDAY)
    db.commit()
    first, second = entries_of(db, ada)
    [bobs, _] = entries_of(db, bob)
    digests.mark_sent(db, ada, [first])
    db.commit()
    before = included(db)
    with pytest.raises(Conflict, match="1 of the 2"):
        digests.mark_sent(db, ada, [first, second])  # first was sent already
    with pytest.raises(Conflict):
        digests.mark_sent(db, ada, [second, bobs])  # not all ada's
    db.commit()  # the caller's transaction is still usable
    assert included(db) == before
    with pytest.raises(InvalidInput, match="entries"):
        digests.mark_sent(db, ada, [])
    with pytest.raises(NotFound):
        digests.mark_sent(db, ada, [10_000])


def send_digests(engine: Engine, index: int, ready) -> list[int]:
    """A digest worker: read what is due, mark each user's digest, keep what it won."""
    sent: list[int] = []
    ready()
    with Session(engine, expire_on_commit=False) as session:
        for digest in digests.due(session, WEDNESDAY + timedelta(days=1)):
            try:
                sent += digests.mark_sent(session, digest.user_id, digest.entries)
                session.commit()
            except Conflict:
                session.rollback()
    return sent


def test_racing_digest_workers_never_send_an_entry_twice(db, engine, db_url, dialect):
    people = [digest_user(db, f"user{i}") for i in range(12)]
    for run in range(3):
        notifications.emit(db, "training.complete", people, {"run": run}, now=WEDNESDAY)
    db.commit()
    every = sorted(e.id for e in db.scalars(select(EmailDigestQueue)))
    db.close()
    sent = race(dialect, engine, db_url, WORKERS[dialect], send_digests)
    assert sorted(entry for worker in sent for entry in worker) == every
    assert set(included(db).values()) == {True}


# --- what an admin page reads ------------------------------------------------------------


@pytest.fixture
def queued(db):
    """ada (daily): 3 training.complete and 1 training.failed entries, the first
    sent; bob (weekly): 2; cyd (daily, then immediate): 1; dee: no entries."""
    ada = digest_user(db, "ada")
    bob = digest_user(db, "bob", "digest_weekly")
    cy = digest_user(db, "cyd")
    notifications.set_preference(db, ada, "training.failed", email_frequency="digest_daily")
    digest_user(db, "dee")
    for run in range(3):
        at = WEDNESDAY + timedelta(days=run)
        notifications.emit(db, "training.complete", [ada, bob], {"run": run}, now=at)
    notifications.emit(db, "training.failed", [ada], {"run": 9}, now=WEDNESDAY)
    notifications.emit(db, "training.complete", [cy], {"run": 7}, now=WEDNESDAY)
    notifications.set_preference(db, cy, "training.complete", email_frequency="immediate")
    db.commit()
    [bobs_last] = [e for e in entries_of(db, bob) if e.event_data["run"] == 2]
    db.delete(bobs_last)  # bob: 2 entries
    digests.mark_sent(db, ada, [entries_of(db, ada)[0]])
    db.commit()
    return ada, bob, cy


def test_queue_stats_count_pending_sent_and_due_per_frequency(db, queued):
    stats = digests.queue_stats(db, WEDNESDAY + timedelta(days=1, hours=1))
    assert (stats.pending, stats.sent) == (6, 1)
    assert stats.by_frequency == {
        "digest_daily": digests.FrequencyCounts(pending=3, sent=1),
        "digest_weekly": digests.FrequencyCounts(pending=2, sent=0),
        "immediate": digests.FrequencyCounts(pending=1, sent=0),  # cyd changed since
    }
    assert stats.due == 2  # ada's failed run 9, cy's run 7: Thursday 08:00
    assert digests.queue_stats(db, WEDNESDAY).due == 0
    later = digests.queue_stats(db, WEDNESDAY + timedelta(days=30))
    assert (later.due, later.pending, later.sent) == (6, 6, 1)
    thursday = WEDNESDAY.replace(hour=8) + timedelta(days=1)  # ada's sent entry's digest
    assert digests.queue_stats(db, sent_since=thursday).sent == 1
    after = digests.queue_stats(db, sent_since=thursday + timedelta(seconds=1))
    assert (after.sent, after.pending, after.by_frequency["digest_daily"].sent) == (0, 6, 0)
    assert digests.queue_stats(db, WEDNESDAY + timedelta(days=40)).sent == 0  # 30 days back


def test_pending_entries_are_filtered_and_paged_earliest_first(db, queued):
    ada, bob, _cy = queued
    every = digests.pending(db)
    assert [q.entry.scheduled_for for q in every] == sorted(q.entry.scheduled_for for q in every)
    assert len(every) == 6 and not any(q.entry.included_in_digest for q in every)
    runs = [(q.username, q.entry.event_data["run"]) for q in every]
    assert runs[:2] == [("ada", 9), ("cyd", 7)]  # both Thursday 08:00: then by id
    assert {(q.username, q.email, q.frequency) for q in every if q.username == "bob"} == {
        ("bob", "bob@example.com", "digest_weekly")
    }
    assert [q.entry.event_data["run"] for q in digests.pending(db, user=ada)] == [9, 1, 2]
    assert [q.username for q in digests.pending(db, frequency="digest_weekly")] == ["bob"] * 2
    failed = digests.pending(db, event_type="training.failed")
    assert [(q.username, q.entry.event_type) for q in failed] == [("ada", "training.failed")]
    assert digests.pending(db, user=bob.id, frequency="digest_daily") == []
    thursday = WEDNESDAY.replace(hour=8) + timedelta(days=1)
    overdue = digests.pending(db, until=thursday + timedelta(seconds=1))
    assert sorted(q.username for q in overdue) == ["ada", "cyd"]
    assert len(digests.pending(db, since=thursday + timedelta(days=1))) == 4
    seen, page = [], digests.pending(db, limit=4)
    while page:
        seen += [q.entry.id for q in page]
        page = digests.pending(db, limit=4, after_id=page[-1].entry.id)
    assert seen == [q.entry.id for q in every]
    assert digests.pending(db, after_id=10**9) == []


def test_sent_history_is_newest_first_and_paged(db, queued):
    ada, bob, _cy = queued
    for user in (ada, bob):
        digests.mark_sent(db, user, [q.entry for q in digests.pending(db, user=user)])
    db.commit()
    history = digests.sent_history(db)
    assert len(history) == 6 and all(e.included_in_digest for e in history)
    keys = [(e.scheduled_for, e.id) for e in history]
    assert keys == sorted(keys, reverse=True)
    assert [e.event_data["run"] for e in digests.sent_history(db, user=bob)] == [1, 0]
    assert len(digests.sent_history(db, event_type="training.failed")) == 1
    first = digests.sent_history(db, limit=3)
    rest = digests.sent_history(db, limit=10, before_id=first[-1].id)
    assert [e.id for e in first + rest] == [e.id for e in history]
    monday = MONDAY.replace(hour=8) + timedelta(days=7)
    assert {e.user_id for e in digests.sent_history(db, since=monday)} == {bob.id}


def test_users_with_entries_by_id_with_their_counts(db, queued):
    ada, bob, cy = queued
    found = digests.users_with_entries(db)
    assert [(u.user_id, u.username, u.email, u.pending, u.sent) for u in found] == [
        (ada.id, "ada", "ada@example.com", 3, 1),
        (bob.id, "bob", "bob@example.com", 2, 0),
        (cy.id, "cyd", "cyd@example.com", 1, 0),
    ]  # dee has none
    assert [u.user_id for u in digests.users_with_entries(db, limit=2)] == [ada.id, bob.id]
    assert [u.user_id for u in digests.users_with_entries(db, after_id=bob.id)] == [cy.id]
    digests.mark_sent(db, cy, [q.entry for q in digests.pending(db, user=cy)])
    db.commit()
    assert [u.username for u in digests.users_with_entries(db, pending_only=True)] == [
        "ada", "bob",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "arguments", "message"),
    [
        (digests.pending, {"limit": 0}, "limit"),
        (digests.pending, {"limit": 1001}, "limit"),
        (digests.pending, {"frequency": "hourly"}, "frequency"),
        (digests.pending, {"event_type": "nope"}, "event_type"),
        (digests.pending, {"user": "ada"}, "user"),
        (digests.pending, {"after_id": -1}, "after_id"),
        (digests.pending, {"since": datetime(2026, 1, 1)}, "since"),
        (digests.pending, {"since": WEDNESDAY, "until": WEDNESDAY}, "after"),
        (digests.sent_history, {"before_id": 0}, "before_id"),
        (digests.sent_history, {"before_id": 2**31}, "before_id"),
        (digests.pending, {"after_id": 2**31}, "after_id"),
        (digests.users_with_entries, {"after_id": 2**31}, "after_id"),
        (digests.sent_history, {"since": "yesterday"}, "since"),
        (digests.users_with_entries, {"pending_only": 1}, "pending_only"),
        (digests.users_with_entries, {"after_id": "x"}, "after_id"),
        (digests.queue_stats, {"now": datetime(2026, 1, 1)}, "timezone"),
        (digests.queue_stats, {"sent_since": datetime(2026, 1, 1)}, "sent_since"),
    ],
)
def test_the_admin_reads_refuse_bad_arguments(db, call, arguments, message):
    with pytest.raises(InvalidInput, match=message):
        call(db, **arguments)
