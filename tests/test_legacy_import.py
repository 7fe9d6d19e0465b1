"""pfd-db import-legacy: an LSTM_PFD dashboard database brought into pfd-db, both dialects."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import bcrypt
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from conftest import find_plaintexts
from legacy_db import (
    ALICE_PASSWORD,
    API_KEY,
    KEY_CREATED,
    PLAINTEXTS,
    SESSION_TOKEN,
    TOTP_SECRET,
    WHEN,
    make_legacy,
)
from pfd_db.cli import app
from pfd_db.crypto import decrypt, sha256_hex
from pfd_db.engine import make_engine
from pfd_db.errors import AuthenticationFailed
from pfd_db.models import (
    APIKey,
    BackupCode,
    Base,
    Experiment,
    ExperimentStatus,
    HPOCampaign,
    NASCampaign,
    Role,
    SessionLog,
    Tag,
    User,
)
from pfd_db.passwords import needs_rehash, verify_password
from pfd_db.store.identity import api_keys, users
from pfd_db.store.ml import search
from pfd_db.target import locate

runner = CliRunner()
# pfd-db's own tables (revision 0010), which no LSTM_PFD database has:
NEWER_TABLES = ["rollup_stale_periods", "rollup_watermarks"]
PARIS_OFFSET_IN_MARCH = 1  # hours: KEY_CREATED is 13:00 in Paris, 12:00 UTC


@pytest.fixture
def legacy(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, dict[str, int]]]:
    """(URL, rows per table) of a filled LSTM_PFD database on the dialect."""
    if dialect == "sqlite":
        path = tmp_path / "lstm_pfd.db"
        yield f"sqlite:///{path}", make_legacy("sqlite", str(path))
        return
    server = request.getfixturevalue("pg_server")
    name = f"lstm_pfd_{uuid.uuid4().hex[:8]}"
    server.create_database(name)
    try:
        yield server.url(name), make_legacy("postgresql", name, lambda: server.connect(name))
    finally:
        server.drop_database(name)


def import_legacy(source: str, target: str, *extra: str):
    return runner.invoke(
        app,
        ["import-legacy", "--from", source, "--url", target, "--source-timezone", "Europe/Paris",
         "--json", *extra],
    )  # fmt: skip


@pytest.fixture(scope="module")
def imported(
    dialect: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[dict[str, object], dict[str, int], str]]:
    """One import per dialect, shared by the tests that look at its result: the
    JSON report, the legacy rows per table and the target URL."""
    where = tmp_path_factory.mktemp("legacy")
    if dialect == "sqlite":
        source, written = (
            f"sqlite:///{where / 'lstm.db'}",
            make_legacy("sqlite", str(where / "lstm.db")),
        )
        result = import_legacy(source, f"sqlite:///{where / 'pfd.db'}")
        assert result.exit_code == 0, result.output
        yield json.loads(result.stdout), written, f"sqlite:///{where / 'pfd.db'}"
        return
    server = request.getfixturevalue("pg_server")
    names = [f"lstm_{uuid.uuid4().hex[:8]}", f"pfd_{uuid.uuid4().hex[:8]}"]
    for name in names:
        server.create_database(name)
    try:
        written = make_legacy("postgresql", names[0], lambda: server.connect(names[0]))
        result = import_legacy(server.url(names[0]), server.url(names[1]))
        assert result.exit_code == 0, result.output
        yield json.loads(result.stdout), written, server.url(names[1])
    finally:
        for name in names:
            server.drop_database(name)


@pytest.fixture
def target(imported) -> Iterator[Session]:
    engine = make_engine(imported[2])
    with Session(engine) as session:
        yield session
    engine.dispose()


def test_every_legacy_row_is_imported_or_skipped_with_a_reason(imported, dialect):
    report, written, _ = imported
    tables = {t["name"]: t for t in report["tables"]}
    assert report["accounted"]
    assert set(tables) == set(Base.metadata.tables)
    assert set(written) == {name for name, t in tables.items() if t["in_source"]}
    assert set(tables) - set(written) == set(NEWER_TABLES)
    for name, count in written.items():
        t = tables[name]
        assert t["read"] == count, name
        assert t["read"] == t["imported"] + sum(t["skipped"].values()), name
    assert tables["backup_codes"]["imported"] == 0
    assert tables["users"]["imported"] == 3
    assert tables["experiments"]["imported"] == 2
    assert tables["api_usage"]["skipped"] == {"timestamp is missing": 1}
    duplicate_epoch = [r for r in tables["training_runs"]["skipped"] if "refused" in r]
    assert len(duplicate_epoch) == 1
    if dialect == "sqlite":  # dangling references, which the legacy SQLite never stopped
        assert tables["experiment_tags"]["skipped"] == {
            "tag_id refers to tags, which does not exist": 1
        }
        assert (
            "experiment_id refers to experiments, which does not exist"
            in (tables["training_runs"]["skipped"])
        )
        assert any("created_by" in c for c in tables["experiments"]["changes"])


def test_secrets_are_converted_and_none_is_left_in_clear(target, imported):
    alice = users.get_by_username(target, "alice")
    assert alice.totp_enabled and decrypt(alice.totp_secret) == TOTP_SECRET
    session_row = target.scalars(select(SessionLog)).one()
    assert session_row.session_token == sha256_hex(SESSION_TOKEN)
    assert target.scalars(select(BackupCode)).all() == []
    key = target.scalars(select(APIKey)).one()
    assert key.name == "legacy: ci (reissue)"
    assert not key.is_active and key.revoked_at is not None
    assert key.prefix != API_KEY[:20]
    assert key.key_hash != sha256_hex(API_KEY)
    with pytest.raises(AuthenticationFailed):
        api_keys.verify(target, API_KEY)
    leaks = find_plaintexts(target.get_bind(), Base.metadata, PLAINTEXTS)
    assert leaks == []


def test_values_are_converted_to_what_pfd_db_stores(target):
    experiment = target.scalars(select(Experiment).where(Experiment.name == "bearing-cnn")).one()
    assert experiment.status is ExperimentStatus.COMPLETED
    assert experiment.created_at == WHEN.replace(tzinfo=UTC)
    campaign = target.scalars(select(HPOCampaign)).one()
    assert campaign.method.value == "grid_search" and campaign.best_experiment_id == 1
    assert target.scalars(select(NASCampaign)).one().best_trial_id == 1
    roles = {u.username: u.role for u in target.scalars(select(User).where(User.id <= 3))}
    assert roles == {"alice": Role.VIEWER, "admin": Role.ADMIN, "bob": Role.VIEWER}
    assert users.get_by_username(target, "bob").email == "bob@example.com"
    key = target.scalars(select(APIKey)).one()
    expected = KEY_CREATED.replace(hour=KEY_CREATED.hour - PARIS_OFFSET_IN_MARCH, tzinfo=UTC)
    assert key.created_at == expected
    counts = {t.name: t.usage_count for t in target.scalars(select(Tag))}
    assert counts == {"baseline": 1, "Red Tag": 0}
    assert target.scalars(select(Tag.color).where(Tag.name == "Red Tag")).one() is None


def test_the_search_index_is_built(target):
    hits = search.search(target, "kurtosis").rows
    assert [hit.experiment.name for hit in hits] == ["bearing-cnn"]


def test_the_legacy_sqlite_file_is_not_changed(tmp_path, fresh_url):
    path = tmp_path / "lstm_pfd.db"
    make_legacy("sqlite", str(path))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    files_before = sorted(p.name for p in tmp_path.iterdir())
    result = import_legacy(f"sqlite:///{path}", fresh_url)
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("lstm")) == [
        n for n in files_before if n.startswith("lstm")
    ]


def test_an_import_into_a_database_holding_data_is_refused(legacy, fresh_url):
    assert runner.invoke(app, ["init", "--url", fresh_url, "--quiet"]).exit_code == 0
    result = import_legacy(legacy[0], fresh_url)
    assert result.exit_code == 2
    assert "--replace" in result.output


def test_a_pfd_db_database_is_not_taken_for_a_legacy_one(tmp_path, fresh_url):
    source = tmp_path / "pfd.db"
    assert runner.invoke(app, ["init", "--url", f"sqlite:///{source}", "--quiet"]).exit_code == 0
    result = import_legacy(f"sqlite:///{source}", fresh_url)
    assert result.exit_code == 2
    assert f"{source} is a pfd-db database" in result.output and "mode=ro" not in result.output


def test_a_bad_time_zone_or_role_is_refused_before_anything_is_written(legacy, fresh_url):
    bad_zone = import_legacy(legacy[0], fresh_url, "--source-timezone", "Mars/Olympus")
    assert bad_zone.exit_code == 2 and "time zone" in bad_zone.output
    bad_role = import_legacy(legacy[0], fresh_url, "--default-role", "emperor")
    assert bad_role.exit_code == 2 and "default_role" in bad_role.output


def test_a_bcrypt_hash_verifies_once_and_asks_to_be_replaced():
    legacy_hash = bcrypt.hashpw(b"old secret", bcrypt.gensalt(rounds=4)).decode()
    assert verify_password(legacy_hash, "old secret")
    assert not verify_password(legacy_hash, "wrong secret")
    assert not verify_password(legacy_hash, "x" * 100)  # bcrypt takes at most 72 bytes
    assert needs_rehash(legacy_hash)
    assert not verify_password("$2b$12$not-a-real-hash", "old secret")


def test_the_import_runs_on_a_legacy_database_without_nas_campaigns(tmp_path, fresh_url):
    """The dashboard's models/__init__ left NAS out: such databases have 25 tables."""
    import sqlite3

    path = tmp_path / "lstm_pfd_25.db"
    make_legacy("sqlite", str(path))
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE nas_trials")
        conn.execute("DROP TABLE nas_campaigns")
    conn.close()
    result = import_legacy(f"sqlite:///{path}", fresh_url)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    missing = [t["name"] for t in report["tables"] if not t["in_source"]]
    assert sorted(missing) == ["nas_campaigns", "nas_trials", *NEWER_TABLES]
    assert report["accounted"]


# The last two change the shared import: they run after the tests above.


def test_a_legacy_user_logs_in_with_the_old_password_and_gets_an_argon2id_hash(target):
    alice = users.get_by_username(target, "alice")
    assert alice is not None and alice.password_hash.startswith("$2b$")
    assert users.authenticate(target, "alice", ALICE_PASSWORD) is alice
    target.commit()
    target.refresh(alice)
    assert alice.password_hash.startswith("$argon2id$")
    assert users.authenticate(target, "alice", ALICE_PASSWORD) is alice


def test_new_rows_get_new_ids_after_the_import(target):
    user = users.create_user(target, "carol", "carol@example.com", "a long password 2")
    target.flush()
    assert user.id == 4
    target.rollback()


@pytest.mark.parametrize(
    "option", [("--default-role", "god"), ("--source-timezone", "Mars/Olympus")]
)
def test_a_refused_option_creates_no_target(legacy, fresh_url, option):
    from test_copy import assert_no_database

    refused = import_legacy(legacy[0], fresh_url, *option)
    assert refused.exit_code == 2
    assert option[1] in refused.output
    assert_no_database(fresh_url)


def files_of(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("source_kind", ["pfd-db", "not LSTM_PFD"])
def test_a_source_that_is_not_lstm_pfd_creates_no_target_nor_key(tmp_path, fresh_url, source_kind):
    import sqlite3

    from cli_support import assert_refused, pfd_db
    from test_copy import assert_no_database

    folder = tmp_path / "source"
    folder.mkdir()
    source = folder / "src.db"
    if source_kind == "pfd-db":
        assert pfd_db("init", "--url", f"sqlite:///{source}", "--quiet").exit_code == 0
    else:
        with sqlite3.connect(source) as conn:
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.close()
    before = files_of(folder)
    refused = pfd_db(
        "import-legacy", "--from", f"sqlite:///{source}", "--url", fresh_url,
        env={"PFD_DB_SECRET_KEY": ""},
    )  # fmt: skip
    expected = "is a pfd-db database" if source_kind == "pfd-db" else "is not an LSTM_PFD database"
    assert_refused(refused, f"{source} {expected}")
    assert "instance key" not in refused.output
    assert_no_database(fresh_url)  # no file, no -wal/-shm/-journal (SQLite), no table
    target = locate(fresh_url).path
    if target is not None:
        assert files_of(target.parent) == ["source"]  # no new.db.key either
    assert files_of(folder) == before  # the source is only read


def test_secrets_to_encrypt_without_an_instance_key_to_come_create_nothing(
    legacy, fresh_url, dialect
):
    from cli_support import assert_refused, pfd_db
    from test_copy import assert_no_database

    result = pfd_db(
        "import-legacy", "--from", legacy[0], "--url", fresh_url, "--json",
        env={"PFD_DB_SECRET_KEY": ""},
    )  # fmt: skip
    if dialect == "postgresql":  # no key anywhere: refused before the target is touched
        assert_refused(result, "no instance key")
        assert "warning" not in result.output
        assert_no_database(fresh_url)
        return
    assert result.exit_code == 0, result.output  # a key is created beside the new file
    target = locate(fresh_url).path
    assert target is not None and Path(f"{target}.key").exists()
    assert json.loads(result.stdout)["accounted"]
