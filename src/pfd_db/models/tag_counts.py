"""``tags.usage_count``, kept by the database: triggers on ``experiment_tags``.

Every statement that inserts, deletes or moves link rows moves the count of
each tag concerned by the number of its rows the statement really changed, in
the same transaction: ``UPDATE tags SET usage_count = usage_count + :n``, never
a value read and written back. So the count is exact for every writer and every
path: the store, links added or deleted through the ORM, the database's own ON
DELETE CASCADE when an experiment or a tag goes (however it is deleted), bulk
statements and raw SQL.

PostgreSQL: statement-level triggers with transition tables, which update each
tag once per statement, after the statement's link rows and in tag id order,
so concurrent writers lock tags in one order. SQLite (one writer at a time):
row-level triggers. ``create_all`` and migration 0003 build the same objects.
"""

from __future__ import annotations

from sqlalchemy import DDL, event
from sqlalchemy.sql.expression import FromClause

FUNCTION = "count_tag_links"
TRIGGERS = {
    "INSERT": "experiment_tags_count_insert",
    "DELETE": "experiment_tags_count_delete",
    "UPDATE": "experiment_tags_count_update",
}

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
POSTGRESQL_FUNCTION_DROP = f"DROP FUNCTION IF EXISTS {FUNCTION}()"

_TRANSITION_TABLES = {
    "INSERT": "NEW TABLE AS added_links",
    "DELETE": "OLD TABLE AS removed_links",
    "UPDATE": "OLD TABLE AS removed_links NEW TABLE AS added_links",
}

_SQLITE_BODIES = {
    "INSERT": "UPDATE tags SET usage_count = usage_count + 1 WHERE id = NEW.tag_id;",
    "DELETE": "UPDATE tags SET usage_count = usage_count - 1 WHERE id = OLD.tag_id;",
    "UPDATE": "UPDATE tags SET usage_count = usage_count - 1 WHERE id = OLD.tag_id; "
    "UPDATE tags SET usage_count = usage_count + 1 WHERE id = NEW.tag_id;",
}


def postgresql_statements() -> list[str]:
    """The DDL that creates the counting function and its triggers on PostgreSQL."""
    return [POSTGRESQL_FUNCTION] + [
        f"CREATE TRIGGER {name} AFTER {event_} ON experiment_tags "
        f"REFERENCING {_TRANSITION_TABLES[event_]} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        for event_, name in TRIGGERS.items()
    ]


def sqlite_statements() -> list[str]:
    """The DDL that creates the counting triggers on SQLite."""
    when = {"UPDATE": "OF tag_id ON experiment_tags WHEN NEW.tag_id IS NOT OLD.tag_id"}
    return [
        f"CREATE TRIGGER {name} AFTER {event_} "
        f"{when.get(event_, 'ON experiment_tags')} BEGIN {_SQLITE_BODIES[event_]} END"
        for event_, name in TRIGGERS.items()
    ]


def attach_usage_count_triggers(table: FromClause) -> None:
    """Have ``create_all`` build the triggers after ``experiment_tags`` (dropping
    the table drops them; the PostgreSQL function goes after it)."""
    for statement in postgresql_statements():
        event.listen(table, "after_create", _only_on("postgresql", statement))
    for statement in sqlite_statements():
        event.listen(table, "after_create", _only_on("sqlite", statement))
    event.listen(table, "after_drop", _only_on("postgresql", POSTGRESQL_FUNCTION_DROP))


def _only_on(dialect: str, statement: str) -> DDL:
    return DDL(statement).execute_if(dialect=dialect)  # type: ignore[no-untyped-call]
