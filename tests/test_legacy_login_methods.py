"""import-legacy keeps every login method, on both dialects: 'oauth' as itself,
an enum NAME as its value, and one pfd-db has no name for as 'other' with the
source's name in ``login_method_detail`` (it used to be emptied and lost)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from legacy_db import make_legacy
from pfd_db.cli import app
from pfd_db.engine import make_engine
from pfd_db.models import LoginHistory
from pfd_db.target import normalise_url

runner = CliRunner()
METHODS = {  # legacy login_method -> (pfd-db login_method, login_method_detail)
    "oauth": ("oauth", None),
    "OAuth": ("oauth", None),
    "TWO_FACTOR": ("2fa", None),
    "saml": ("other", "saml"),
    "Google SSO": ("other", "Google SSO"),
}
FIRST_ID = 100


@pytest.fixture
def source_and_target(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, str]]:
    if dialect == "sqlite":
        make_legacy("sqlite", str(tmp_path / "lstm.db"))
        yield f"sqlite:///{tmp_path / 'lstm.db'}", f"sqlite:///{tmp_path / 'pfd.db'}"
        return
    server = request.getfixturevalue("pg_server")
    names = [f"lstm_{uuid.uuid4().hex[:8]}", f"pfd_{uuid.uuid4().hex[:8]}"]
    for name in names:
        server.create_database(name)
    try:
        make_legacy("postgresql", names[0], lambda: server.connect(names[0]))
        yield server.url(names[0]), server.url(names[1])
    finally:
        for name in names:
            server.drop_database(name)


def test_every_login_method_is_kept(source_and_target):
    source, target = source_and_target
    legacy = create_engine(normalise_url(source))
    with legacy.begin() as conn:
        for n, method in enumerate(METHODS, start=FIRST_ID):
            conn.execute(
                text(
                    "INSERT INTO login_history (id, user_id, login_method, success, timestamp, "
                    "created_at, updated_at) VALUES (:id, 1, :method, true, :t, :t, :t)"
                ),
                {"id": n, "method": method, "t": "2024-03-01 12:00:00"},
            )
    legacy.dispose()

    result = runner.invoke(
        app, ["import-legacy", "--from", source, "--url", target, "--yes", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = {t["name"]: t for t in json.loads(result.stdout)["tables"]}["login_history"]
    assert report["skipped"] == {} and report["imported"] == 1 + len(METHODS)
    assert any("'saml' kept as 'other'" in change for change in report["changes"]), report

    engine = make_engine(target)
    with Session(engine) as session:
        rows = session.execute(
            select(LoginHistory.login_method, LoginHistory.login_method_detail)
            .where(LoginHistory.success.is_(True))
            .order_by(LoginHistory.id)
        ).all()
    engine.dispose()
    kept = [tuple(row) for row in rows]
    assert kept == [("password", None), *METHODS.values()]
