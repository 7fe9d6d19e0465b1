"""Test-only revision that fails half way: it creates a table and adds a column,
then runs a statement that cannot succeed. A migration must leave nothing behind.

Revision ID: 0002_fails
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_fails"
down_revision = "0001"
branch_labels = None
depends_on = None
downgrade_loses_data = False


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("half_done_flag", sa.Integer, nullable=True))
    op.execute("INSERT INTO no_such_table VALUES (1)")


def downgrade() -> None:
    op.drop_table("half_done")
