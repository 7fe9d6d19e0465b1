"""The outermost middleware: every request measured, counted and (under ``/api``) logged.

:class:`RequestTiming` wraps the auth and body-limit middleware, so it sees every
request, the refused ones included (401, 403, 413, 422, 429, ...). For each HTTP
request it takes the status, the time from the start to the end of the
response, the body sizes, the route template and the caller's key; it feeds the
app's :class:`~pfd_db.api.metrics.Metrics` and, for paths under ``/api``, hands a
row to the app's :class:`~pfd_db.api.request_log.RequestLog` (a buffer: no I/O
here).

What is stored holds no secret: the endpoint is the route template
(``/api/v1/experiments/{id}``), never the path the client sent, nor its query
string; no header is kept but the user agent; no body; the error message is the
status's reason phrase alone. A path that matches no route is stored as
``(unmatched)``. Pure ASGI: no thread hop, no ``Request`` object.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pfd_db.api.metrics import UNMATCHED, Metrics
from pfd_db.api.request_log import RequestLog

LOGGED_PREFIX = "/api/"
METHOD_MAX = 10
REASONS = {status.value: status.phrase for status in HTTPStatus}


def peer_address(scope: Scope) -> str | None:
    """The address of the connection's peer (no proxy header believed)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def route_template(scope: Scope) -> str:
    """The template of the route the request matched (``/api/v1/experiments/{id}``),
    else of the route it would match, else :data:`UNMATCHED`. Never the raw path."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if isinstance(template, str) and template:
        return template
    # refused before routing (401, 413, ...): match the app's documented paths
    app = scope.get("app")
    templates = getattr(app, _TEMPLATES, None)
    if templates is None:
        templates = _Templates(app)
        setattr(app, _TEMPLATES, templates)
    return templates.match(str(scope.get("path", "")), str(scope.get("method", "")))


_TEMPLATES = "_pfd_db_route_templates"


class _Templates:
    """The app's path templates (its OpenAPI paths, in routing order), matched as
    the router would: a full match (path and method) first, then a path match."""

    def __init__(self, app: Any) -> None:
        self.routes: list[tuple[re.Pattern[str], str, frozenset[str]]] = []
        try:
            paths = app.openapi().get("paths", {})
        except Exception:  # no schema: every refused request is (unmatched)
            return
        for template, operations in paths.items():
            methods = frozenset(method.upper() for method in operations)
            if "GET" in methods:
                methods |= {"HEAD"}
            self.routes.append((compile_path(template)[0], template, methods))

    def match(self, path: str, method: str) -> str:
        partial = None
        for regex, template, methods in self.routes:
            if regex.match(path):
                if method in methods:
                    return template
                partial = partial or template
        return partial or UNMATCHED


class RequestTiming:
    """Measure every HTTP request; count it in ``metrics``; log ``/api`` ones to
    ``request_log``. ``client_address`` gives the client's address from the scope
    (the app's trusted-proxies rule; default: the connection's peer)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        request_log: RequestLog,
        metrics: Metrics,
        client_address: Callable[[Scope], str | None] = peer_address,
    ) -> None:
        self.app = app
        self.request_log = request_log
        self.metrics = metrics
        self.client_address = client_address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_time = datetime.now(UTC)
        status = 0
        sent = received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def measuring_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, measuring_send)
        except BaseException:
            status = status or 500
            raise
        finally:
            seconds = time.perf_counter() - started
            self._record(scope, status or 500, seconds, request_time, received, sent)

    def _record(
        self,
        scope: Scope,
        status: int,
        seconds: float,
        request_time: datetime,
        received: int,
        sent: int,
    ) -> None:
        """Count the request and, under ``/api``, queue its row; never raises."""
        try:
            template = route_template(scope)
            method = str(scope.get("method", "GET"))[:METHOD_MAX] or "GET"
            self.metrics.observe(template, method, status, seconds)
            path = scope.get("path", "")
            if not (path == "/api" or path.startswith(LOGGED_PREFIX)):
                return
            caller = scope.get("state", {}).get("caller")
            self.request_log.add(
                {
                    "endpoint": template,
                    "method": method,
                    "status_code": status if 100 <= status <= 599 else 500,
                    "request_time": request_time,
                    "response_time_ms": seconds * 1000.0,
                    "request_size_bytes": received,
                    "response_size_bytes": sent,
                    "ip_address": self.client_address(scope),
                    "user_agent": _user_agent(scope),
                    "api_key_id": getattr(caller, "key_id", None),
                    "error_message": REASONS.get(status) if status >= 400 else None,
                }
            )
        except Exception:  # measuring must never fail a request
            return


def _user_agent(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            return bytes(value).decode("latin-1")
    return None
