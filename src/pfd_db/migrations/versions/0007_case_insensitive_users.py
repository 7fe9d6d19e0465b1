"""Usernames and e-mail addresses unique regardless of case.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Two unique expression indexes, ``lower(username)`` and ``lower(email)`` on
``users``, so "Ada" cannot be created beside "ada" by any writer, the store's
check raced or bypassed. Upgrading refuses, changing nothing, a database whose
rows already collide, and lists them (id and value) for an operator to rename or
merge first (the offline SQL of ``migrate --sql`` cannot look: there a collision
fails at CREATE INDEX). Only indexes: no data changes either way. Frozen on
purpose, like 0001: the indexes are written out here rather than taken from the
models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pfd_db.errors import MigrationError

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
downgrade_loses_data = False

INDEXES = {"username": "ux_users_username_lower", "email": "ux_users_email_lower"}
SHOWN = 20  # colliding rows listed at most, per column


def upgrade() -> None:
    collisions = [] if op.get_context().as_sql else [c for col in INDEXES for c in _collisions(col)]
    if collisions:
        raise MigrationError(
            "cannot make usernames and e-mail addresses unique regardless of case: "
            f"these users collide ({'; '.join(collisions)}); rename or merge them, "
            "then migrate again (nothing was changed)"
        )
    for column, name in INDEXES.items():
        op.create_index(name, "users", [sa.text(f"lower({column})")], unique=True)


def downgrade() -> None:
    for name in reversed(INDEXES.values()):
        op.drop_index(name, table_name="users")


def _collisions(column: str) -> list[str]:
    """One line per group of users whose ``column`` is equal ignoring case."""
    rows = op.get_bind().execute(
        sa.text(
            f"SELECT lower({column}) AS folded, id, {column} AS value FROM users "  # noqa: S608
            f"WHERE lower({column}) IN (SELECT lower({column}) FROM users "
            f"GROUP BY lower({column}) HAVING count(*) > 1) ORDER BY folded, id"
        )
    )
    groups: dict[str, list[str]] = {}
    for folded, id_, value in rows:
        groups.setdefault(folded, []).append(f"id {id_} {value!r}")
    lines = [f"{column} {', '.join(users)}" for users in groups.values()]
    if len(lines) > SHOWN:
        lines = [*lines[:SHOWN], f"and {len(lines) - SHOWN} more {column} groups"]
    return lines
