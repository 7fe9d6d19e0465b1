"""The pfd-db command, run as an operator would, on both dialects."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, inspect, select, text
from typer.testing import CliRunner

from pfd_db import migrations
from pfd_db.cli import app
from pfd_db.engine import make_engine
from pfd_db.models import Base, Dataset, User

runner = CliRunner()


def pfd_db(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def fresh_engine(fresh_url):
    engine = make_engine(fresh_url)
    yield engine
    engine.dispose()


def test_help_lists_every_command():
    result = pfd_db("--help")
    assert result.exit_code == 0
    for command in ("migrate", "downgrade", "current", "history", "check", "seed", "init",
                    "status"):  # fmt: skip
        assert command in result.output


def test_init_migrates_and_seeds_and_running_it_again_changes_nothing(fresh_url, fresh_engine):
    first = pfd_db("init", "--url", fresh_url)
    assert first.exit_code == 0, first.output
    assert "upgraded from empty to 0001" in first.output
    assert "admin password (shown once" in first.output
    second = pfd_db("init", "--url", fresh_url)
    assert second.exit_code == 0
    assert "already at 0001" in second.output and "nothing changed" in second.output
    assert "admin password" not in second.output
    with fresh_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 1
        assert conn.scalar(select(func.count()).select_from(Dataset)) == 1


def test_migrate_twice_says_nothing_to_do(fresh_url):
    assert pfd_db("migrate", "--url", fresh_url).exit_code == 0
    again = pfd_db("migrate", "--url", fresh_url)
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_migrate_to_a_revision_and_downgrade(fresh_url, fresh_engine):
    assert pfd_db("migrate", "--to", "0001", "--url", fresh_url).exit_code == 0
    assert "0001 (head)" in pfd_db("current", "--url", fresh_url).output
    down = pfd_db("downgrade", "base", "--url", fresh_url)
    assert down.exit_code == 0 and "to base" in down.output
    assert "none" in pfd_db("current", "--url", fresh_url).output


def test_check_passes_on_a_migrated_database(fresh_url):
    pfd_db("migrate", "--url", fresh_url)
    result = pfd_db("check", "--url", fresh_url)
    assert result.exit_code == 0 and "no drift" in result.output


def test_check_fails_when_not_at_head(fresh_url):
    result = pfd_db("check", "--url", fresh_url)
    assert result.exit_code == 1
    assert "not at head" in result.stderr


def test_check_fails_on_schema_drift(fresh_url, fresh_engine):
    pfd_db("migrate", "--url", fresh_url)
    with fresh_engine.begin() as conn:
        conn.execute(text("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)"))
    result = pfd_db("check", "--url", fresh_url)
    assert result.exit_code == 3
    assert "schema drift" in result.stderr and "nickname" in result.stderr


def test_check_fails_when_the_server_is_unreachable(dialect, tmp_path):
    url = (
        f"sqlite:///{tmp_path}/no/such/dir/x.db"
        if dialect == "sqlite"
        else f"postgresql://nobody@/x?host={tmp_path}"
    )
    assert_one_line_error(pfd_db("check", "--url", url), "cannot reach")


def test_a_bad_url_is_one_line_and_exit_2():
    assert_one_line_error(pfd_db("status", "--url", "not a url"), "not a database URL")


def test_an_unknown_revision_is_one_line_and_exit_2(fresh_url):
    assert_one_line_error(pfd_db("migrate", "--to", "nope", "--url", fresh_url), "nope")


def test_seed_refuses_a_database_that_is_not_migrated(fresh_url):
    assert_one_line_error(pfd_db("seed", "--url", fresh_url), "run `pfd-db migrate` first")


def test_seed_twice_gives_one_admin_and_one_dataset(fresh_url, fresh_engine):
    pfd_db("migrate", "--url", fresh_url)
    assert "created user 'admin'" in pfd_db("seed", "--url", fresh_url).output
    assert "nothing changed" in pfd_db("seed", "--url", fresh_url).output
    with fresh_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 1
        assert conn.scalar(select(func.count()).select_from(Dataset)) == 1


def test_adopting_a_create_all_database(fresh_url, fresh_engine):
    Base.metadata.create_all(fresh_engine)
    refused = pfd_db("migrate", "--url", fresh_url)
    assert_one_line_error(refused, "--adopt")
    adopted = pfd_db("migrate", "--adopt", "--url", fresh_url)
    assert adopted.exit_code == 0 and "stamped at 0001" in adopted.output
    assert pfd_db("check", "--url", fresh_url).exit_code == 0


def test_adoption_of_a_mismatched_database_is_refused(fresh_url, fresh_engine):
    Base.metadata.create_all(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_tags_created_at"))
    refused = pfd_db("migrate", "--adopt", "--url", fresh_url)
    assert refused.exit_code == 2
    assert "does not match the models" in refused.stderr
    assert "ix_tags_created_at" in refused.stderr
    assert "alembic_version" not in inspect(fresh_engine).get_table_names()


def test_migrate_sql_prints_every_create_table_without_touching_a_database(tmp_path):
    target = tmp_path / "untouched.db"
    result = pfd_db("migrate", "--sql", "--url", f"sqlite:///{target}")
    assert result.exit_code == 0
    assert all(f"CREATE TABLE {t} (" in result.output for t in Base.metadata.tables)
    assert not target.exists()


def test_status_shows_revision_counts_and_masks_the_password(fresh_url, dialect):
    pfd_db("init", "--url", fresh_url)
    result = pfd_db("status", "--url", fresh_url)
    assert result.exit_code == 0, result.output
    assert f"revision  {migrations.head_revision()}" in result.output
    assert "27 of 27 tables" in result.output
    assert "pool      size 30" in result.output
    assert dialect in result.output


def test_status_never_shows_a_password():
    url = "postgresql://admin:s3cret-pw@/nowhere?host=/nonexistent"
    result = pfd_db("status", "--url", url)
    assert "s3cret-pw" not in result.output
    assert result.exit_code == 2


def test_init_on_a_fresh_machine_creates_pfd_db_and_its_key_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PFD_DB_", "DATABASE_URL"))}
    code = "from pfd_db.cli import app; app(['init'])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pfd.db").exists()
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
        "from pfd_db.store import twofactor\n"
        "with get_db_session() as s:\n"
        "    admin = s.scalars(select(User)).one()\n"
        "    secret, _ = twofactor.begin_setup(s, admin)\n"
        "    print(secret != admin.totp_secret and len(admin.totp_secret) > 60)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", enable_2fa], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.stdout.strip() == "True", result.stderr


def test_history_lists_the_revisions_and_marks_the_current_one(fresh_url):
    before = pfd_db("history", "--url", fresh_url)
    assert before.exit_code == 0 and "0001" in before.output and "current" not in before.output
    pfd_db("migrate", "--url", fresh_url)
    after = pfd_db("history", "--url", fresh_url)
    assert "0001" in after.output and "current" in after.output


def test_version():
    from pfd_db import __version__

    result = pfd_db("--version")
    assert result.exit_code == 0 and result.output.strip() == f"pfd-db {__version__}"


def test_history_needs_no_database(tmp_path):
    result = pfd_db("history", "--url", f"postgresql://nobody@/x?host={tmp_path}")
    assert result.exit_code == 0
    assert "0001" in result.output and "current" not in result.output
    assert result.stderr == ""
