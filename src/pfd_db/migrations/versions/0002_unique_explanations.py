"""One cached explanation per (experiment, signal, method).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Duplicates left by concurrent cache misses are removed first, keeping the oldest
(the lowest id, the row the cache has always served). Frozen on purpose, like 0001:
the table is described here (for SQLite's batch copy, which then needs no reflection
and also works in offline ``--sql`` mode) rather than taken from the models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
downgrade_loses_data = False

CONSTRAINT = "uq_explanations_experiment_id_signal_id_method"
KEY = ["experiment_id", "signal_id", "method"]

DELETE_ALL_BUT_OLDEST = (
    "DELETE FROM explanations WHERE id NOT IN ("
    "SELECT min(id) FROM explanations GROUP BY experiment_id, signal_id, method)"
)

TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def explanations(*, unique: bool) -> sa.Table:
    """The explanations table as 0001 left it, with or without the unique key."""
    return sa.Table(
        "explanations",
        sa.MetaData(),
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
            name="fk_explanations_experiment_id_experiments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_explanations"),
        sa.Index("ix_explanations_experiment_id", "experiment_id"),
        sa.Index("ix_explanations_signal_id", "signal_id"),
        *([sa.UniqueConstraint(*KEY, name=CONSTRAINT)] if unique else []),
    )


def upgrade() -> None:
    op.execute(DELETE_ALL_BUT_OLDEST)
    with op.batch_alter_table("explanations", copy_from=explanations(unique=False)) as batch:
        batch.create_unique_constraint(op.f(CONSTRAINT), KEY)


def downgrade() -> None:
    with op.batch_alter_table("explanations", copy_from=explanations(unique=True)) as batch:
        batch.drop_constraint(op.f(CONSTRAINT), type_="unique")
