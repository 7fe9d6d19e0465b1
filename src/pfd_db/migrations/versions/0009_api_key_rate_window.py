"""The hourly rate limit of API keys kept on the key: a fixed window.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

``api_keys`` gains ``rate_window_start`` (when the key's current hour began;
NULL: no request yet) and ``rate_window_count`` (requests counted in it,
default 0). ``pfd_db.store.identity.rate_limits.consume`` counts each request
of ``pfd-db serve`` with one UPDATE of these, instead of a COUNT over
``api_usage``. Downgrading drops both (the counts are lost: each key's window
starts afresh, which only ever allows more). Plain ADD/DROP COLUMN on both
dialects (SQLite 3.35+ drops a column in place): nothing is copied.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
downgrade_loses_data = True

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate_window_start", TIMESTAMP, nullable=True))
    op.add_column(
        "api_keys",
        sa.Column("rate_window_count", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE api_keys DROP COLUMN rate_window_count")
    op.execute("ALTER TABLE api_keys DROP COLUMN rate_window_start")
