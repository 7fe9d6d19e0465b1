"""Any metric per epoch: training_runs.metrics.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A JSON document of finite numbers keyed by metric name (``{"f1": 0.81}``), for
the metrics an epoch has beyond the four fixed ones; NULL for the rows already
there, which keep every value they had. Downgrading drops the column (and with it
the extra metrics); the fixed columns are untouched either way. A plain ADD and
DROP COLUMN on both dialects (SQLite 3.35 or newer), so no table is copied.
Frozen on purpose, like 0001: the column is described here, not taken from the
models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
downgrade_loses_data = True

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.add_column("training_runs", sa.Column("metrics", JSON_DOC, nullable=True))


def downgrade() -> None:
    op.drop_column("training_runs", "metrics")
