"""The initial schema: the 27 tables of SCHEMA.md, full-text search objects included.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Frozen on purpose: this file names its types and DDL itself rather than importing
them from the models, so later model changes cannot change what it did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
downgrade_loses_data = True

TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
STRING_LIST = sa.JSON().with_variant(postgresql.ARRAY(sa.String()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SEARCH_DOCUMENT = sa.Text().with_variant(postgresql.TSVECTOR(), "postgresql")

TABLES = [
    "api_metrics_summary",
    "dataset_generations",
    "dataset_imports",
    "users",
    "api_keys",
    "backup_codes",
    "datasets",
    "email_digest_queue",
    "email_logs",
    "login_history",
    "notification_preferences",
    "saved_searches",
    "session_logs",
    "system_logs",
    "tags",
    "webhook_configurations",
    "api_request_logs",
    "api_usage",
    "hpo_campaigns",
    "nas_campaigns",
    "signals",
    "webhook_logs",
    "experiments",
    "nas_trials",
    "experiment_tags",
    "explanations",
    "training_runs",
]

# nas_campaigns <-> nas_trials and hpo_campaigns <-> experiments refer to each other:
# PostgreSQL gets these constraints once both tables exist; SQLite (which cannot add a
# constraint later, and does not check the target at creation) gets them inline.
CYCLE_FOREIGN_KEYS = {
    "hpo_campaigns": (
        "best_experiment_id",
        "fk_hpo_campaigns_best_experiment_id_experiments",
        "experiments",
    ),
    "nas_campaigns": ("best_trial_id", "fk_nas_campaigns_best_trial_id_nas_trials", "nas_trials"),
}

POSTGRESQL_SEARCH_DOCUMENT = (
    "setweight(to_tsvector('english', coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(model_type, '')), 'B') || "
    "setweight(to_tsvector('english', coalesce(notes, '')), 'C')"
)
SQLITE_SEARCH_DOCUMENT = (
    "coalesce(name, '') || ' ' || coalesce(model_type, '') || ' ' || coalesce(notes, '')"
)

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE experiments_fts USING fts5(name, model_type, notes, "
    "content='experiments', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER experiments_fts_ai AFTER INSERT ON experiments BEGIN "
    "INSERT INTO experiments_fts(rowid, name, model_type, notes) "
    "VALUES (new.id, new.name, new.model_type, new.notes); END",
    "CREATE TRIGGER experiments_fts_ad AFTER DELETE ON experiments BEGIN "
    "INSERT INTO experiments_fts(experiments_fts, rowid, name, model_type, notes) "
    "VALUES ('delete', old.id, old.name, old.model_type, old.notes); END",
    "CREATE TRIGGER experiments_fts_au AFTER UPDATE OF name, model_type, notes ON experiments "
    "BEGIN INSERT INTO experiments_fts(experiments_fts, rowid, name, model_type, notes) "
    "VALUES ('delete', old.id, old.name, old.model_type, old.notes); "
    "INSERT INTO experiments_fts(rowid, name, model_type, notes) "
    "VALUES (new.id, new.name, new.model_type, new.notes); END",
]
SQLITE_FTS_DROP = [
    "DROP TRIGGER experiments_fts_ai",
    "DROP TRIGGER experiments_fts_ad",
    "DROP TRIGGER experiments_fts_au",
    "DROP TABLE experiments_fts",
]


def dialect() -> str:
    return op.get_context().dialect.name


def search_document_sql() -> str:
    return POSTGRESQL_SEARCH_DOCUMENT if dialect() == "postgresql" else SQLITE_SEARCH_DOCUMENT


def cycle_foreign_keys(table: str) -> list[sa.ForeignKeyConstraint]:
    if dialect() == "postgresql":
        return []
    column, name, referred = CYCLE_FOREIGN_KEYS[table]
    return [sa.ForeignKeyConstraint([column], [f"{referred}.id"], name=name, ondelete="SET NULL")]


def upgrade() -> None:
    op.create_table(
        "api_metrics_summary",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_start", TIMESTAMP, nullable=False),
        sa.Column("period_end", TIMESTAMP, nullable=False),
        sa.Column("aggregation_type", sa.String(length=20), nullable=False),
        sa.Column("total_requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("successful_requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("avg_response_time_ms", sa.Double(), nullable=True),
        sa.Column("p50_response_time_ms", sa.Double(), nullable=True),
        sa.Column("p95_response_time_ms", sa.Double(), nullable=True),
        sa.Column("p99_response_time_ms", sa.Double(), nullable=True),
        sa.Column("requests_per_second", sa.Double(), nullable=True),
        sa.Column("error_rate", sa.Double(), nullable=True),
        sa.Column("endpoint_metrics", JSON_DOC, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "aggregation_type IN ('hourly', 'daily', 'weekly')",
            name=op.f("ck_api_metrics_summary_aggregation_type"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_metrics_summary")),
    )
    op.create_index(
        "ix_api_metrics_summary_period_type",
        "api_metrics_summary",
        ["period_start", "aggregation_type"],
        unique=True,
    )
    op.create_table(
        "dataset_generations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("num_faults", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("config", JSON_DOC, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "running",
                "completed",
                "failed",
                "cancelled",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("num_signals", sa.Integer(), nullable=True),
        sa.Column("output_path", sa.String(length=500), nullable=True),
        sa.Column("progress", sa.Integer(), server_default="0", nullable=False),
        sa.Column("celery_task_id", sa.String(length=255), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "progress >= 0 AND progress <= 100", name=op.f("ck_dataset_generations_progress")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_generations")),
    )
    op.create_index(
        op.f("ix_dataset_generations_celery_task_id"),
        "dataset_generations",
        ["celery_task_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_dataset_generations_name"), "dataset_generations", ["name"], unique=False
    )
    op.create_index(
        op.f("ix_dataset_generations_status"), "dataset_generations", ["status"], unique=False
    )
    op.create_table(
        "dataset_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("num_files", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("config", JSON_DOC, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "running",
                "completed",
                "failed",
                "cancelled",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("num_signals", sa.Integer(), nullable=True),
        sa.Column("output_path", sa.String(length=500), nullable=True),
        sa.Column("progress", sa.Integer(), server_default="0", nullable=False),
        sa.Column("celery_task_id", sa.String(length=255), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "progress >= 0 AND progress <= 100", name=op.f("ck_dataset_imports_progress")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_imports")),
    )
    op.create_index(
        op.f("ix_dataset_imports_celery_task_id"),
        "dataset_imports",
        ["celery_task_id"],
        unique=False,
    )
    op.create_index(op.f("ix_dataset_imports_name"), "dataset_imports", ["name"], unique=False)
    op.create_index(op.f("ix_dataset_imports_status"), "dataset_imports", ["status"], unique=False)
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column(
            "role",
            sa.Enum(
                "viewer",
                "operator",
                "admin",
                "super_admin",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            server_default="viewer",
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("totp_secret", sa.String(length=255), nullable=True),
        sa.Column("totp_enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("failed_login_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_index(op.f("ix_users_created_at"), "users", ["created_at"], unique=False)
    op.create_index(op.f("ix_users_is_active"), "users", ["is_active"], unique=False)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("scopes", STRING_LIST, nullable=False),
        sa.Column("rate_limit", sa.Integer(), server_default="1000", nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index(op.f("ix_api_keys_created_at"), "api_keys", ["created_at"], unique=False)
    op.create_index(op.f("ix_api_keys_is_active"), "api_keys", ["is_active"], unique=False)
    op.create_index(op.f("ix_api_keys_user_id"), "api_keys", ["user_id"], unique=False)
    op.create_table(
        "backup_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=255), nullable=False),
        sa.Column("is_used", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("used_at", TIMESTAMP, nullable=True),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_backup_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_backup_codes_code_hash")),
    )
    op.create_index(op.f("ix_backup_codes_is_used"), "backup_codes", ["is_used"], unique=False)
    op.create_index(
        "ix_backup_codes_user_unused", "backup_codes", ["user_id", "is_used"], unique=False
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("num_signals", sa.Integer(), nullable=False),
        sa.Column("fault_types", JSON_DOC, nullable=False),
        sa.Column("severity_levels", JSON_DOC, nullable=False),
        sa.Column("file_path", sa.String(length=500), nullable=False),
        sa.Column("meta_data", JSON_DOC, nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_datasets_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("name", name=op.f("uq_datasets_name")),
    )
    op.create_index(op.f("ix_datasets_created_at"), "datasets", ["created_at"], unique=False)
    op.create_index(op.f("ix_datasets_created_by"), "datasets", ["created_by"], unique=False)
    op.create_table(
        "email_digest_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("event_data", JSON_DOC, nullable=False),
        sa.Column("scheduled_for", TIMESTAMP, nullable=False),
        sa.Column("included_in_digest", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "event_type IN ('training.started', 'training.complete', 'training.failed', 'training.paused', 'training.resumed', 'hpo.campaign_started', 'hpo.trial_complete', 'hpo.campaign_complete', 'hpo.campaign_failed', 'accuracy.milestone', 'model.deployed', 'system.maintenance')",
            name=op.f("ck_email_digest_queue_event_type"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_email_digest_queue_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_digest_queue")),
    )
    op.create_index(
        "idx_digest_queue_event_scheduled",
        "email_digest_queue",
        ["event_type", "scheduled_for"],
        unique=False,
    )
    op.create_index(
        "idx_digest_queue_included",
        "email_digest_queue",
        ["included_in_digest", "scheduled_for"],
        unique=False,
    )
    op.create_index(
        "idx_digest_queue_user_scheduled",
        "email_digest_queue",
        ["user_id", "scheduled_for"],
        unique=False,
    )
    op.create_index(
        op.f("ix_email_digest_queue_scheduled_for"),
        "email_digest_queue",
        ["scheduled_for"],
        unique=False,
    )
    op.create_table(
        "email_logs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("recipient_email", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("template_name", sa.String(length=100), nullable=False),
        sa.Column("event_data", JSON_DOC, nullable=True),
        sa.Column("provider", sa.String(length=50), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("opened_at", TIMESTAMP, nullable=True),
        sa.Column("clicked_at", TIMESTAMP, nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "event_type IN ('training.started', 'training.complete', 'training.failed', 'training.paused', 'training.resumed', 'hpo.campaign_started', 'hpo.trial_complete', 'hpo.campaign_complete', 'hpo.campaign_failed', 'accuracy.milestone', 'model.deployed', 'system.maintenance')",
            name=op.f("ck_email_logs_event_type"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'delivered', 'failed', 'bounced', 'opened', 'clicked')",
            name=op.f("ck_email_logs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_email_logs_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_logs")),
    )
    op.create_index(op.f("ix_email_logs_created_at"), "email_logs", ["created_at"], unique=False)
    op.create_index(op.f("ix_email_logs_event_type"), "email_logs", ["event_type"], unique=False)
    op.create_index(op.f("ix_email_logs_sent_at"), "email_logs", ["sent_at"], unique=False)
    op.create_index(op.f("ix_email_logs_status"), "email_logs", ["status"], unique=False)
    op.create_index(op.f("ix_email_logs_user_id"), "email_logs", ["user_id"], unique=False)
    op.create_table(
        "login_history",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username_attempted", sa.String(length=255), nullable=True),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("location", sa.String(length=200), nullable=True),
        sa.Column("login_method", sa.String(length=50), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("failure_reason", sa.String(length=200), nullable=True),
        sa.Column("timestamp", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "login_method IN ('password', '2fa', 'backup_code', 'api_key')",
            name=op.f("ck_login_history_login_method"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_login_history_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_history")),
    )
    op.create_index(op.f("ix_login_history_success"), "login_history", ["success"], unique=False)
    op.create_index(
        op.f("ix_login_history_timestamp"), "login_history", ["timestamp"], unique=False
    )
    op.create_index(op.f("ix_login_history_user_id"), "login_history", ["user_id"], unique=False)
    op.create_table(
        "notification_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("email_enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("in_app_enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("slack_enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("webhook_enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "email_frequency", sa.String(length=20), server_default="immediate", nullable=False
        ),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "email_frequency IN ('immediate', 'digest_daily', 'digest_weekly')",
            name=op.f("ck_notification_preferences_email_frequency"),
        ),
        sa.CheckConstraint(
            "event_type IN ('training.started', 'training.complete', 'training.failed', 'training.paused', 'training.resumed', 'hpo.campaign_started', 'hpo.trial_complete', 'hpo.campaign_complete', 'hpo.campaign_failed', 'accuracy.milestone', 'model.deployed', 'system.maintenance')",
            name=op.f("ck_notification_preferences_event_type"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_preferences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_preferences")),
        sa.UniqueConstraint("user_id", "event_type", name="uq_user_event_type"),
    )
    op.create_index(
        op.f("ix_notification_preferences_event_type"),
        "notification_preferences",
        ["event_type"],
        unique=False,
    )
    op.create_table(
        "saved_searches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("is_pinned", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("usage_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_saved_searches_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_searches")),
        sa.UniqueConstraint("user_id", "name", name="uq_user_saved_search_name"),
    )
    op.create_index(
        op.f("ix_saved_searches_created_at"), "saved_searches", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_saved_searches_is_pinned"), "saved_searches", ["is_pinned"], unique=False
    )
    op.create_table(
        "session_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_token", sa.String(length=255), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("device_type", sa.String(length=50), nullable=True),
        sa.Column("browser", sa.String(length=100), nullable=True),
        sa.Column("location", sa.String(length=200), nullable=True),
        sa.Column("last_active", TIMESTAMP, nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("logged_out_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_session_logs_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_logs")),
        sa.UniqueConstraint("session_token", name=op.f("uq_session_logs_session_token")),
    )
    op.create_index(op.f("ix_session_logs_is_active"), "session_logs", ["is_active"], unique=False)
    op.create_index(op.f("ix_session_logs_user_id"), "session_logs", ["user_id"], unique=False)
    op.create_table(
        "system_logs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=50), nullable=False),
        sa.Column("details", JSON_DOC, nullable=True),
        sa.Column("error_message", sa.String(length=1000), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "status IN ('success', 'error', 'warning')", name=op.f("ck_system_logs_status")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_system_logs_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_logs")),
    )
    op.create_index(
        "idx_system_log_time_status", "system_logs", ["created_at", "status"], unique=False
    )
    op.create_index(
        "idx_system_log_user_time", "system_logs", ["user_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_system_logs_action"), "system_logs", ["action"], unique=False)
    op.create_index(op.f("ix_system_logs_status"), "system_logs", ["status"], unique=False)
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("slug", sa.String(length=50), nullable=False),
        sa.Column("color", sa.String(length=7), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("usage_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "color IS NULL OR (length(color) = 7 AND substr(color, 1, 1) = '#' AND ltrim(lower(substr(color, 2)), '0123456789abcdef') = '')",
            name=op.f("ck_tags_color"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_tags_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tags")),
        sa.UniqueConstraint("name", name=op.f("uq_tags_name")),
        sa.UniqueConstraint("slug", name=op.f("uq_tags_slug")),
    )
    op.create_index(op.f("ix_tags_created_at"), "tags", ["created_at"], unique=False)
    op.create_index(op.f("ix_tags_created_by"), "tags", ["created_by"], unique=False)
    op.create_table(
        "webhook_configurations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider_type", sa.String(length=50), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("enabled_events", JSON_DOC, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("settings", JSON_DOC, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "provider_type IN ('slack', 'teams', 'webhook')",
            name=op.f("ck_webhook_configurations_provider_type"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webhook_configurations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_configurations")),
        sa.UniqueConstraint("user_id", "webhook_url", name="uq_user_webhook_url"),
    )
    op.create_index(
        op.f("ix_webhook_configurations_created_at"),
        "webhook_configurations",
        ["created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_webhook_configurations_is_active"),
        "webhook_configurations",
        ["is_active"],
        unique=False,
    )
    op.create_index(
        op.f("ix_webhook_configurations_provider_type"),
        "webhook_configurations",
        ["provider_type"],
        unique=False,
    )
    op.create_table(
        "api_request_logs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("request_time", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("response_time_ms", sa.Double(), nullable=False),
        sa.Column("request_size_bytes", sa.Integer(), server_default="0", nullable=True),
        sa.Column("response_size_bytes", sa.Integer(), server_default="0", nullable=True),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("request_payload_sample", JSON_DOC, nullable=True),
        sa.Column("response_payload_sample", JSON_DOC, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_api_request_logs_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_request_logs")),
    )
    op.create_index(
        op.f("ix_api_request_logs_api_key_id"), "api_request_logs", ["api_key_id"], unique=False
    )
    op.create_index(
        op.f("ix_api_request_logs_created_at"), "api_request_logs", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_api_request_logs_endpoint"), "api_request_logs", ["endpoint"], unique=False
    )
    op.create_index(
        op.f("ix_api_request_logs_request_time"), "api_request_logs", ["request_time"], unique=False
    )
    op.create_index(
        op.f("ix_api_request_logs_status_code"), "api_request_logs", ["status_code"], unique=False
    )
    op.create_table(
        "api_usage",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_time_ms", sa.Integer(), nullable=True),
        sa.Column("timestamp", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_api_usage_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_usage")),
    )
    op.create_index(op.f("ix_api_usage_api_key_id"), "api_usage", ["api_key_id"], unique=False)
    op.create_index(op.f("ix_api_usage_timestamp"), "api_usage", ["timestamp"], unique=False)
    op.create_table(
        "hpo_campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "method",
            sa.Enum(
                "grid_search",
                "random_search",
                "bayesian",
                "hyperband",
                name="method",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "running",
                "paused",
                "completed",
                "failed",
                "cancelled",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("base_model_type", sa.String(length=50), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("search_space", JSON_DOC, nullable=False),
        sa.Column("budget", JSON_DOC, nullable=False),
        sa.Column("trials_completed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("trials_total", sa.Integer(), nullable=False),
        sa.Column("best_experiment_id", sa.Integer(), nullable=True),
        sa.Column("best_accuracy", sa.Double(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        *cycle_foreign_keys("hpo_campaigns"),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_hpo_campaigns_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_hpo_campaigns_dataset_id_datasets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hpo_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_hpo_campaigns_name")),
    )
    op.create_index(
        op.f("ix_hpo_campaigns_best_experiment_id"),
        "hpo_campaigns",
        ["best_experiment_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_hpo_campaigns_created_at"), "hpo_campaigns", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_hpo_campaigns_created_by"), "hpo_campaigns", ["created_by"], unique=False
    )
    op.create_index(
        op.f("ix_hpo_campaigns_dataset_id"), "hpo_campaigns", ["dataset_id"], unique=False
    )
    op.create_index(op.f("ix_hpo_campaigns_status"), "hpo_campaigns", ["status"], unique=False)
    op.create_table(
        "nas_campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column(
            "search_algorithm", sa.String(length=50), server_default="random", nullable=False
        ),
        sa.Column("num_trials", sa.Integer(), server_default="20", nullable=False),
        sa.Column("max_epochs_per_trial", sa.Integer(), server_default="10", nullable=False),
        sa.Column("search_space_config", JSON_DOC, nullable=True),
        sa.Column("status", sa.String(length=50), server_default="pending", nullable=False),
        sa.Column("best_trial_id", sa.Integer(), nullable=True),
        sa.Column("best_accuracy", sa.Double(), nullable=True),
        sa.Column("task_id", sa.String(length=200), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "search_algorithm IN ('random', 'bayesian', 'evolution')",
            name=op.f("ck_nas_campaigns_search_algorithm"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_nas_campaigns_status"),
        ),
        *cycle_foreign_keys("nas_campaigns"),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_nas_campaigns_dataset_id_datasets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nas_campaigns")),
    )
    op.create_index(
        op.f("ix_nas_campaigns_best_trial_id"), "nas_campaigns", ["best_trial_id"], unique=False
    )
    op.create_index(
        op.f("ix_nas_campaigns_created_at"), "nas_campaigns", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_nas_campaigns_dataset_id"), "nas_campaigns", ["dataset_id"], unique=False
    )
    op.create_index(op.f("ix_nas_campaigns_name"), "nas_campaigns", ["name"], unique=False)
    op.create_index(op.f("ix_nas_campaigns_status"), "nas_campaigns", ["status"], unique=False)
    op.create_table(
        "signals",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("signal_id", sa.String(length=100), nullable=False),
        sa.Column("fault_class", sa.String(length=50), nullable=False),
        sa.Column("severity", sa.String(length=50), nullable=True),
        sa.Column("file_path", sa.String(length=500), nullable=True),
        sa.Column("rms", sa.Double(), nullable=True),
        sa.Column("kurtosis", sa.Double(), nullable=True),
        sa.Column("dominant_frequency", sa.Double(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_signals_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
    )
    op.create_index(op.f("ix_signals_dataset_id"), "signals", ["dataset_id"], unique=False)
    op.create_index(op.f("ix_signals_fault_class"), "signals", ["fault_class"], unique=False)
    op.create_index(op.f("ix_signals_signal_id"), "signals", ["signal_id"], unique=False)
    op.create_table(
        "webhook_logs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("webhook_config_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("provider_type", sa.String(length=50), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=False),
        sa.Column("payload", JSON_DOC, nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("http_status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "event_type IN ('training.started', 'training.complete', 'training.failed', 'training.paused', 'training.resumed', 'hpo.campaign_started', 'hpo.trial_complete', 'hpo.campaign_complete', 'hpo.campaign_failed', 'accuracy.milestone', 'model.deployed', 'system.maintenance')",
            name=op.f("ck_webhook_logs_event_type"),
        ),
        sa.CheckConstraint(
            "provider_type IN ('slack', 'teams', 'webhook')",
            name=op.f("ck_webhook_logs_provider_type"),
        ),
        sa.CheckConstraint(
            "status IN ('sent', 'failed', 'rate_limited', 'timeout', 'invalid_url', 'provider_error')",
            name=op.f("ck_webhook_logs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webhook_logs_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["webhook_config_id"],
            ["webhook_configurations.id"],
            name=op.f("fk_webhook_logs_webhook_config_id_webhook_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_logs")),
    )
    op.create_index(
        op.f("ix_webhook_logs_created_at"), "webhook_logs", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_webhook_logs_event_type"), "webhook_logs", ["event_type"], unique=False
    )
    op.create_index(op.f("ix_webhook_logs_sent_at"), "webhook_logs", ["sent_at"], unique=False)
    op.create_index(op.f("ix_webhook_logs_status"), "webhook_logs", ["status"], unique=False)
    op.create_index(op.f("ix_webhook_logs_user_id"), "webhook_logs", ["user_id"], unique=False)
    op.create_index(
        op.f("ix_webhook_logs_webhook_config_id"),
        "webhook_logs",
        ["webhook_config_id"],
        unique=False,
    )
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("model_type", sa.String(length=50), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "running",
                "paused",
                "completed",
                "failed",
                "cancelled",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("config", JSON_DOC, nullable=False),
        sa.Column("hyperparameters", JSON_DOC, nullable=True),
        sa.Column("metrics", JSON_DOC, nullable=True),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.Column("total_epochs", sa.Integer(), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("model_path", sa.String(length=500), nullable=True),
        sa.Column("onnx_path", sa.String(length=500), nullable=True),
        sa.Column("results_dir", sa.String(length=500), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "search_vector",
            SEARCH_DOCUMENT,
            sa.Computed(search_document_sql(), persisted=True),
            nullable=True,
        ),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("hpo_campaign_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_experiments_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_experiments_dataset_id_datasets"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["hpo_campaign_id"],
            ["hpo_campaigns.id"],
            name=op.f("fk_experiments_hpo_campaign_id_hpo_campaigns"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
    )
    op.create_index(op.f("ix_experiments_created_at"), "experiments", ["created_at"], unique=False)
    op.create_index(op.f("ix_experiments_created_by"), "experiments", ["created_by"], unique=False)
    op.create_index(op.f("ix_experiments_dataset_id"), "experiments", ["dataset_id"], unique=False)
    op.create_index(
        op.f("ix_experiments_hpo_campaign_id"), "experiments", ["hpo_campaign_id"], unique=False
    )
    op.create_index(op.f("ix_experiments_model_type"), "experiments", ["model_type"], unique=False)
    if dialect() == "postgresql":
        op.create_index(
            "ix_experiments_search_vector",
            "experiments",
            ["search_vector"],
            unique=False,
            postgresql_using="gin",
        )
    else:
        for statement in SQLITE_FTS:
            op.execute(statement)
    op.create_index(op.f("ix_experiments_status"), "experiments", ["status"], unique=False)
    op.create_table(
        "nas_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("architecture", JSON_DOC, nullable=False),
        sa.Column("architecture_hash", sa.String(length=64), nullable=True),
        sa.Column("validation_accuracy", sa.Double(), nullable=True),
        sa.Column("validation_loss", sa.Double(), nullable=True),
        sa.Column("training_time", sa.Double(), nullable=True),
        sa.Column("num_parameters", sa.BigInteger(), nullable=True),
        sa.Column("flops", sa.BigInteger(), nullable=True),
        sa.Column("model_size_mb", sa.Double(), nullable=True),
        sa.Column("metrics", JSON_DOC, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["nas_campaigns.id"],
            name=op.f("fk_nas_trials_campaign_id_nas_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nas_trials")),
    )
    op.create_index(
        op.f("ix_nas_trials_architecture_hash"), "nas_trials", ["architecture_hash"], unique=False
    )
    op.create_index(
        "ix_nas_trials_campaign_trial", "nas_trials", ["campaign_id", "trial_number"], unique=True
    )
    op.create_index(op.f("ix_nas_trials_created_at"), "nas_trials", ["created_at"], unique=False)
    op.create_table(
        "experiment_tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("added_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["added_by"],
            ["users.id"],
            name=op.f("fk_experiment_tags_added_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_tags_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name=op.f("fk_experiment_tags_tag_id_tags"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_tags")),
        sa.UniqueConstraint("experiment_id", "tag_id", name="uq_experiment_tag"),
    )
    op.create_index(
        op.f("ix_experiment_tags_added_by"), "experiment_tags", ["added_by"], unique=False
    )
    op.create_index(
        op.f("ix_experiment_tags_created_at"), "experiment_tags", ["created_at"], unique=False
    )
    op.create_index(op.f("ix_experiment_tags_tag_id"), "experiment_tags", ["tag_id"], unique=False)
    op.create_table(
        "explanations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("signal_id", sa.String(length=100), nullable=False),
        sa.Column("method", sa.String(length=50), nullable=False),
        sa.Column("explanation_data", JSON_DOC, nullable=False),
        sa.Column("file_path", sa.String(length=500), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_explanations_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_explanations")),
    )
    op.create_index(
        op.f("ix_explanations_experiment_id"), "explanations", ["experiment_id"], unique=False
    )
    op.create_index(op.f("ix_explanations_signal_id"), "explanations", ["signal_id"], unique=False)
    op.create_table(
        "training_runs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("train_loss", sa.Double(), nullable=False),
        sa.Column("val_loss", sa.Double(), nullable=False),
        sa.Column("train_accuracy", sa.Double(), nullable=False),
        sa.Column("val_accuracy", sa.Double(), nullable=False),
        sa.Column("learning_rate", sa.Double(), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("checkpoint_path", sa.String(length=500), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_training_runs_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
    )
    op.create_index(
        op.f("ix_training_runs_created_at"), "training_runs", ["created_at"], unique=False
    )
    op.create_index(
        "ix_training_runs_experiment_epoch",
        "training_runs",
        ["experiment_id", "epoch"],
        unique=True,
    )
    if dialect() == "postgresql":
        for table, (column, name, referred) in CYCLE_FOREIGN_KEYS.items():
            op.create_foreign_key(name, table, referred, [column], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    if dialect() == "postgresql":
        for table, (_column, name, _referred) in CYCLE_FOREIGN_KEYS.items():
            op.drop_constraint(name, table, type_="foreignkey")
    else:
        for statement in SQLITE_FTS_DROP:
            op.execute(statement)
    for table in reversed(TABLES):
        op.drop_table(table)
