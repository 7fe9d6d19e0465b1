"""A database carrying the unfinished-copy marker, on both dialects: the command the
refusal suggests runs as written, ``check`` and ``status`` refuse it in the same
one line, and ``finish`` keeps the marker when the search index is broken."""

from __future__ import annotations

import json
import shlex

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cli_support import assert_refused
from pfd_db.cli import app
from pfd_db.engine import make_engine
from pfd_db.models import Experiment
from pfd_db.portability import CopyMismatch, filling
from pfd_db.portability.filling import MARKER_TABLE
from pfd_db.target import command_url, locate, sqlite_uri
from test_copy import copy, make_demo, marked_unfinished, table_rows

runner = CliRunner()


def marked_demo(url: str) -> None:
    """``url`` holding demo data and the marker, as a copy cut short near its end."""
    marked_unfinished(url)
    make_demo(url)  # at head already: only the rows are added (triggers index them)


def suggested_command(line: str) -> list[str]:
    """The command between backquotes in a refusal, split as a shell would."""
    return shlex.split(line.split("`")[1])


def still_marked(url: str) -> bool:
    engine = make_engine(url)
    try:
        return filling.unfinished_copy(engine) is not None
    finally:
        engine.dispose()


# --- 1. the suggested command runs as written ---------------------------------------


def test_the_refusal_suggests_a_command_that_completes_the_database(fresh_url, tmp_path):
    marked_demo(fresh_url)
    into = f"sqlite:///{tmp_path / 'into.db'}"
    line = assert_refused(copy(fresh_url, into), "unfinished copy from /elsewhere/old.db")
    suggested = suggested_command(line)
    assert suggested[:2] == ["pfd-db", "copy"] and suggested[-2:] == ["--replace", "--yes"]
    named = suggested[suggested.index("--to") + 1]
    assert locate(named).url.database == locate(fresh_url).url.database
    assert locate(named).path == locate(fresh_url).path

    source = f"sqlite:///{tmp_path / 'whole.db'}"
    make_demo(source)
    args = [source if arg == "SOURCE" else arg for arg in suggested[1:]]
    done = runner.invoke(app, args, input="")  # as written: no terminal to confirm on
    assert done.exit_code == 0, done.output
    assert not still_marked(fresh_url)
    assert table_rows(fresh_url) == table_rows(source)


@pytest.mark.parametrize("name", ["plain.db", "with space.db", "odd?#%name.db"])
def test_a_sqlite_file_is_suggested_as_a_url_pfd_db_accepts(tmp_path, name):
    path = tmp_path / name
    for url in (sqlite_uri(path, "ro"), sqlite_uri(path, "rw")):
        words = shlex.split(f"pfd-db check --url {command_url(url)}")
        assert len(words) == 4
        assert locate(words[3]).path == path
    if name == "plain.db":
        assert command_url(sqlite_uri(path)) == f"sqlite:///{path}"  # sqlite:////abs/path


def test_a_server_is_suggested_without_any_password():
    url = make_url(
        "postgresql+psycopg://rep:s3cret@db.example:5433/pfd?password=qsecret&sslmode=require"
    )
    shown = command_url(url)
    assert "s3cret" not in shown and "qsecret" not in shown
    parsed = locate(shlex.split(shown)[0]).url
    assert (parsed.username, parsed.host, parsed.port, parsed.database) == (
        "rep",
        "db.example",
        5433,
        "pfd",
    )
    assert parsed.password is None and dict(parsed.query) == {"sslmode": "require"}


# --- 2. check and status refuse a marked database -----------------------------------


@pytest.mark.parametrize("command", ["check", "status"])
def test_check_and_status_refuse_a_marked_database_in_one_line(fresh_url, command):
    marked_demo(fresh_url)
    line = assert_refused(
        runner.invoke(app, [command, "--url", fresh_url]),
        "holds an unfinished copy from /elsewhere/old.db, not a whole database",
        "pfd-db copy --url SOURCE --to",
        "--replace --yes` again",
    )
    assert MARKER_TABLE not in line and "drift" not in line

    as_json = runner.invoke(app, [command, "--url", fresh_url, "--json"])
    assert assert_refused(as_json) == line
    document = json.loads(as_json.stdout)  # one document, nothing else on stdout
    assert document["ok"] is False and document["exit_code"] == 2
    assert f"error: {document['problem']}" == line
    assert "unfinished copy from /elsewhere/old.db" in document["problem"]
    assert "tables" not in document  # no counts as if whole
    assert still_marked(fresh_url)  # only read


# --- 3. a broken search index keeps the marker ---------------------------------------


def break_search_index(url: str) -> None:
    """Make one experiment's search index entry differ from its row. SQLite: its
    name changes while the FTS update trigger is gone; PostgreSQL: the generated
    column is made a plain one (``DROP EXPRESSION``) and given another document."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            first = conn.scalar(select(Experiment.id).order_by(Experiment.id).limit(1))
            if conn.dialect.name == "sqlite":
                trigger = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'experiments_fts_au'"
                ).scalar_one()
                conn.exec_driver_sql("DROP TRIGGER experiments_fts_au")
                conn.execute(
                    update(Experiment).where(Experiment.id == first).values(name="renamed-unseen")
                )
                conn.exec_driver_sql(trigger)
            else:
                conn.exec_driver_sql(
                    "ALTER TABLE experiments ALTER COLUMN search_vector DROP EXPRESSION"
                )
                conn.exec_driver_sql(
                    "UPDATE experiments SET search_vector = to_tsvector('simple', 'unseen') "
                    f"WHERE id = {int(first)}"
                )
    finally:
        engine.dispose()


def test_a_broken_search_index_is_found_and_finish_keeps_the_marker(fresh_url):
    marked_demo(fresh_url)
    engine = make_engine(fresh_url)
    try:
        with engine.connect() as conn:
            assert filling.search_index_problem(conn) is None  # whole before
        break_search_index(fresh_url)
        with engine.connect() as conn:
            problem = filling.search_index_problem(conn)
        assert problem is not None
        if engine.dialect.name == "postgresql":
            assert problem == "1 experiments have a stale search_vector"
        else:
            assert "experiments_fts does not match the experiments" in problem
        with pytest.raises(CopyMismatch, match="search index of the copy is inconsistent"):
            filling.finish(engine)
        assert filling.unfinished_copy(engine) is not None
    finally:
        engine.dispose()
