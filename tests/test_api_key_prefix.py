"""A 64-bit API-key prefix that another key already has is drawn again inside
``api_keys.issue``: never an ``IntegrityError``. The prefix's uniqueness takes the
one path every unique key takes (``writes.add_unique``)."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict
from pfd_db.models import APIKey, User
from pfd_db.store import writes
from pfd_db.store.identity import api_keys


@pytest.fixture
def owner(db) -> User:
    account = User(username="prefixer", email="prefixer@example.com")
    db.add(account)
    db.commit()
    return account


def scripted_prefixes(monkeypatch: pytest.MonkeyPatch, *prefixes: str) -> list[str]:
    """Make the prefix generator return ``prefixes`` in order; returns what it handed out."""
    queue, handed = list(prefixes), []
    real = secrets.token_hex

    def token_hex(nbytes: int | None = None) -> str:
        if nbytes == api_keys.PREFIX_BYTES and queue:
            handed.append(queue.pop(0))
            return handed[-1]
        return real(nbytes)

    monkeypatch.setattr(api_keys.secrets, "token_hex", token_hex)
    return handed


def test_a_prefix_collision_is_drawn_again(db, owner, plaintexts, monkeypatch):
    taken, fresh = "00000000deadbeef", "00000000cafef00d"
    first, record = api_keys.issue(db, owner, "first")
    db.flush()
    record.prefix = taken  # the key the generator will collide with
    db.commit()
    handed = scripted_prefixes(monkeypatch, taken, taken, fresh)
    plaintext, second = api_keys.issue(db, owner, "second")
    plaintexts.extend([first, plaintext])
    db.commit()
    assert handed == [taken, taken, fresh]
    assert second.prefix == fresh and plaintext.startswith(f"pfd_{fresh}_")
    assert api_keys.verify(db, plaintext).id == second.id
    assert db.scalar(select(func.count()).select_from(APIKey)) == 2
    assert second in owner.api_keys


def test_only_collisions_every_time_is_a_conflict_writing_nothing(db, owner, monkeypatch):
    taken = "0123456789abcdef"
    _first, record = api_keys.issue(db, owner, "first")
    db.flush()
    record.prefix = taken
    db.commit()
    handed = scripted_prefixes(monkeypatch, *[taken] * api_keys.PREFIX_ATTEMPTS)
    with pytest.raises(Conflict, match=f"no free API-key prefix after {api_keys.PREFIX_ATTEMPTS}"):
        api_keys.issue(db, owner, "second")
    assert len(handed) == api_keys.PREFIX_ATTEMPTS
    db.rollback()
    assert db.scalar(select(func.count()).select_from(APIKey)) == 1


def test_a_prefix_a_concurrent_writer_takes_first_is_drawn_again(engine, db, owner, monkeypatch):
    """The other writer's key is not visible when ``issue`` checks the prefix; the
    unique index refuses the insert once it commits, and ``issue`` draws again."""
    taken, fresh = "0000000000000bad", "0000000000000f00"
    handed = scripted_prefixes(monkeypatch, taken, fresh)
    outcome: dict[str, object] = {}
    checked = threading.Event()
    real_refuse = writes._refuse_taken  # add_unique's check, before and after the insert
    answers: list[tuple[str, bool]] = []

    def refuse_taken(session, keys, cause=None):
        [(key, _message)] = keys
        [prefix] = key.values()
        try:
            real_refuse(session, keys, cause)
        except Conflict:
            answers.append((prefix, True))
            raise
        else:
            answers.append((prefix, False))
        finally:
            checked.set()

    monkeypatch.setattr(writes, "_refuse_taken", refuse_taken)
    with Session(engine) as other:
        other.add(APIKey(user_id=owner.id, name="first", prefix=taken, key_hash="0" * 64))
        other.flush()  # holds the prefix, not yet committed

        def issue_second() -> None:
            with Session(engine) as session:
                try:
                    _plaintext, record = api_keys.issue(session, owner.id, "second")
                    session.commit()
                    outcome["prefix"] = record.prefix
                except Exception as exc:
                    outcome["error"] = exc

        worker = threading.Thread(target=issue_second)
        worker.start()
        assert checked.wait(10)
        time.sleep(0.3)  # the worker is now inserting, or waiting to
        other.commit()
    worker.join(30)
    assert outcome == {"prefix": fresh}
    assert handed == [taken, fresh]
    # free when checked, refused by the index, then seen taken: the retry path
    assert answers == [(taken, False), (taken, True), (fresh, False)]
    prefixes = db.scalars(select(APIKey.prefix).order_by(APIKey.prefix)).all()
    assert prefixes == [taken, fresh]
