"""API traffic, listed: the newest requests of a time range, filtered, a page at a time.

Pages are keyset cursors (:func:`pfd_db.store.paging.newest_page`): the next page
starts before the id of the last request of this one. Each list is served by an
index of revision 0006. A request failed when its status is 400 or more.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal_column
from sqlalchemy.orm import Session

from pfd_db.models import APIKey, APIRequestLog
from pfd_db.store import paging
from pfd_db.store.ops import request_log
from pfd_db.store.validation import require_text
from pfd_db.store.writes import load

ERRORS = APIRequestLog.status_code >= literal_column("400")
"""Failed requests, in the words of the partial index ``ix_api_request_logs_errors``
(a constant, not a parameter, so that the planner can use it)."""


def recent_requests(
    session: Session,
    since: datetime,
    until: datetime | None = None,
    *,
    endpoint: str | None = None,
    api_key: APIKey | int | None = None,
    status_code: int | None = None,
    errors_only: bool = False,
    limit: int = 50,
    before_id: int | None = None,
) -> list[APIRequestLog]:
    """The newest requests from ``since`` (inclusive) to ``until`` (exclusive; open
    when None), at most ``limit`` (up to 1000), newest first: of one ``endpoint``,
    one ``api_key``, one ``status_code``, or only failures (``errors_only``:
    status 400 or more) when given. The next page: ``before_id`` = the id of the
    last request of this one.

    Served by ``ix_api_request_logs_request_time``, or with a filter by
    ``ix_api_request_logs_endpoint_time``, ``ix_api_request_logs_key_time`` or the
    partial ``ix_api_request_logs_errors``.
    """
    conditions = paging.window(APIRequestLog.request_time, since, until)
    if endpoint is not None:
        endpoint = require_text(endpoint, "endpoint", request_log.ENDPOINT_MAX)
        conditions.append(APIRequestLog.endpoint == endpoint)
    if api_key is not None:
        conditions.append(APIRequestLog.api_key_id == load(session, APIKey, api_key, "api_key").id)
    if status_code is not None:
        conditions.append(APIRequestLog.status_code == request_log.status_code(status_code))
    if errors_only:
        conditions.append(ERRORS)
    return paging.newest_page(
        session, APIRequestLog.request_time, APIRequestLog.id, conditions, limit, before_id
    )


def error_logs(
    session: Session,
    since: datetime,
    until: datetime | None = None,
    *,
    endpoint: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[APIRequestLog]:
    """The newest failed requests (status 400 or more) from ``since`` to ``until``,
    newest first, with their error messages: :func:`recent_requests` with
    ``errors_only``. Served by the partial index ``ix_api_request_logs_errors``."""
    return recent_requests(
        session,
        since,
        until,
        endpoint=endpoint,
        errors_only=True,
        limit=limit,
        before_id=before_id,
    )
