"""Tag usage counts kept by the database: triggers on experiment_tags.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Every statement that inserts, deletes or moves links moves each tag's usage_count
by the links it really changed (PostgreSQL: statement-level triggers with transition
tables, updating tags in id order; SQLite: row-level triggers), so the count is exact
for every writer, the ON DELETE cascades and raw SQL included. Upgrading recounts
every tag from its links first, mending any count that drifted before. Frozen on
purpose, like 0001: the DDL is written out here rather than taken from the models.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
downgrade_loses_data = False

RECOUNT = (
    "UPDATE tags SET usage_count = "
    "(SELECT count(*) FROM experiment_tags WHERE experiment_tags.tag_id = tags.id)"
)

POSTGRESQL_FUNCTION = """
CREATE OR REPLACE FUNCTION count_tag_links() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        FOR change IN
            SELECT tag_id, count(*) AS links FROM added_links GROUP BY tag_id ORDER BY tag_id
        LOOP
            UPDATE tags SET usage_count = usage_count + change.links WHERE id = change.tag_id;
        END LOOP;
    ELSIF TG_OP = 'DELETE' THEN
        FOR change IN
            SELECT tag_id, -count(*) AS links FROM removed_links GROUP BY tag_id ORDER BY tag_id
        LOOP
            UPDATE tags SET usage_count = usage_count + change.links WHERE id = change.tag_id;
        END LOOP;
    ELSE
        FOR change IN
            SELECT tag_id, sum(links) AS links FROM (
                SELECT tag_id, 1 AS links FROM added_links
                UNION ALL SELECT tag_id, -1 FROM removed_links
            ) AS moved GROUP BY tag_id HAVING sum(links) <> 0 ORDER BY tag_id
        LOOP
            UPDATE tags SET usage_count = usage_count + change.links WHERE id = change.tag_id;
        END LOOP;
    END IF;
    RETURN NULL;
END
$$"""

POSTGRESQL = [
    POSTGRESQL_FUNCTION,
    "CREATE TRIGGER experiment_tags_count_insert AFTER INSERT ON experiment_tags "
    "REFERENCING NEW TABLE AS added_links "
    "FOR EACH STATEMENT EXECUTE FUNCTION count_tag_links()",
    "CREATE TRIGGER experiment_tags_count_delete AFTER DELETE ON experiment_tags "
    "REFERENCING OLD TABLE AS removed_links "
    "FOR EACH STATEMENT EXECUTE FUNCTION count_tag_links()",
    "CREATE TRIGGER experiment_tags_count_update AFTER UPDATE ON experiment_tags "
    "REFERENCING OLD TABLE AS removed_links NEW TABLE AS added_links "
    "FOR EACH STATEMENT EXECUTE FUNCTION count_tag_links()",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS experiment_tags_count_insert ON experiment_tags",
    "DROP TRIGGER IF EXISTS experiment_tags_count_delete ON experiment_tags",
    "DROP TRIGGER IF EXISTS experiment_tags_count_update ON experiment_tags",
    "DROP FUNCTION IF EXISTS count_tag_links()",
]

SQLITE = [
    "CREATE TRIGGER experiment_tags_count_insert AFTER INSERT ON experiment_tags "
    "BEGIN UPDATE tags SET usage_count = usage_count + 1 WHERE id = NEW.tag_id; END",
    "CREATE TRIGGER experiment_tags_count_delete AFTER DELETE ON experiment_tags "
    "BEGIN UPDATE tags SET usage_count = usage_count - 1 WHERE id = OLD.tag_id; END",
    "CREATE TRIGGER experiment_tags_count_update AFTER UPDATE "
    "OF tag_id ON experiment_tags WHEN NEW.tag_id IS NOT OLD.tag_id "
    "BEGIN UPDATE tags SET usage_count = usage_count - 1 WHERE id = OLD.tag_id; "
    "UPDATE tags SET usage_count = usage_count + 1 WHERE id = NEW.tag_id; END",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS experiment_tags_count_insert",
    "DROP TRIGGER IF EXISTS experiment_tags_count_delete",
    "DROP TRIGGER IF EXISTS experiment_tags_count_update",
]


def upgrade() -> None:
    op.execute(RECOUNT)
    postgresql = op.get_context().dialect.name == "postgresql"
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    for statement in POSTGRESQL_DROP if postgresql else SQLITE_DROP:
        op.execute(statement)
