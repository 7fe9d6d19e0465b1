"""Incremental rollups: a watermark per period type, and the periods late rows reopened.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

``rollup_watermarks`` holds one row per aggregation type ("hourly", "daily",
"weekly"; unique): ``computed_through``, the start of the period that was open
when :func:`pfd_db.store.ops.rollup_schedule.refresh` last ran. Every period
before it is closed and its ``api_metrics_summary`` row is computed; a refresh
computes only the periods from it to now, and the stale ones below.
``rollup_stale_periods`` holds ``(aggregation_type, period_start)`` (unique):
the closed periods that ``record_requests`` wrote late rows into, which the next
refresh computes again and then forgets. No row is seeded: a type without a
watermark is computed from the earliest request on its first refresh.

Two new tables on both dialects; nothing existing changes. Downgrading drops
them: the watermarks and the stale marks are lost (the next refresh after an
upgrade computes everything again, which is slow, not wrong), so
``downgrade_loses_data``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
downgrade_loses_data = True

TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KINDS = "aggregation_type IN ('hourly', 'daily', 'weekly')"


def timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "rollup_watermarks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("aggregation_type", sa.String(length=20), nullable=False),
        sa.Column("computed_through", TIMESTAMP, nullable=True),
        *timestamps(),
        sa.CheckConstraint(KINDS, name="ck_rollup_watermarks_aggregation_type"),
        sa.PrimaryKeyConstraint("id", name="pk_rollup_watermarks"),
        sa.UniqueConstraint("aggregation_type", name="uq_rollup_watermarks_aggregation_type"),
    )
    op.create_table(
        "rollup_stale_periods",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("aggregation_type", sa.String(length=20), nullable=False),
        sa.Column("period_start", TIMESTAMP, nullable=False),
        *timestamps(),
        sa.CheckConstraint(KINDS, name="ck_rollup_stale_periods_aggregation_type"),
        sa.PrimaryKeyConstraint("id", name="pk_rollup_stale_periods"),
        sa.UniqueConstraint(
            "aggregation_type",
            "period_start",
            name="uq_rollup_stale_periods_aggregation_type_period_start",
        ),
    )


def downgrade() -> None:
    op.drop_table("rollup_stale_periods")
    op.drop_table("rollup_watermarks")
