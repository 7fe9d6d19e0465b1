"""``pfd-db serve`` as an operator runs it: settings, refusals, a real process on
both dialects, and a graceful SIGTERM that lets an in-flight request finish."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from cli_support import pfd_db
from served_process import Served


@pytest.fixture
def served_url(fresh_url: str) -> str:
    done = pfd_db("init", "--quiet", "--url", fresh_url)
    assert done.exit_code == 0, done.output
    return fresh_url


def test_server_settings_have_safe_defaults_and_refuse_nonsense(monkeypatch):
    from pfd_db.config import Settings
    from pfd_db.errors import ConfigurationError

    settings = Settings()
    assert (settings.server_host, settings.server_port, settings.server_workers) == (
        "127.0.0.1", 8000, 1,
    )  # fmt: skip
    assert settings.server_body_limit_bytes == 10 * 1024 * 1024
    assert settings.server_cors_origins == settings.server_trusted_proxies == ""
    monkeypatch.setenv("PFD_DB_SERVER_CORS_ORIGINS", " https://a.example.org/ ,http://b:8080")
    monkeypatch.setenv("PFD_DB_SERVER_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    chosen = Settings()
    assert chosen.server_cors_origins == "https://a.example.org,http://b:8080"
    assert chosen.server_trusted_proxies == "10.0.0.0/8,127.0.0.1"
    from pfd_db.config import get_settings

    for name, value in [
        ("PFD_DB_SERVER_CORS_ORIGINS", "a.example.org"),
        ("PFD_DB_SERVER_TRUSTED_PROXIES", "proxy.local"),
        ("PFD_DB_SERVER_WORKERS", "0"),
        ("PFD_DB_SERVER_BODY_LIMIT_BYTES", "0"),
    ]:
        monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        with pytest.raises(ConfigurationError, match=name):
            get_settings()
        monkeypatch.undo()
    get_settings.cache_clear()


def test_several_workers_on_sqlite_are_refused_in_one_line(tmp_path):
    done = pfd_db("serve", "--url", f"sqlite:///{tmp_path / 'x.db'}", "--workers", "2")
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --workers 2"), done.stderr
    assert "one worker" in lines[0]
    assert not (tmp_path / "x.db").exists()


def test_a_database_not_at_head_is_refused(fresh_url):
    done = pfd_db("serve", "--url", fresh_url, "--port", "1")
    assert done.exit_code == 2
    assert done.stderr.startswith("error: ") and "init" in done.stderr


def test_serve_answers_and_stops_gracefully_on_sigterm(dialect, served_url):
    workers = 2 if dialect == "postgresql" else 1
    key = _issue(served_url)
    with Served(served_url, workers=workers) as server:
        assert httpx.get(f"{server.base_url}/ready").json()["status"] == "ready"
        assert httpx.get(f"{server.base_url}/docs").status_code == 200
        listed = httpx.get(f"{server.base_url}/api/v1/experiments", headers={"X-API-Key": key})
        assert listed.status_code == 200 and "ratelimit-remaining" in listed.headers
        assert "server" not in listed.headers  # no software banner

        # A request still arriving when SIGTERM comes is answered in full.
        answer: dict[str, httpx.Response] = {}
        signalled = threading.Event()

        def slow_body():
            yield b'{"name": "slow-one", "model_type": "cnn1d", '
            signalled.wait(10)
            time.sleep(0.5)
            yield b'"dataset": "Default"}'

        def post() -> None:
            answer["r"] = httpx.post(
                f"{server.base_url}/api/v1/experiments",
                headers={"X-API-Key": key, "content-type": "application/json"},
                content=slow_body(),
                timeout=30,
            )

        sender = threading.Thread(target=post)
        sender.start()
        time.sleep(0.5)
        server.process.send_signal(15)
        signalled.set()
        sender.join(30)
        code = server.process.wait(60)
        output = server.output()
    assert code == 0, output
    assert answer["r"].status_code < 500, answer["r"].text
    assert "Traceback" not in output


def _issue(url: str) -> str:
    done = pfd_db("apikey", "create", "admin", "--name", "ops", "--scope", "write",
                  "--rate-limit", "1000", "--quiet", "--url", url)  # fmt: skip
    assert done.exit_code == 0, done.output
    return done.stdout.strip().splitlines()[-1]
