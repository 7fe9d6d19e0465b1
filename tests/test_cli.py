"""The schema commands, run as an operator would, on both dialects: init, migrate,
downgrade, current, history, check, seed, status; their --json and --quiet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cryptography.fernet import Fernet
from sqlalchemy import func, inspect, select, text

from cli_support import assert_refused, pfd_db
from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.models import Base, Dataset, User
from pgserver import worker_name

HEAD = migrations.head_revision()
FIRST = migrations.history()[0].revision


def table_names(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_help_lists_every_command():
    result = pfd_db("--help")
    assert result.exit_code == 0
    for command in ("init", "migrate", "downgrade", "current", "history", "check", "seed",
                    "status", "demo", "shell", "dbshell", "user", "apikey"):  # fmt: skip
        assert command in result.output


def test_version():
    from pfd_db import __version__

    result = pfd_db("--version")
    assert result.exit_code == 0 and result.output.strip() == f"pfd-db {__version__}"


# --- init --------------------------------------------------------------------------


def test_init_migrates_and_seeds_and_running_it_again_changes_nothing(fresh_url, fresh_engine):
    first = pfd_db("init", "--url", fresh_url)
    assert first.exit_code == 0, first.output
    assert f"upgraded from empty to {HEAD}" in first.output
    lines = first.stdout.splitlines()
    label = lines.index("admin password (shown once, store it now):")
    assert len(lines[label + 1]) >= 20 and " " not in lines[label + 1]  # the secret, alone
    second = pfd_db("init", "--url", fresh_url)
    assert second.exit_code == 0
    assert f"already at {HEAD}" in second.output and "nothing changed" in second.output
    assert "admin password" not in second.output
    with fresh_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 1
        assert conn.scalar(select(func.count()).select_from(Dataset)) == 1


def test_init_quiet_prints_only_the_generated_admin_password(fresh_url, fresh_engine):
    from pfd_db.passwords import verify_password

    result = pfd_db("init", "--quiet", "--url", fresh_url)
    assert result.exit_code == 0, result.output
    (password,) = result.stdout.splitlines()
    with fresh_engine.connect() as conn:
        stored = conn.scalar(select(User.password_hash))
    assert verify_password(stored, password)
    assert pfd_db("init", "--quiet", "--url", fresh_url).stdout == ""  # nothing generated


def test_init_refuses_a_short_admin_password_before_migrating(fresh_url, fresh_engine):
    result = pfd_db("init", "--url", fresh_url, env={"PFD_DB_ADMIN_PASSWORD": "short"})
    assert_refused(result, "PFD_DB_ADMIN_PASSWORD", "at least 12 characters")
    assert table_names(fresh_engine) == set()


def test_init_uses_the_admin_password_from_the_environment(fresh_url, fresh_engine):
    from pfd_db.passwords import verify_password

    chosen = "a long chosen admin passphrase"
    result = pfd_db("init", "--url", fresh_url, env={"PFD_DB_ADMIN_PASSWORD": chosen})
    assert result.exit_code == 0 and "admin password" not in result.output
    with fresh_engine.connect() as conn:
        assert verify_password(conn.scalar(select(User.password_hash)), chosen)


def test_init_on_a_fresh_machine_creates_pfd_db_and_its_key_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PFD_DB_", "DATABASE_URL"))}
    code = "from pfd_db.cli import app; app(['init'])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    key_file = tmp_path / "pfd.db.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "instance key: created" in result.stdout
    engine = make_engine(f"sqlite:///{tmp_path / 'pfd.db'}")
    assert migrations.state(engine).at_head
    engine.dispose()
    # the key file is found beside the database with no configuration, and used
    enable_2fa = (
        "from sqlalchemy import select\n"
        "from pfd_db import get_db_session\n"
        "from pfd_db.models import User\n"
        "from pfd_db.store.identity import twofactor\n"
        "with get_db_session() as s:\n"
        "    admin = s.scalars(select(User)).one()\n"
        "    secret, _ = twofactor.begin_setup(s, admin)\n"
        "    print(secret != admin.totp_secret and len(admin.totp_secret) > 60)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", enable_2fa], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.stdout.strip() == "True", result.stderr
    status = subprocess.run([sys.executable, "-c", "from pfd_db.cli import app; app(['status'])"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert "key       usable (key file pfd.db.key)" in status.stdout, status.stderr


# --- migrate, downgrade ---------------------------------------------------------------


def test_migrate_twice_says_nothing_to_do(fresh_url):
    assert pfd_db("migrate", "--url", fresh_url).exit_code == 0
    again = pfd_db("migrate", "--url", fresh_url)
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_migrate_to_a_revision_then_current_says_how_far_from_head(fresh_url):
    assert pfd_db("migrate", "--to", FIRST, "--url", fresh_url).exit_code == 0
    assert f"{FIRST} (head is {HEAD})" in pfd_db("current", "--url", fresh_url).output
    assert pfd_db("migrate", "--url", fresh_url).exit_code == 0
    assert f"{HEAD} (head)" in pfd_db("current", "--url", fresh_url).output


def test_downgrade_by_relative_steps(fresh_url):
    revisions = [r.revision for r in migrations.history()]
    pfd_db("migrate", "--to", "0002", "--url", fresh_url)
    down = pfd_db("downgrade", "-1", "--url", fresh_url)  # 0002 only drops a constraint
    assert down.exit_code == 0, down.output
    assert f"downgraded from 0002 to {revisions[0]}" in down.output


def test_a_downgrade_that_drops_tables_needs_yes_when_not_on_a_terminal(fresh_url, fresh_engine):
    pfd_db("migrate", "--url", fresh_url)
    refused = pfd_db("downgrade", "base", "--url", fresh_url)
    assert_refused(refused, "deletes data", "--yes")
    assert migrations.state(fresh_engine).at_head
    down = pfd_db("downgrade", "base", "--yes", "--url", fresh_url)
    assert down.exit_code == 0 and "to base" in down.output
    assert "none" in pfd_db("current", "--url", fresh_url).output
    assert table_names(fresh_engine) <= {"alembic_version"}


def test_downgrade_names_unknown_or_upward_targets(fresh_url):
    pfd_db("migrate", "--to", "0002", "--url", fresh_url)
    assert_refused(pfd_db("downgrade", "nope", "--url", fresh_url), "no single revision 'nope'")
    assert_refused(pfd_db("downgrade", HEAD, "--url", fresh_url), "pfd-db migrate --to")
    assert_refused(pfd_db("downgrade", "-5", "--url", fresh_url), "cannot go 5 steps back")


def test_an_unknown_revision_is_one_line_and_exit_2(fresh_url):
    assert_refused(pfd_db("migrate", "--to", "nope", "--url", fresh_url), "nope")


def test_migrate_sql_prints_every_create_table_without_touching_a_database(tmp_path):
    target = tmp_path / "untouched.db"
    result = pfd_db("migrate", "--sql", "--url", f"sqlite:///{target}")
    assert result.exit_code == 0
    assert all(f"CREATE TABLE {t} (" in result.output for t in Base.metadata.tables)
    assert not target.exists()


def test_adopting_a_create_all_database(fresh_url, fresh_engine):
    Base.metadata.create_all(fresh_engine)
    assert_refused(pfd_db("migrate", "--url", fresh_url), "--adopt")
    adopted = pfd_db("migrate", "--adopt", "--url", fresh_url)
    assert adopted.exit_code == 0 and f"stamped at {HEAD}" in adopted.output
    assert pfd_db("check", "--url", fresh_url).exit_code == 0


def test_adoption_of_a_mismatched_database_is_refused(fresh_url, fresh_engine):
    Base.metadata.create_all(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_tags_created_at"))
    refused = pfd_db("migrate", "--adopt", "--url", fresh_url)
    assert refused.exit_code == 2
    assert "does not match the models" in refused.stderr.splitlines()[-1]
    assert "ix_tags_created_at" in refused.stderr
    assert "alembic_version" not in table_names(fresh_engine)


# --- current, history, check ---------------------------------------------------------


def test_current_json(fresh_url):
    pfd_db("migrate", "--to", FIRST, "--url", fresh_url)
    document = json.loads(pfd_db("current", "--json", "--url", fresh_url).stdout)
    assert document == {"revision": FIRST, "head": HEAD, "at_head": FIRST == HEAD, "known": True}


def test_history_lists_the_revisions_and_marks_the_current_one(fresh_url):
    before = pfd_db("history", "--url", fresh_url)
    assert before.exit_code == 0 and FIRST in before.output and "current" not in before.output
    pfd_db("migrate", "--url", fresh_url)
    after = json.loads(pfd_db("history", "--json", "--url", fresh_url).stdout)
    assert after["current"] == after["head"] == HEAD
    assert [r["revision"] for r in after["revisions"] if r["current"]] == [HEAD]
    assert set(after["revisions"][0]) == {"revision", "down_revision", "message", "current"}


def test_history_needs_no_database(tmp_path):
    result = pfd_db("history", "--url", f"postgresql://nobody@/x?host={tmp_path}")
    assert result.exit_code == 0
    assert FIRST in result.output and "current" not in result.output
    assert result.stderr == ""


def test_check_passes_on_a_migrated_database(fresh_url):
    pfd_db("migrate", "--url", fresh_url)
    result = pfd_db("check", "--url", fresh_url)
    assert result.exit_code == 0 and "no drift" in result.output
    document = json.loads(pfd_db("check", "--json", "--url", fresh_url).stdout)
    assert document["ok"] is True and document["exit_code"] == 0 and document["drift"] == []
    assert document["instance_key"]["usable"] is True


def test_check_fails_when_not_at_head(fresh_url):
    pfd_db("migrate", "--to", FIRST, "--url", fresh_url)
    result = pfd_db("check", "--url", fresh_url)
    assert result.exit_code == 1
    assert "not at head" in result.stderr and "run pfd-db migrate" in result.stderr


def test_check_fails_on_schema_drift(fresh_url, fresh_engine):
    pfd_db("migrate", "--url", fresh_url)
    with fresh_engine.begin() as conn:
        conn.execute(text("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)"))
    result = pfd_db("check", "--url", fresh_url)
    assert result.exit_code == 3
    assert "schema drift" in result.stderr and "nickname" in result.stderr
    document = json.loads(pfd_db("check", "--json", "--url", fresh_url).stdout)
    assert document["exit_code"] == 3 and any("nickname" in d for d in document["drift"])


def enable_two_factor(url: str) -> None:
    """The admin starts TOTP setup: an encrypted secret is stored."""
    from sqlalchemy.orm import Session

    from pfd_db.store.identity import twofactor

    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        twofactor.begin_setup(session, session.scalars(select(User)).one())
    engine.dispose()


def test_check_fails_with_4_when_no_instance_key_opens_the_2fa_data(fresh_url):
    pfd_db("init", "--quiet", "--url", fresh_url)
    enable_two_factor(fresh_url)
    assert pfd_db("check", "--url", fresh_url).exit_code == 0
    other_key = {"PFD_DB_SECRET_KEY": Fernet.generate_key().decode()}
    wrong = pfd_db("check", "--url", fresh_url, env=other_key)
    assert wrong.exit_code == 4
    assert "1 of 1 TOTP secrets do not open with the instance key" in wrong.stderr
    document = json.loads(pfd_db("check", "--json", "--url", fresh_url, env=other_key).stdout)
    assert document["exit_code"] == 4 and document["two_factor"]["unreadable_totp_secrets"] == 1
    none = pfd_db("check", "--url", fresh_url, env={"PFD_DB_SECRET_KEY": ""})
    assert none.exit_code == 4
    rotated = f"{other_key['PFD_DB_SECRET_KEY']},{os.environ['PFD_DB_SECRET_KEY']}"
    assert pfd_db("check", "--url", fresh_url, env={"PFD_DB_SECRET_KEY": rotated}).exit_code == 0


def test_check_fails_when_the_server_is_unreachable(dialect, tmp_path):
    url = (
        f"sqlite:///{tmp_path}/no/such/dir/x.db"
        if dialect == "sqlite"
        else f"postgresql://nobody@/x?host={tmp_path}"
    )
    assert_refused(pfd_db("check", "--url", url), "pfd-db" if dialect == "sqlite" else "reach")


# --- seed, status -----------------------------------------------------------------------


def test_seed_refuses_a_database_that_is_not_migrated(fresh_url):
    pfd_db("migrate", "--to", FIRST, "--url", fresh_url)
    assert_refused(pfd_db("seed", "--url", fresh_url), "run pfd-db migrate first")


def test_seed_twice_gives_one_admin_and_one_dataset(fresh_url, fresh_engine):
    pfd_db("migrate", "--url", fresh_url)
    assert "created user 'admin'" in pfd_db("seed", "--url", fresh_url).output
    assert "nothing changed" in pfd_db("seed", "--url", fresh_url).output
    with fresh_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 1
        assert conn.scalar(select(func.count()).select_from(Dataset)) == 1


def test_status_shows_revision_counts_pool_and_key(fresh_url, dialect):
    pfd_db("init", "--url", fresh_url)
    result = pfd_db("status", "--url", fresh_url)
    assert result.exit_code == 0, result.output
    assert f"revision  {HEAD} (head {HEAD})" in result.output
    assert f"{len(Base.metadata.tables)} of {len(Base.metadata.tables)} tables" in result.output
    assert "pool      size 30" in result.output
    assert "key       usable (PFD_DB_SECRET_KEY)" in result.output
    assert dialect in result.output


def test_status_json_has_stable_keys(fresh_url, dialect):
    pfd_db("init", "--url", fresh_url)
    document = json.loads(pfd_db("status", "--json", "--url", fresh_url).stdout)
    assert set(document) == {"url", "dialect", "server_version", "revision", "head", "at_head",
                             "tables", "partitions", "pool", "pgbouncer", "replicas",
                             "instance_key"}  # fmt: skip
    assert document["tables"]["users"] == 1 and document["at_head"] is True
    partitioned = {"api_request_logs", "api_usage", "system_logs", "login_history"}
    assert set(document["partitions"]) == (partitioned if dialect == "postgresql" else set())
    assert set(document["pool"]) == {"size", "max_overflow", "timeout", "recycle", "pre_ping"}
    assert document["pgbouncer"] is False and document["replicas"] == []
    assert set(document["instance_key"]) == {"configured", "usable", "source", "problem"}


def test_status_says_when_no_usable_instance_key_is_configured(fresh_url):
    pfd_db("migrate", "--url", fresh_url)
    bad = pfd_db("status", "--url", fresh_url, env={"PFD_DB_SECRET_KEY": "not-a-fernet-key"})
    assert bad.exit_code == 0 and "key       not usable: " in bad.output
    document = json.loads(
        pfd_db("status", "--json", "--url", fresh_url, env={"PFD_DB_SECRET_KEY": ""}).stdout
    )
    assert document["instance_key"]["usable"] is False  # and no key file beside the database
    assert "PFD_DB_SECRET_KEY" in document["instance_key"]["problem"]


def test_status_never_shows_a_password(pg_server):
    url = pg_server.url("postgres").replace("postgres@", "postgres:s3cret-pw@")
    for given in (url, f"{url}&password=s3cret-pw"):
        result = pfd_db("status", "--url", given)
        assert result.exit_code == 0, result.output
        assert "s3cret-pw" not in result.output and "***" in result.output
    unreachable = "postgresql://admin@/nowhere?host=/nonexistent&password=s3cret-pw"
    result = pfd_db("status", "--url", unreachable)
    assert "s3cret-pw" not in result.output
    assert_refused(result, "cannot reach", "password=***")


def test_init_never_shows_the_url_password(pg_server):
    name = worker_name("pfd_cli_masked")
    pg_server.create_database(name)
    try:
        url = pg_server.url(name)
        for given in (url.replace("postgres@", "postgres:s3cret-pw@"), f"{url}&password=s3cret-pw"):
            result = pfd_db("init", "--url", given)
            assert result.exit_code == 0, result.output
            assert "s3cret-pw" not in result.output and "ready: " in result.output
    finally:
        pg_server.drop_database(name)


def test_a_bad_url_is_one_line_and_exit_2():
    assert_refused(pfd_db("status", "--url", "not a url"), "not a database URL")


def test_json_copy_and_backup_print_one_document_and_nothing_on_stderr(fresh_url, tmp_path):
    pfd_db(
        "init", "--url", fresh_url, "-q", env={"PFD_DB_ADMIN_PASSWORD": "a long admin passphrase"}
    )
    runs = [
        pfd_db(
            "copy", "--to", f"sqlite:///{tmp_path}/copy.db", "--yes", "--json", "--url", fresh_url
        ),
        pfd_db("backup", str(tmp_path / "backup.out"), "--json", "--url", fresh_url),
    ]
    for result in runs:
        assert result.exit_code == 0, result.output
        assert isinstance(json.loads(result.stdout), dict)
        assert result.stderr == ""


def test_a_missing_legacy_database_is_named_as_the_from_database(fresh_url, tmp_path):
    missing = tmp_path / "legacy.db"
    line = assert_refused(
        pfd_db("import-legacy", "--from", f"sqlite:///{missing}", "--yes", "--url", fresh_url),
        f"no legacy database at {missing}",
        "--from",
    )
    assert "pfd-db init" not in line
    assert not missing.exists()


# --- --json when a command fails --------------------------------------------------------


def test_a_failed_json_run_prints_one_document_naming_the_failure(tmp_path):
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    for args in (
        ["status", "--json", "--url", missing],
        ["check", "--json", "--url", missing],
        ["user", "list", "--json", "--url", "foo://x"],
        ["status", "--json", "--no-such-option"],
    ):
        result = pfd_db(*args)
        line = assert_refused(result)
        document = json.loads(result.stdout)  # one document, nothing else
        assert document == {"ok": False, "exit_code": 2, "problem": line.removeprefix("error: ")}
        assert pfd_db(*[a for a in args if a != "--json"]).stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_json_verdict_the_command_printed_is_not_followed_by_a_second(fresh_url):
    result = pfd_db("check", "--json", "--url", fresh_url)  # no file (2) or no schema (1)
    assert json.loads(result.stdout)["exit_code"] == result.exit_code != 0
    migrations.upgrade(engine := make_engine(fresh_url))
    engine.dispose()
    drifted = pfd_db("check", "--json", "--url", fresh_url, env={"PFD_DB_SECRET_KEY": ""})
    document = json.loads(drifted.stdout)  # check's own document, only once
    assert document["exit_code"] == drifted.exit_code != 0 and "revision" in document
