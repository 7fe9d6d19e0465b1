"""The store's exceptions, rebuilt from the server's problem documents.

The server answers every error with an RFC 9457 problem document whose ``type``
is ``urn:pfd-db:problem:<slug>`` (:mod:`pfd_db.api.problems`). The slug names the
store's exception (``not-found`` is :class:`~pfd_db.errors.NotFound`,
``invalid-transition`` :class:`~pfd_db.errors.InvalidTransition`, ...); a document
without a known slug (a proxy's page, an older server) falls back on its status.
The ``detail`` becomes the message, so ``str(error)`` reads as the store's would.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from pfd_db import errors

PROBLEM_TYPE = "urn:pfd-db:problem:"

BY_SLUG: dict[str, type[errors.PfdDbError]] = {
    "invalid-query": errors.InvalidQuery,
    "invalid-transition": errors.InvalidTransition,
    "invalid-input": errors.InvalidInput,
    "bad-request": errors.InvalidInput,
    "body-too-large": errors.InvalidInput,
    "method-not-allowed": errors.InvalidInput,
    "not-found": errors.NotFound,
    "lease-lost": errors.LeaseLost,
    "conflict": errors.Conflict,
    "rate-limited": errors.RateLimited,
    "unauthorized": errors.AuthenticationFailed,
    "forbidden": errors.PermissionDenied,
    "database-unavailable": errors.DatabaseUnavailable,
    "misconfigured": errors.ConfigurationError,
    "host-unresolved": errors.HostUnresolved,
}
"""The server's problem slugs and the exception each stands for."""

BY_STATUS: dict[int, type[errors.PfdDbError]] = {
    400: errors.InvalidInput,
    401: errors.AuthenticationFailed,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    405: errors.InvalidInput,
    409: errors.Conflict,
    413: errors.InvalidInput,
    415: errors.InvalidInput,
    422: errors.InvalidInput,
    429: errors.RateLimited,
    502: errors.DatabaseUnavailable,
    503: errors.DatabaseUnavailable,
    504: errors.DatabaseUnavailable,
}
"""The exception for a status when the document names none the client knows."""

_POSITION = re.compile(r" \(at position (\d+)\)$")


def error_from_response(response: httpx.Response) -> errors.PfdDbError:
    """The store exception an error ``response`` stands for, with the problem's
    ``detail`` as its message. It also carries ``status`` (the HTTP status),
    ``problem`` (the document as a dict, ``{}`` if the body was none),
    ``field`` (the refused input's name, or None) and ``retry_after`` (seconds,
    or None)."""
    problem = _document(response)
    kind = _kind(problem.get("type"), response.status_code)
    detail = problem.get("detail")
    if not isinstance(detail, str) or not detail:
        detail = f"the server answered {response.status_code} {response.reason_phrase}".rstrip()
    error = _build(kind, detail, problem)
    field = problem.get("field")
    error.__dict__.update(
        status=response.status_code,
        problem=problem,
        field=field if isinstance(field, str) else None,
        retry_after=retry_after_seconds(response),
    )
    return error


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The response's ``Retry-After`` in seconds (a number or an HTTP date), or
    None when it has none or it does not parse."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    date = response.headers.get("date")
    try:
        now = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        now = None
    if now is None or when.tzinfo is None or now.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _document(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _kind(problem_type: object, status: int) -> type[errors.PfdDbError]:
    if isinstance(problem_type, str) and problem_type.startswith(PROBLEM_TYPE):
        known = BY_SLUG.get(problem_type.removeprefix(PROBLEM_TYPE))
        if known is not None:
            return known
    return BY_STATUS.get(status, errors.PfdDbError)


def _build(
    kind: type[errors.PfdDbError], detail: str, problem: dict[str, Any]
) -> errors.PfdDbError:
    """An instance of ``kind`` whose message is exactly ``detail`` (the classes
    whose constructors compose a message are built around it)."""
    if issubclass(kind, errors.InvalidQuery):
        position = problem.get("position")
        found = _POSITION.search(detail)
        if not isinstance(position, int) or isinstance(position, bool):
            position = int(found[1]) if found else 0
        message = detail[: found.start()] if found else detail
        return kind(message, position)
    error = kind.__new__(kind)
    Exception.__init__(error, detail)
    if isinstance(error, errors.AuthenticationFailed):
        error.reason = detail  # the server keeps the real reason to itself
    return error
