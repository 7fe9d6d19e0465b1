"""Indexes for the dashboard's traffic, security and audit queries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

What the queries of :mod:`pfd_db.store.ops.request_figures`, :mod:`pfd_db.store.ops.audit`,
``logins.history`` and ``api_keys.check_rate_limit`` read, so each is served by an
index instead of a scan and a sort:

- ``api_request_logs``: ``(request_time, response_time_ms, status_code,
  endpoint)`` holds every figure a rollup or a timeline reads, so both read the
  index alone; ``(endpoint, request_time)`` and ``(api_key_id, request_time)``
  serve the recent requests of one endpoint or key, newest first; the partial
  ``(request_time) WHERE status_code >= 400`` serves the error log.
- ``api_usage (api_key_id, timestamp)``: a key's usage per day and its rate limit.
- ``login_history (user_id, timestamp)``: a user's login history, newest first.
- ``system_logs (action, created_at)``: audit entries of one action.

Only indexes: no data changes either way. Frozen on purpose, like 0001: the
indexes are written out here rather than taken from the models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
downgrade_loses_data = False

ERRORS_ONLY = sa.text("status_code >= 400")

INDEXES: list[tuple[str, str, list[str]]] = [
    (
        "ix_api_request_logs_rollup",
        "api_request_logs",
        ["request_time", "response_time_ms", "status_code", "endpoint"],
    ),
    ("ix_api_request_logs_endpoint_time", "api_request_logs", ["endpoint", "request_time"]),
    ("ix_api_request_logs_key_time", "api_request_logs", ["api_key_id", "request_time"]),
    ("ix_api_usage_key_time", "api_usage", ["api_key_id", "timestamp"]),
    ("ix_login_history_user_time", "login_history", ["user_id", "timestamp"]),
    ("idx_system_log_action_time", "system_logs", ["action", "created_at"]),
]
ERRORS_INDEX = "ix_api_request_logs_errors"


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    op.create_index(
        ERRORS_INDEX,
        "api_request_logs",
        ["request_time"],
        postgresql_where=ERRORS_ONLY,
        sqlite_where=ERRORS_ONLY,
    )


def downgrade() -> None:
    op.drop_index(ERRORS_INDEX, table_name="api_request_logs")
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
