"""Errors as ``application/problem+json`` (RFC 9457).

Every error answer is a problem document: ``type`` (``urn:pfd-db:problem:<slug>``,
stable: :mod:`pfd_db.client` rebuilds the store's exception from it), ``title``,
``status``, ``detail``, and for refused input the ``field``. The store's
errors map as documented in the README (InvalidInput/InvalidQuery 422,
NotFound 404, Conflict 409, AuthenticationFailed 401, RateLimited 429,
PermissionDenied 403); a database that cannot be reached is 503 with
``Retry-After``. Anything unexpected is a bare 500 problem: no stack trace and
no SQL ever reaches a response (the traceback goes to the server's log).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from pfd_db import errors

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:pfd-db:problem:"
MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_UNAVAILABLE = "5"
_FIELD_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_.\[\]]{0,63}): ")

# Most specific first: the first class the error is an instance of wins.
STORE_ERRORS: list[tuple[type[errors.PfdDbError], int, str]] = [
    (errors.InvalidQuery, 422, "invalid-query"),
    (errors.InvalidTransition, 422, "invalid-transition"),
    (errors.InvalidInput, 422, "invalid-input"),
    (errors.NotFound, 404, "not-found"),
    (errors.LeaseLost, 409, "lease-lost"),
    (errors.Conflict, 409, "conflict"),
    (errors.RateLimited, 429, "rate-limited"),
    (errors.AuthenticationFailed, 401, "unauthorized"),
    (errors.PermissionDenied, 403, "forbidden"),
    (errors.DatabaseUnavailable, 503, "database-unavailable"),
    (errors.MigrationError, 503, "database-unavailable"),
    (errors.ConfigurationError, 503, "misconfigured"),
    (errors.HostUnresolved, 502, "host-unresolved"),
]
_SLUGS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    422: "invalid-input",
    429: "rate-limited",
    503: "database-unavailable",
}
_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


class ApiProblem(Exception):
    """Raise to answer with a problem document (status, detail, optional field,
    extra members and headers)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        slug: str | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.slug = slug or _SLUGS.get(status, f"http-{status}")
        self.field = field
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(problem: ApiProblem) -> JSONResponse:
    """The response for ``problem``."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.field is not None:
        body["field"] = problem.field
    body.update(problem.extra)
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=MEDIA_TYPE)


def problem_for(exc: BaseException) -> ApiProblem:
    """The problem that answers ``exc`` (any exception)."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, errors.PfdDbError):
        return _store_problem(exc)
    if isinstance(exc, _UNAVAILABLE):
        return unavailable()
    log.error("unexpected error answering a request", exc_info=exc)
    return ApiProblem(500, "the server failed to answer; the error is in its log", slug="internal")


def unavailable(detail: str = "the database cannot be reached; try again shortly") -> ApiProblem:
    """The 503 problem, with ``Retry-After``."""
    return ApiProblem(
        503, detail, slug="database-unavailable", headers={"Retry-After": RETRY_AFTER_UNAVAILABLE}
    )


def _store_problem(exc: errors.PfdDbError) -> ApiProblem:
    status, slug = next(
        ((s, slug) for kind, s, slug in STORE_ERRORS if isinstance(exc, kind)), (400, "bad-request")
    )
    detail = str(exc)
    if status == 503:
        return unavailable(detail)
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="pfd-db"'
    if status == 429:
        headers["Retry-After"] = str(getattr(exc, "retry_after", 60))
    if isinstance(exc, errors.InvalidQuery):
        extra["position"] = exc.position
    field = getattr(exc, "field", None)
    if field is None and status == 422:
        found = _FIELD_PREFIX.match(detail)
        field = found[1] if found else ("q" if isinstance(exc, errors.InvalidQuery) else None)
    return ApiProblem(status, detail, slug=slug, field=field, headers=headers, **extra)


def _validation_problem(exc: RequestValidationError) -> ApiProblem:
    found = exc.errors()
    first = found[0] if found else {}
    location = [str(part) for part in first.get("loc", ())]
    sources = (["body"], ["query"], ["path"], ["header"], ["cookie"])
    field = ".".join(location[1:] if location[:1] in sources else location)
    if first.get("type") == "json_invalid":
        field = "body"
    message = str(first.get("msg", "invalid input"))
    detail = f"{field}: {message}" if field else message
    if len(found) > 1:
        detail += f" (and {len(found) - 1} more)"
    return ApiProblem(422, detail, slug="invalid-input", field=field or None)


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(problem_for(exc))


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(_validation_problem(exc))


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(ApiProblem(exc.status_code, detail, headers=headers))


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document."""
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(ApiProblem, _handle_problem)
    app.add_exception_handler(errors.PfdDbError, _handle_problem)
    for kind in _UNAVAILABLE:
        app.add_exception_handler(kind, _handle_problem)
    app.add_exception_handler(Exception, _handle_problem)
