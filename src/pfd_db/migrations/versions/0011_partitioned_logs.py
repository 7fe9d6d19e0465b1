"""The four big log tables range-partitioned by month on PostgreSQL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08

``api_request_logs`` (on ``request_time``), ``api_usage`` (``timestamp``),
``system_logs`` (``created_at``) and ``login_history`` (``timestamp``) become
``PARTITION BY RANGE`` tables with one partition per calendar month (UTC),
named ``<table>_pYYYY_MM``, and a ``<table>_default`` partition that takes any
row outside them, so an insert never fails for want of a partition. A
partitioned table's primary key must hold its partition key: it becomes
``(id, <time column>)`` (ids still come from the table's own sequence, so each
stays unique). Columns, defaults, checks, foreign keys and indexes are the same
as before, the indexes partitioned (one per partition). Nothing references these
tables, so no foreign key points at the new primary key.

Upgrading renames each table aside, creates the partitioned table, a partition
for every month its rows fall in (at most :data:`MONTHS_BACK_MAX` back; older
and later rows go to the default partition) and for the current month and
three months ahead, moves the rows in with one ``INSERT ... SELECT``, then
builds the keys and indexes and drops the old table. Later months are created by
:func:`pfd_db.store.ops.partitions.ensure_partitions` (``pfd-db maintain`` and
``pfd-db clean``). The month list is computed by the server (a ``DO`` block), so
``--sql`` output works too.

Downgrading moves the rows back into plain tables with ``(id)`` primary keys;
nothing is lost (two rows with the same id, which only an explicit id can make,
stop it with the duplicate key named). A table that is not partitioned (a
database made with ``create_all`` and adopted) is left as it is both ways on
downgrade. SQLite: nothing changes either way. Frozen on purpose, like 0001:
the keys and indexes are written out here rather than taken from the models.
"""

from __future__ import annotations

from typing import NamedTuple

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None
downgrade_loses_data = False

MONTHS_AHEAD = 3
MONTHS_BACK_MAX = 120
"""Older rows than this many months before the upgrade go to the default partition."""


class Log(NamedTuple):
    """One table as 0010 left it: its time column, foreign key and indexes.
    (A NamedTuple: Alembic loads a revision outside sys.modules, where a
    dataclass cannot resolve its annotations.)"""

    table: str
    column: str
    foreign_key: tuple[str, str, str]
    """(column, referred table, ON DELETE action)"""
    indexes: tuple[tuple[str, str], ...]
    """(name, what follows ``ON <table>``)"""

    @property
    def aside(self) -> str:
        return f"{self.table}_0011_aside"

    @property
    def sequence(self) -> str:
        return f"{self.table}_id_seq"


LOGS = (
    Log(
        "api_request_logs",
        "request_time",
        ("api_key_id", "api_keys", "SET NULL"),
        (
            ("ix_api_request_logs_api_key_id", "(api_key_id)"),
            ("ix_api_request_logs_created_at", "(created_at)"),
            ("ix_api_request_logs_endpoint", "(endpoint)"),
            ("ix_api_request_logs_request_time", "(request_time)"),
            ("ix_api_request_logs_status_code", "(status_code)"),
            (
                "ix_api_request_logs_rollup",
                "(request_time, response_time_ms, status_code, endpoint)",
            ),
            ("ix_api_request_logs_endpoint_time", "(endpoint, request_time)"),
            ("ix_api_request_logs_key_time", "(api_key_id, request_time)"),
            ("ix_api_request_logs_errors", "(request_time) WHERE status_code >= 400"),
        ),
    ),
    Log(
        "api_usage",
        "timestamp",
        ("api_key_id", "api_keys", "CASCADE"),
        (
            ("ix_api_usage_api_key_id", "(api_key_id)"),
            ("ix_api_usage_timestamp", '("timestamp")'),
            ("ix_api_usage_key_time", '(api_key_id, "timestamp")'),
        ),
    ),
    Log(
        "system_logs",
        "created_at",
        ("user_id", "users", "SET NULL"),
        (
            ("idx_system_log_time_status", "(created_at, status)"),
            ("idx_system_log_user_time", "(user_id, created_at)"),
            ("ix_system_logs_action", "(action)"),
            ("ix_system_logs_status", "(status)"),
            ("idx_system_log_action_time", "(action, created_at)"),
        ),
    ),
    Log(
        "login_history",
        "timestamp",
        ("user_id", "users", "SET NULL"),
        (
            ("ix_login_history_success", "(success)"),
            ("ix_login_history_timestamp", '("timestamp")'),
            ("ix_login_history_user_id", "(user_id)"),
            ("ix_login_history_user_time", '(user_id, "timestamp")'),
        ),
    ),
)


def _keys_and_indexes(log: Log, primary_key: str) -> list[str]:
    """The primary key, the foreign key and the indexes of ``log``'s table."""
    column, referred, action = log.foreign_key
    return [
        f"ALTER TABLE {log.table} ADD CONSTRAINT pk_{log.table} PRIMARY KEY ({primary_key})",
        f"ALTER TABLE {log.table} ADD CONSTRAINT fk_{log.table}_{column}_{referred} "
        f"FOREIGN KEY ({column}) REFERENCES {referred} (id) ON DELETE {action}",
        *(f"CREATE INDEX {name} ON {log.table} {what}" for name, what in log.indexes),
    ]


def _set_aside(log: Log) -> list[str]:
    """Rename ``log``'s table aside and free the names its new form takes."""
    return [
        f"ALTER TABLE {log.table} RENAME TO {log.aside}",
        f"ALTER TABLE {log.aside} DROP CONSTRAINT pk_{log.table}",
        *(f"DROP INDEX {name}" for name, _what in log.indexes),
    ]


def _monthly_partitions(log: Log) -> str:
    """A DO block, so that the server computes the months (also in ``--sql``
    output): a partition for every month rows fall in (at most MONTHS_BACK_MAX
    back), and for the current month and MONTHS_AHEAD after it."""
    return f"""
DO $$
DECLARE
    now_month timestamptz := date_trunc('month', now(), 'UTC');
    month timestamptz;
BEGIN
    FOR month IN
        SELECT DISTINCT date_trunc('month', "{log.column}", 'UTC') FROM {log.aside}
        WHERE "{log.column}" >= now_month - interval '{MONTHS_BACK_MAX} months'
          AND "{log.column}" < now_month
        UNION
        SELECT generate_series(now_month, now_month + interval '{MONTHS_AHEAD} months',
                               interval '1 month')
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF {log.table} FOR VALUES FROM (%L) TO (%L)',
            '{log.table}_p' || to_char(month AT TIME ZONE 'UTC', 'YYYY_MM'),
            month, month + interval '1 month'
        );
    END LOOP;
END
$$"""  # noqa: S608 - frozen names


def _partition(log: Log) -> list[str]:
    return [
        *_set_aside(log),
        f"CREATE TABLE {log.table} (LIKE {log.aside} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        f'INCLUDING STORAGE) PARTITION BY RANGE ("{log.column}")',
        f"CREATE TABLE {log.table}_default PARTITION OF {log.table} DEFAULT",
        _monthly_partitions(log),
        f"INSERT INTO {log.table} SELECT * FROM {log.aside}",  # noqa: S608 - frozen names
        *_keys_and_indexes(log, f'id, "{log.column}"'),
        f"ALTER SEQUENCE {log.sequence} OWNED BY {log.table}.id",
        f"DROP TABLE {log.aside}",
    ]


def _unpartition(log: Log) -> str:
    """A DO block that makes ``log``'s table plain again when it is partitioned."""
    statements = [
        f"ALTER TABLE {log.table} RENAME TO {log.aside}",
        f"ALTER TABLE {log.aside} DROP CONSTRAINT pk_{log.table}",
        *(f"DROP INDEX {name}" for name, _what in log.indexes),
        f"CREATE TABLE {log.table} (LIKE {log.aside} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING STORAGE)",
        f"INSERT INTO {log.table} SELECT * FROM {log.aside}",  # noqa: S608 - frozen names
        *_keys_and_indexes(log, "id"),
        f"ALTER SEQUENCE {log.sequence} OWNED BY {log.table}.id",
        f"DROP TABLE {log.aside}",  # and every partition with it
    ]
    executed = "\n".join(f"        EXECUTE $s${s}$s$;" for s in statements)
    return f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_partitioned_table WHERE partrelid = to_regclass('{log.table}'))
    THEN
{executed}
    END IF;
END
$$"""


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for log in LOGS:
        for statement in _partition(log):
            op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for log in reversed(LOGS):
        op.execute(_unpartition(log))
