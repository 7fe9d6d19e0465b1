"""Settings come from PFD_DB_* variables, DATABASE_URL as fallback, then a SQLite file."""

from __future__ import annotations

import pytest

from pfd_db.config import DEFAULT_URL, Settings, get_settings
from pfd_db.errors import ConfigurationError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("PFD_DB_URL", "DATABASE_URL", "PFD_DB_POOL_SIZE", "PFD_DB_ECHO"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults_need_no_configuration():
    settings = Settings()
    assert settings.url == DEFAULT_URL == "sqlite:///./pfd.db"
    assert (settings.pool_size, settings.max_overflow) == (30, 30)
    assert (settings.pool_timeout, settings.pool_recycle) == (30.0, 3600)
    assert settings.pool_pre_ping is True
    assert settings.slow_query_seconds == 1.0
    assert settings.echo is False


def test_pfd_db_url_wins_over_database_url(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///fallback.db")
    assert Settings().url == "sqlite:///fallback.db"
    monkeypatch.setenv("PFD_DB_URL", "sqlite:///chosen.db")
    assert Settings().url == "sqlite:///chosen.db"


def test_postgresql_urls_are_pointed_at_psycopg(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.internal:5432/pfd")
    assert Settings().url == "postgresql+psycopg://u:p@db.internal:5432/pfd"


def test_every_setting_is_overridable(monkeypatch):
    monkeypatch.setenv("PFD_DB_POOL_SIZE", "5")
    monkeypatch.setenv("PFD_DB_ECHO", "true")
    settings = get_settings()
    assert settings.pool_size == 5 and settings.echo is True


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("PFD_DB_POOL_SIZE", "lots")
    with pytest.raises(ConfigurationError, match="PFD_DB_POOL_SIZE"):
        get_settings()


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("PFD_DB_ADMIN_PASSWORD", "correct-horse-battery")
    assert "correct-horse-battery" not in repr(Settings())
