"""API keys: issue, verify, revoke, scopes, usage and the rate limit, on both dialects."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from pfd_db.crypto import sha256_hex
from pfd_db.errors import AuthenticationFailed, InvalidInput, NotFound
from pfd_db.models import APIKey, APIUsage, User
from pfd_db.store.identity import api_keys
from pfd_db.store.ops import audit
from pfd_db.types import utcnow
from probes import executions, statements
from racing import race

KEY_FORMAT = re.compile(r"pfd_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@pytest.fixture
def user(db):
    return make_user(db, "ada")


@pytest.fixture
def issue(db, user, plaintexts):
    """Issue a key for ``user`` (committed), remembering its plaintext for the leak guard."""

    def issue_key(owner=None, **options):
        options.setdefault("name", "ci")
        plaintext, record = api_keys.issue(db, owner or user, **options)
        plaintexts.extend([plaintext, secret_of(plaintext)])
        db.commit()
        return plaintext, record

    return issue_key


def make_user(db, username: str) -> User:
    account = User(username=username, email=f"{username}@example.com")
    db.add(account)
    db.commit()
    return account


def secret_of(plaintext: str) -> str:
    return plaintext.split("_", 2)[2]


def refused(db, presented, **kwargs) -> str:
    """Why ``verify`` refuses ``presented`` (it must)."""
    with pytest.raises(AuthenticationFailed, match=r"^authentication failed$") as refusal:
        api_keys.verify(db, presented, **kwargs)
    return refusal.value.reason


def with_char_changed(text: str, index: int) -> str:
    """``text`` with the character at ``index`` swapped for another allowed one."""
    replacement = "b" if text[index] == "a" else "a"
    return text[:index] + replacement + text[index + 1 :]


def stored_row(engine, key: APIKey):
    with engine.connect() as conn:
        return conn.execute(select(APIKey.__table__).where(APIKey.id == key.id)).one()


def count_keys(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(APIKey))


# --- issue -----------------------------------------------------------------------


def test_a_key_reads_pfd_prefix_secret_with_32_random_bytes(issue):
    plaintext, record = issue()
    shape = KEY_FORMAT.fullmatch(plaintext)
    assert shape is not None
    assert shape[1] == record.prefix
    assert len(base64.urlsafe_b64decode(shape[2] + "=")) == 32


def test_each_key_gets_its_own_prefix_and_secret(issue):
    keys = [issue(name=f"k{i}") for i in range(5)]
    assert len({record.prefix for _, record in keys}) == 5
    assert len({secret_of(plaintext) for plaintext, _ in keys}) == 5


def test_only_the_sha256_of_the_whole_key_is_stored(engine, issue):
    plaintext, record = issue()
    row = stored_row(engine, record)
    assert row.key_hash == sha256_hex(plaintext)
    assert row.prefix == record.prefix
    # the plaintexts fixture fails the test if the key or its secret is stored anywhere


def test_issue_stores_name_scopes_rate_limit_and_expiry(engine, issue, user):
    expiry = utcnow() + timedelta(days=30)
    _, record = issue(name="  deploy  ", scopes=["write", "read"], rate_limit=50, expires_at=expiry)
    row = stored_row(engine, record)
    assert (row.user_id, row.name, row.scopes, row.rate_limit) == (
        user.id,
        "deploy",
        ["write", "read"],
        50,
    )
    assert record.expires_at == expiry
    assert row.is_active and row.revoked_at is None and row.last_used_at is None


def test_issue_defaults_to_read_scope_and_1000_requests_an_hour(issue):
    _, record = issue()
    assert (record.scopes, record.rate_limit, record.expires_at) == (["read"], 1000, None)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["read", "root"]}, "scopes"),
        ({"scopes": "read"}, "scopes"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"rate_limit": 1.5}, "rate_limit"),
        ({"expires_at": datetime(2999, 1, 1)}, "expires_at"),  # naive
        ({"expires_at": datetime(2000, 1, 1, tzinfo=UTC)}, "expires_at"),
        ({"expires_at": "2999-01-01"}, "expires_at"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(engine, db, user, options, field):
    options.setdefault("name", "ci")
    with statements(engine) as sent, pytest.raises(InvalidInput, match=rf"^{field}\b"):
        api_keys.issue(db, user, **options)
    assert sent == []
    db.rollback()
    assert count_keys(engine) == 0


# --- verify ------------------------------------------------------------------------


def test_verify_returns_the_key_of_a_presented_plaintext(db, issue, user):
    plaintext, record = issue()
    found = api_keys.verify(db, plaintext)
    assert found is record
    assert found.user is user


def test_verify_finds_the_key_from_a_fresh_session(engine, issue):
    from sqlalchemy.orm import Session

    plaintext, record = issue()
    with Session(engine) as other:
        found = api_keys.verify(other, plaintext)
        assert found.id == record.id


@pytest.mark.parametrize("where", ["secret start", "secret end", "prefix start", "prefix end"])
def test_a_key_differing_in_one_character_is_refused(db, issue, where):
    plaintext, _ = issue()
    index = {"secret start": 21, "secret end": -1, "prefix start": 4, "prefix end": 19}[where]
    forged = with_char_changed(plaintext, index % len(plaintext))
    assert forged != plaintext and len(forged) == len(plaintext)
    assert refused(db, forged) == ("unknown key" if where.startswith("prefix") else "wrong secret")


def test_the_secret_of_one_key_under_the_prefix_of_another_is_refused(db, issue):
    first, _ = issue(name="one")
    _, other = issue(name="two")
    assert refused(db, f"pfd_{other.prefix}_{secret_of(first)}") == "wrong secret"


def test_an_expired_key_is_refused(db, issue):
    expiry = utcnow() + timedelta(hours=1)
    plaintext, record = issue(expires_at=expiry)
    assert api_keys.verify(db, plaintext, now=expiry - timedelta(seconds=1)) is record
    assert refused(db, plaintext, now=expiry) == "expired"
    assert refused(db, plaintext, now=expiry + timedelta(days=1)) == "expired"


def test_a_revoked_key_is_refused(db, issue):
    plaintext, record = issue()
    api_keys.revoke(db, record)
    db.commit()
    assert refused(db, plaintext) == "revoked"


def test_an_inactive_key_is_refused(db, issue):
    plaintext, record = issue()
    record.is_active = False
    db.commit()
    assert refused(db, plaintext) == "inactive key"


def test_the_key_of_an_inactive_user_is_refused(db, issue, user):
    plaintext, _ = issue()
    user.is_active = False
    db.commit()
    assert refused(db, plaintext) == "inactive user"


def test_a_revocation_by_another_writer_is_seen_despite_a_loaded_copy(engine, db, issue):
    plaintext, record = issue()
    assert api_keys.verify(db, plaintext) is record
    db.commit()
    with engine.begin() as conn:
        conn.execute(update(APIKey).where(APIKey.id == record.id).values(revoked_at=utcnow()))
    assert refused(db, plaintext) == "revoked"


def test_a_refused_key_is_not_touched(engine, db, issue):
    plaintext, record = issue()
    api_keys.revoke(db, record)
    db.commit()
    refused(db, plaintext)
    db.commit()
    assert stored_row(engine, record).last_used_at is None


MALFORMED = [
    "",
    "pfd_",
    "pfd__",
    "pfd_0123456789abcdef_",
    "pfd_0123456789abcdef_short",
    "not a key at all",
]


def malformed_variants(plaintext: str) -> list[object]:
    prefix, secret = plaintext[4:20], secret_of(plaintext)
    return [
        *MALFORMED,
        plaintext + "x",
        plaintext[:-1],
        plaintext + "\n",
        " " + plaintext[1:],
        "PFD" + plaintext[3:],
        f"pfd_{prefix.upper()}_{secret}",
        f"pfd-{prefix}_{secret}",
        f"pfd_{prefix}-{secret}",
        f"pfd_{prefix}_{secret[:-1]}!",
        f"pfd_{prefix}_{secret[:-1]}é",
        f"pfd_{prefix[:-1]}_{secret}x",
        "x" * len(plaintext),
        f"pfd_{prefix}_{secret[:-1]}\x00",
        f"pfd_{prefix}_{secret[:-1]}\ud800",
        plaintext * 1000,
    ]


def test_malformed_keys_are_refused_without_touching_the_database(engine, db, issue):
    plaintext, _ = issue()
    variants = malformed_variants(plaintext)
    with statements(engine) as sent:
        reasons = [refused(db, variant) for variant in variants]
    assert reasons == ["malformed key"] * len(variants)
    assert sent == []


@pytest.mark.parametrize("presented", [None, 42, b"pfd_", ["pfd_"]])
def test_a_key_that_is_no_string_is_invalid_input(db, issue, presented):
    issue()
    with pytest.raises(InvalidInput, match=r"^key must be a string"):
        api_keys.verify(db, presented)


def test_an_unknown_prefix_takes_the_same_path_as_a_known_one(engine, db, issue, monkeypatch):
    plaintext, _ = issue()
    prefix, secret = plaintext[4:20], secret_of(plaintext)
    wrong_secret = f"pfd_{prefix}_{with_char_changed(secret, 0)}"
    unknown_prefix = f"pfd_{with_char_changed(prefix, 0)}_{secret}"
    hashed = []
    monkeypatch.setattr(
        api_keys, "sha256_hex", lambda text: hashed.append(text) or sha256_hex(text)
    )
    compared = []
    real_compare = api_keys.hmac.compare_digest
    monkeypatch.setattr(
        api_keys.hmac, "compare_digest", lambda a, b: compared.append(len(b)) or real_compare(a, b)
    )
    db.connection()  # begin outside the count (as a request's session would have)
    paths = []
    for presented, reason in ((wrong_secret, "wrong secret"), (unknown_prefix, "unknown key")):
        hashed.clear()
        compared.clear()
        with executions(engine) as sent:
            assert refused(db, presented) == reason
        paths.append(([s for s, _ in sent], [p for _, p in sent], list(hashed), list(compared)))
    (known_sql, known_params, known_hashed, known_compared) = paths[0]
    (unknown_sql, unknown_params, unknown_hashed, unknown_compared) = paths[1]
    assert known_sql == unknown_sql and len(known_sql) == 1  # the same one indexed lookup
    assert len(known_params) == len(unknown_params)
    assert known_hashed == [wrong_secret] and unknown_hashed == [unknown_prefix]  # one SHA-256
    assert known_compared == unknown_compared == [64]  # one comparison with a stored-size hash


def test_verify_of_a_recently_used_key_is_a_lookup_by_prefix_then_one_by_id(engine, db, issue):
    plaintext, record = issue()
    api_keys.verify(db, plaintext)
    db.commit()
    db.connection()  # begin the transaction outside the count
    with executions(engine) as sent:
        assert api_keys.verify(db, plaintext) is record
    assert [statement.lstrip().upper()[:6] for statement, _ in sent] == ["SELECT", "SELECT"]
    by_prefix, by_id = (params for _, params in sent)
    assert record.prefix in str(by_prefix) and str(record.id) in str(by_id)


def test_last_used_at_is_written_at_most_once_a_minute(engine, db, issue):
    plaintext, record = issue()
    start = utcnow()

    api_keys.verify(db, plaintext, now=start)
    db.commit()
    assert stored_row(engine, record).last_used_at == start

    with statements(engine) as sent:
        api_keys.verify(db, plaintext, now=start + timedelta(seconds=59))
        db.commit()
    assert not [s for s in sent if s.lstrip().upper().startswith("UPDATE")]
    assert stored_row(engine, record).last_used_at == start

    later = start + timedelta(seconds=61)
    api_keys.verify(db, plaintext, now=later)
    db.commit()
    assert stored_row(engine, record).last_used_at == later


# --- scopes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "asked", "granted"),
    [
        (["read"], "read", True),
        (["read"], "write", False),
        (["read"], "admin", False),
        (["write"], "read", True),
        (["write"], "write", True),
        (["write"], "admin", False),
        (["admin"], "read", True),
        (["admin"], "write", True),
        (["admin"], "admin", True),
        (["read", "write"], "write", True),
        (["admin"], "delete", False),
        (["admin"], "", False),
    ],
)
def test_admin_implies_write_implies_read(held, asked, granted):
    assert api_keys.has_scope(APIKey(scopes=held), asked) is granted


# --- usage and rate limit --------------------------------------------------------------


def test_record_usage_stores_one_request(engine, db, issue):
    _, record = issue()
    moment = utcnow()
    usage = api_keys.record_usage(db, record, "/api/experiments", "get", 200, 12, now=moment)
    db.commit()
    with engine.connect() as conn:
        row = conn.execute(select(APIUsage.__table__)).one()
    assert (row.api_key_id, row.endpoint, row.method, row.status_code, row.response_time_ms) == (
        record.id,
        "/api/experiments",
        "GET",
        200,
        12,
    )
    assert row.timestamp == moment == usage.timestamp


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (("", "GET", 200, 1), "endpoint"),
        (("/x" * 200, "GET", 200, 1), "endpoint"),
        (("/x", "", 200, 1), "method"),
        (("/x", "SUPERLONGVERB", 200, 1), "method"),
        (("/x", "GET", 42, 1), "status_code"),
        (("/x", "GET", 200, -1), "ms"),
    ],
)
def test_record_usage_refuses_bad_input_naming_the_field(db, issue, arguments, field):
    _, record = issue()
    with pytest.raises(InvalidInput, match=rf"^{field}\b"):
        api_keys.record_usage(db, record, *arguments)


def test_the_rate_limit_counts_only_this_keys_requests_of_the_last_hour(db, issue):
    _, limited = issue(name="limited", rate_limit=5)
    _, neighbour = issue(name="neighbour")
    now = utcnow()
    for age in (timedelta(minutes=1), timedelta(minutes=59)):
        api_keys.record_usage(db, limited, "/x", "GET", 200, 1, now=now - age)
    for age in (timedelta(hours=1), timedelta(hours=2)):  # outside the window
        api_keys.record_usage(db, limited, "/x", "GET", 200, 1, now=now - age)
    for _ in range(3):
        api_keys.record_usage(db, neighbour, "/x", "GET", 200, 1, now=now)
    db.commit()
    assert api_keys.check_rate_limit(db, limited, now=now) == 3
    assert api_keys.check_rate_limit(db, neighbour, now=now) == 997
    assert api_keys.check_rate_limit(db, limited, now=now + timedelta(hours=2)) == 5


def test_the_rate_limit_never_goes_below_zero(db, issue):
    _, record = issue(rate_limit=2)
    now = utcnow()
    for _ in range(4):
        api_keys.record_usage(db, record, "/x", "POST", 429, None, now=now)
    assert api_keys.check_rate_limit(db, record, now=now) == 0


# --- revoke, get_key, list_keys ------------------------------------------------------------


def test_revoke_turns_the_key_off_and_is_idempotent(engine, db, issue):
    _, record = issue()
    api_keys.revoke(db, record)
    db.commit()
    first = stored_row(engine, record)
    assert not first.is_active and first.revoked_at is not None
    assert api_keys.revoke(db, record) is record
    db.commit()
    assert stored_row(engine, record).revoked_at == first.revoked_at


def revoke_at_once(key_id: int, engine: Engine, index: int, ready) -> str:
    """Revoke the key in a session of this worker's own; the ``revoked_at`` it sees."""
    with Session(engine, expire_on_commit=False) as own:
        key = own.get(APIKey, key_id)
        own.commit()
        ready()
        revoked = api_keys.revoke(own, key)
        own.commit()
        return revoked.revoked_at.isoformat()


def test_a_key_revoked_by_several_workers_at_once_is_revoked_once(
    dialect, engine, db_url, db, issue
):
    _, record = issue()
    seen = race(dialect, engine, db_url, 4, partial(revoke_at_once, record.id))
    stored = stored_row(engine, record)
    assert not stored.is_active
    assert seen == [stored.revoked_at.isoformat()] * 4  # the first revocation's time, kept
    assert len(audit.entries(db, action="api_key.revoked")) == 1


def test_get_key_by_id_or_prefix(db, issue):
    _, record = issue()
    assert api_keys.get_key(db, record.id) is record
    assert api_keys.get_key(db, str(record.id)) is record
    assert api_keys.get_key(db, record.prefix) is record
    assert api_keys.get_key(db, f"pfd_{record.prefix}") is record


@pytest.mark.parametrize("missing", [999_999, "999999", "0123456789abcdef"])
def test_get_key_of_an_unknown_key_raises_not_found_naming_it(db, issue, missing):
    issue()
    with pytest.raises(NotFound, match=re.escape(repr(missing))):
        api_keys.get_key(db, missing)


def test_list_keys_gives_the_users_keys_newest_first(db, issue):
    _, first = issue(name="first")
    _, second = issue(name="second")
    api_keys.revoke(db, first)
    other = make_user(db, "grace")
    issue(owner=other, name="theirs")
    assert [k.name for k in api_keys.list_keys(db, first.user)] == ["second", "first"]
    assert second in api_keys.list_keys(db, first.user)
    assert [k.name for k in api_keys.list_keys(db, other)] == ["theirs"]
