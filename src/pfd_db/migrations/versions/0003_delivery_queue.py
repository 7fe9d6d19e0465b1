"""The delivery queue of e-mails and webhooks, webhook signing secrets, test.webhook.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

email_logs and webhook_logs become the queue that workers claim from: an attempt
count, the time of the next attempt, and a lease (owner and expiry), with a partial
index over the pending rows. webhook_logs gains the status 'pending' (email_logs has
it already), the time of the latest failed attempt and the response time; webhook
configurations gain an encrypted signing secret and the reason they were disabled.
The event-type checks accept 'test.webhook', the event of a webhook's "send test".

Downgrading marks still-queued webhook deliveries failed (the old status check has
no 'pending') and deletes test.webhook rows. Frozen on purpose, like 0001: the
tables are described here as they stand before and after (for SQLite's batch copy,
which then needs no reflection and also works in offline ``--sql`` mode) rather than
taken from the models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
downgrade_loses_data = True

TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

EVENTS = [
    "training.started",
    "training.complete",
    "training.failed",
    "training.paused",
    "training.resumed",
    "hpo.campaign_started",
    "hpo.trial_complete",
    "hpo.campaign_complete",
    "hpo.campaign_failed",
    "accuracy.milestone",
    "model.deployed",
    "system.maintenance",
]
TEST_EVENT = "test.webhook"
WEBHOOK_STATUSES = ["sent", "failed", "rate_limited", "timeout", "invalid_url", "provider_error"]
EVENT_TABLES = ["notification_preferences", "email_logs", "email_digest_queue", "webhook_logs"]
QUEUE_TABLES = ["email_logs", "webhook_logs"]
PENDING_ONLY = sa.text("status = 'pending'")


def one_of(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def check(table: str, column: str, values: list[str]) -> sa.CheckConstraint:
    return sa.CheckConstraint(one_of(column, values), name=f"ck_{table}_{column}")


def timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
    ]


def user_key(table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete=ondelete
    )


def indexes(table: str, *columns: str) -> list[sa.Index]:
    return [sa.Index(f"ix_{table}_{column}", column) for column in columns]


def queue_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
    ]


def due_index(table: str) -> sa.Index:
    return sa.Index(
        f"ix_{table}_due",
        "next_attempt_at",
        postgresql_where=PENDING_ONLY,
        sqlite_where=PENDING_ONLY,
    )


def notification_preferences(after: bool) -> sa.Table:
    name = "notification_preferences"
    return sa.Table(
        name,
        sa.MetaData(),
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
        *timestamps(),
        check(name, "email_frequency", ["immediate", "digest_daily", "digest_weekly"]),
        check(name, "event_type", [*EVENTS, TEST_EVENT] if after else EVENTS),
        user_key(name, "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        sa.UniqueConstraint("user_id", "event_type", name="uq_user_event_type"),
        *indexes(name, "event_type"),
    )


def email_logs(after: bool) -> sa.Table:
    name = "email_logs"
    return sa.Table(
        name,
        sa.MetaData(),
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
        *timestamps(),
        *(queue_columns() if after else []),
        check(name, "event_type", [*EVENTS, TEST_EVENT] if after else EVENTS),
        check(
            name,
            "status",
            ["pending", "sent", "delivered", "failed", "bounced", "opened", "clicked"],
        ),
        user_key(name, "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        *indexes(name, "created_at", "event_type", "sent_at", "status", "user_id"),
        *([due_index(name)] if after else []),
    )


def email_digest_queue(after: bool) -> sa.Table:
    name = "email_digest_queue"
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("event_data", JSON_DOC, nullable=False),
        sa.Column("scheduled_for", TIMESTAMP, nullable=False),
        sa.Column("included_in_digest", sa.Boolean(), server_default=sa.false(), nullable=False),
        *timestamps(),
        check(name, "event_type", [*EVENTS, TEST_EVENT] if after else EVENTS),
        user_key(name, "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        sa.Index("idx_digest_queue_event_scheduled", "event_type", "scheduled_for"),
        sa.Index("idx_digest_queue_included", "included_in_digest", "scheduled_for"),
        sa.Index("idx_digest_queue_user_scheduled", "user_id", "scheduled_for"),
        *indexes(name, "scheduled_for"),
    )


def webhook_logs(after: bool) -> sa.Table:
    name = "webhook_logs"
    return sa.Table(
        name,
        sa.MetaData(),
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
        *timestamps(),
        *(queue_columns() if after else []),
        *(
            [
                sa.Column("failed_at", TIMESTAMP, nullable=True),
                sa.Column("response_time_ms", sa.Double(), nullable=True),
            ]
            if after
            else []
        ),
        check(name, "event_type", [*EVENTS, TEST_EVENT] if after else EVENTS),
        check(name, "provider_type", ["slack", "teams", "webhook"]),
        check(name, "status", ["pending", *WEBHOOK_STATUSES] if after else WEBHOOK_STATUSES),
        user_key(name, "SET NULL"),
        sa.ForeignKeyConstraint(
            ["webhook_config_id"],
            ["webhook_configurations.id"],
            name="fk_webhook_logs_webhook_config_id_webhook_configurations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        *indexes(
            name, "created_at", "event_type", "sent_at", "status", "user_id", "webhook_config_id"
        ),
        *([due_index(name)] if after else []),
    )


def webhook_configurations(after: bool) -> sa.Table:
    name = "webhook_configurations"
    return sa.Table(
        name,
        sa.MetaData(),
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
        *timestamps(),
        *(
            [
                sa.Column("signing_secret", sa.Text(), nullable=True),
                sa.Column("disabled_reason", sa.Text(), nullable=True),
            ]
            if after
            else []
        ),
        check(name, "provider_type", ["slack", "teams", "webhook"]),
        user_key(name, "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        sa.UniqueConstraint("user_id", "webhook_url", name="uq_user_webhook_url"),
        *indexes(name, "created_at", "is_active", "provider_type"),
    )


TABLES = {
    "notification_preferences": notification_preferences,
    "email_logs": email_logs,
    "email_digest_queue": email_digest_queue,
    "webhook_logs": webhook_logs,
}


def replace_check(batch: BatchOperations, table: str, column: str, values: list[str]) -> None:
    name = op.f(f"ck_{table}_{column}")
    batch.drop_constraint(name, type_="check")
    batch.create_check_constraint(name, one_of(column, values))


def upgrade() -> None:
    for table, described in TABLES.items():
        with op.batch_alter_table(table, copy_from=described(after=False)) as batch:
            replace_check(batch, table, "event_type", [*EVENTS, TEST_EVENT])
            if table in QUEUE_TABLES:
                for column in queue_columns():
                    batch.add_column(column)
                batch.create_index(
                    f"ix_{table}_due",
                    ["next_attempt_at"],
                    unique=False,
                    postgresql_where=PENDING_ONLY,
                    sqlite_where=PENDING_ONLY,
                )
            if table == "webhook_logs":
                replace_check(batch, table, "status", ["pending", *WEBHOOK_STATUSES])
                batch.add_column(sa.Column("failed_at", TIMESTAMP, nullable=True))
                batch.add_column(sa.Column("response_time_ms", sa.Double(), nullable=True))
    with op.batch_alter_table(
        "webhook_configurations", copy_from=webhook_configurations(after=False)
    ) as batch:
        batch.add_column(sa.Column("signing_secret", sa.Text(), nullable=True))
        batch.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))
    # E-mails queued before the queue existed fall due in the order they were queued.
    op.execute("UPDATE email_logs SET next_attempt_at = created_at WHERE status = 'pending'")


def downgrade() -> None:
    for table in TABLES:
        rows = sa.table(table, sa.column("event_type"))
        op.execute(rows.delete().where(rows.c.event_type == TEST_EVENT))
    op.execute(
        "UPDATE webhook_logs SET status = 'failed', "
        "error_message = coalesce(error_message, 'still queued when revision 0003 was undone') "
        "WHERE status = 'pending'"
    )
    with op.batch_alter_table(
        "webhook_configurations", copy_from=webhook_configurations(after=True)
    ) as batch:
        batch.drop_column("disabled_reason")
        batch.drop_column("signing_secret")
    for table, described in reversed(TABLES.items()):
        with op.batch_alter_table(table, copy_from=described(after=True)) as batch:
            if table == "webhook_logs":
                batch.drop_column("response_time_ms")
                batch.drop_column("failed_at")
                replace_check(batch, table, "status", WEBHOOK_STATUSES)
            if table in QUEUE_TABLES:
                batch.drop_index(f"ix_{table}_due")
                for column in reversed(queue_columns()):
                    batch.drop_column(column.name)
            replace_check(batch, table, "event_type", EVENTS)
