"""E-mail digests (pfd_db.store.digests) on both dialects: when they fall due, what is
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
from pfd_db.store import digests, notifications, users
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
