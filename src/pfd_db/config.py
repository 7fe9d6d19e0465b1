"""Settings: the one place that reads the environment.

Every setting is an environment variable with the ``PFD_DB_`` prefix
(``PFD_DB_POOL_SIZE=10``); the database URL also honours the common
``DATABASE_URL``. With nothing set, pfd-db uses a SQLite file ``./pfd.db``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pfd_db.errors import ConfigurationError, DatabaseUnavailable
from pfd_db.target import mask_password, normalise_url, parse_url

DEFAULT_URL = "sqlite:///./pfd.db"


HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_-]{1,63})*")


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


class Settings(BaseSettings):
    """pfd-db's configuration, read from ``PFD_DB_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="PFD_DB_", extra="ignore")

    url: str = Field(
        default=DEFAULT_URL,
        validation_alias=AliasChoices("PFD_DB_URL", "DATABASE_URL"),
        description="Database URL; falls back to DATABASE_URL, then ./pfd.db.",
    )
    pool_size: int = Field(default=30, ge=1, description="Connections kept open (servers).")
    max_overflow: int = Field(default=30, ge=0, description="Extra connections under load.")
    pool_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for one.")
    pool_recycle: int = Field(default=3600, description="Seconds before a connection is renewed.")
    pool_pre_ping: bool = Field(default=True, description="Test a connection before use.")
    slow_query_seconds: float = Field(
        default=1.0, ge=0, description="Statements slower than this are logged at WARNING."
    )
    echo: bool = Field(default=False, description="Log every statement (debugging only).")
    sqlite_busy_timeout_ms: int = Field(
        default=30_000, ge=0, description="How long a SQLite writer waits for the lock."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Instance key (Fernet, base64) that encrypts TOTP secrets and keys "
        "backup-code hashes; several, comma-separated, to rotate (the first encrypts).",
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="File holding the instance key; default: <database file>.key beside a "
        "SQLite database.",
    )
    lockout_threshold: int = Field(
        default=5,
        ge=1,
        description="Wrong passwords one address may try on one account within the window "
        "(then it is refused until the oldest leaves it); also the limit of failed 2FA codes.",
    )
    lockout_window_seconds: int = Field(
        default=900, ge=1, description="Window of lockout_threshold (15 minutes)."
    )
    account_lockout_threshold: int = Field(
        default=50,
        ge=1,
        description="Wrong passwords an account may collect from all addresses within "
        "account_lockout_window_seconds before addresses it is not known at are refused.",
    )
    account_lockout_window_seconds: int = Field(
        default=86_400, ge=1, description="Window of account_lockout_threshold (24 hours)."
    )
    known_address_seconds: int = Field(
        default=2_592_000,
        ge=0,
        description="An address the account logged in from this recently (30 days) is "
        "not refused by the account-wide limit.",
    )
    session_ttl_seconds: int = Field(
        default=43_200, ge=60, description="Lifetime of a login session (12 hours)."
    )
    admin_password: SecretStr | None = Field(
        default=None, description="Password of the seeded admin; generated when unset."
    )
    argon2_time_cost: int = Field(default=3, ge=1, description="argon2id passes.")
    argon2_memory_cost: int = Field(
        default=65_536, ge=8, description="argon2id memory in KiB (64 MiB by default)."
    )
    argon2_parallelism: int = Field(default=4, ge=1, description="argon2id lanes.")
    default_dataset_path: str = Field(
        default="data/processed/dataset.h5", description="HDF5 file of the seeded dataset."
    )
    delivery_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Attempts at an e-mail or webhook delivery."
    )
    delivery_backoff_seconds: float = Field(
        default=30.0, gt=0, description="Wait before the first retry; doubled for each next one."
    )
    delivery_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest wait between two attempts at a delivery."
    )
    webhook_failure_limit: int = Field(
        default=10, ge=1, description="Consecutive failed deliveries that disable a webhook."
    )
    webhook_allowed_hosts: str = Field(
        default="",
        description="Internal hosts webhooks may post to, comma-separated: host names "
        "(exactly) and networks (CIDR, e.g. 10.1.0.0/16, or single addresses); none by default.",
    )
    digest_hour: int = Field(
        default=8, ge=0, le=23, description="Hour (UTC) of the daily and weekly (Monday) digests."
    )
    retention_request_logs_days: int = Field(
        default=90, ge=1, description="pfd-db clean: days of API request logs kept."
    )
    retention_api_usage_days: int = Field(
        default=90, ge=1, description="pfd-db clean: days of API-key usage records kept."
    )
    retention_email_logs_days: int = Field(
        default=180, ge=1, description="pfd-db clean: days of finished e-mail deliveries kept."
    )
    retention_webhook_logs_days: int = Field(
        default=90, ge=1, description="pfd-db clean: days of finished webhook calls kept."
    )
    retention_login_history_days: int = Field(
        default=365, ge=1, description="pfd-db clean: days of login attempts kept."
    )
    retention_sessions_days: int = Field(
        default=30, ge=1, description="pfd-db clean: days ended or expired login sessions are kept."
    )
    retention_system_logs_days: int = Field(
        default=365, ge=1, description="pfd-db clean: days of audit-log entries kept."
    )
    retention_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="pfd-db clean: rows deleted per transaction."
    )

    pgbouncer: bool | None = Field(
        default=None,
        description="The URL leads through PgBouncer in transaction pooling mode: no "
        "server-side prepared statements. Unset: detected from the server.",
    )
    replica_urls: str = Field(
        default="",
        description="Read replicas of the PostgreSQL primary, comma-separated URLs; "
        "read-only work goes to them. None by default.",
    )
    replica_max_lag_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A replica further behind the primary than this is skipped.",
    )

    server_host: str = Field(default="127.0.0.1", description="pfd-db serve: address to listen on.")
    server_port: int = Field(
        default=8000, ge=0, le=65_535, description="pfd-db serve: port to listen on."
    )
    server_workers: int = Field(
        default=1, ge=1, le=64, description="pfd-db serve: worker processes (1 on SQLite)."
    )
    server_body_limit_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Largest request body accepted (10 MB)."
    )
    server_cors_origins: str = Field(
        default="",
        description="Origins browsers may call the API from, comma-separated; none by default.",
    )
    server_trusted_proxies: str = Field(
        default="",
        description="Proxies whose X-Forwarded-For gives the client address, comma-separated "
        "addresses or networks; none by default.",
    )

    server_metrics_addresses: str = Field(
        default="",
        description="Addresses or networks that may read GET /metrics without an admin key, "
        "comma-separated; none by default.",
    )

    @field_validator("server_cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        entries = [entry.strip().rstrip("/") for entry in value.split(",")]
        for entry in filter(None, entries):
            if entry != "*" and not re.fullmatch(r"https?://[^\s/]+", entry):
                raise ValueError(f"{entry!r} is not an origin like https://example.org")
        return ",".join(filter(None, entries))

    @field_validator("server_trusted_proxies", "server_metrics_addresses")
    @classmethod
    def _proxies(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",")]
        for entry in filter(None, entries):
            if entry != "*" and not _is_network(entry):
                raise ValueError(f"{entry!r} is not an address or network like 10.0.0.0/8")
        return ",".join(filter(None, entries))

    @field_validator("url")
    @classmethod
    def _use_psycopg(cls, url: str) -> str:
        return normalise_url(url)

    @field_validator("replica_urls")
    @classmethod
    def _postgresql_replicas(cls, value: str) -> str:
        entries = [normalise_url(entry.strip()) for entry in value.split(",")]
        for number, entry in enumerate(filter(None, entries), start=1):
            try:
                backend = parse_url(entry).get_backend_name()
            except DatabaseUnavailable as exc:
                raise ValueError(f"replica {number}: {exc}") from None
            except ValueError:  # a port that is not a number
                raise ValueError(
                    f"replica {number}: not a database URL: expected "
                    "postgresql://USER:PASSWORD@HOST[:PORT]/DBNAME"
                ) from None
            if backend != "postgresql":
                raise ValueError(
                    f"replica {number} ({mask_password(entry)}) is not a PostgreSQL URL: "
                    "replicas are postgresql://USER:PASSWORD@HOST/DBNAME"
                )
        return ",".join(filter(None, entries))

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _hosts_and_networks(cls, value: str) -> str:
        entries = [entry.strip().lower().rstrip(".") for entry in value.split(",")]
        for entry in filter(None, entries):
            if not (_is_network(entry) or HOST_NAME.fullmatch(entry)):
                raise ValueError(f"{entry!r} is neither a host name nor a network like 10.0.0.0/8")
        return ",".join(filter(None, entries))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (``get_settings.cache_clear()`` to re-read).

    Raises :class:`ConfigurationError` naming each variable whose value is unusable.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PFD_DB_{str(error['loc'][0]).upper()}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
