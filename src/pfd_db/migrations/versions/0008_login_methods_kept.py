"""Login methods pfd-db does not make are kept: 'oauth', 'other' and its detail.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

``login_history.login_method`` also accepts 'oauth' and 'other', and the new
``login_method_detail`` holds the method as its source named it when it is
'other': ``import-legacy`` keeps a method it cannot map instead of emptying it.

Downgrading empties the method of 'oauth' and 'other' rows (the old check has
neither) and drops the detail. Frozen on purpose, like 0001: the table is
described here as it stands before and after (for SQLite's batch copy, which then
needs no reflection and also works in offline ``--sql`` mode).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None
downgrade_loses_data = True

TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BEFORE = ["password", "2fa", "backup_code", "api_key"]
AFTER = [*BEFORE, "oauth", "other"]
CHECK = "ck_login_history_login_method"


def one_of(values: list[str]) -> str:
    return f"login_method IN ({', '.join(repr(v) for v in values)})"


def login_history(after: bool) -> sa.Table:
    name = "login_history"
    detail = [sa.Column("login_method_detail", sa.String(length=50), nullable=True)]
    return sa.Table(
        name,
        sa.MetaData(),
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
        *(detail if after else []),
        sa.CheckConstraint(one_of(AFTER if after else BEFORE), name=CHECK),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_login_history_user_id_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_login_history"),
        sa.Index("ix_login_history_success", "success"),
        sa.Index("ix_login_history_timestamp", "timestamp"),
        sa.Index("ix_login_history_user_id", "user_id"),
        sa.Index("ix_login_history_user_time", "user_id", "timestamp"),
    )


def upgrade() -> None:
    with op.batch_alter_table("login_history", copy_from=login_history(after=False)) as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.create_check_constraint(op.f(CHECK), one_of(AFTER))
        batch.add_column(sa.Column("login_method_detail", sa.String(length=50), nullable=True))


def downgrade() -> None:
    op.execute(
        "UPDATE login_history SET login_method = NULL WHERE login_method IN ('oauth', 'other')"
    )
    with op.batch_alter_table("login_history", copy_from=login_history(after=True)) as batch:
        batch.drop_column("login_method_detail")
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.create_check_constraint(op.f(CHECK), one_of(BEFORE))
