"""The pure ASGI middleware of the API: API-key auth and the request-body limit.

Pure ASGI (no ``BaseHTTPMiddleware``): nothing here costs a thread hop, except
verifying a key the auth cache does not hold (:func:`api_keys.verify` in a
worker thread).

``AuthMiddleware``, for paths under ``/api/``: the key comes from
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; a missing, malformed,
unknown, expired or revoked one is a 401 problem with ``WWW-Authenticate``. A
verified key becomes a :class:`Caller` on ``request.state.caller``. Every
authenticated response carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset`` (seconds); the count itself is taken by the first session
the route opens (:mod:`pfd_db.api.db`), or here, after the route, for a request
that opened none (refused by a dependency or by validation).

``BodyLimitMiddleware``: a body over the limit is a 413 problem, from its
``Content-Length`` or by counting what arrives. A JSON body that holds a NaN or
Infinity token is a 422 problem (JSON has no such numbers).
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pfd_db.api.access import Caller, unauthenticated
from pfd_db.api.auth_cache import AuthCache, digest_of
from pfd_db.api.db import ALLOWANCE, KEY_DIGEST, count_request
from pfd_db.api.problems import ApiProblem, problem_for, problem_response
from pfd_db.errors import AuthenticationFailed
from pfd_db.store.identity import api_keys
from pfd_db.types import utcnow

API_PREFIX = "/api/"
KEY_MAX_LENGTH = 512


def presented_key(scope: Scope) -> str | None:
    """The API key of the request's headers, or None."""
    bearer = given = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                bearer = token.strip()
        elif name == b"x-api-key":
            given = value.decode("latin-1").strip()
    return bearer or given


def verify_key(sessions: sessionmaker[Session], key: str) -> Caller:
    """Verify ``key`` (in a worker thread) and describe its caller."""
    with sessions() as session:
        record = api_keys.verify(session, key)
        caller = Caller(
            key_id=record.id,
            key_prefix=record.prefix,
            user_id=record.user_id,
            username=record.user.username,
            role=str(record.user.role.value),
            scopes=tuple(record.scopes),
            rate_limit=record.rate_limit,
        )
        session.commit()  # last_used_at, at most once a minute
    return caller


class AuthMiddleware:
    """Authenticate ``/api/`` requests by API key (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        app_state = scope["app"].state
        key = presented_key(scope)
        if not key:
            problem = unauthenticated(
                "give an API key: Authorization: Bearer <key> or X-API-Key: <key>"
            )
            await problem_response(problem)(scope, receive, send)
            return
        digest = digest_of(key)
        cache: AuthCache = app_state.auth_cache
        caller = cache.get(digest)
        if caller is None:
            try:
                if len(key) > KEY_MAX_LENGTH:
                    raise AuthenticationFailed("malformed key")
                caller = await anyio.to_thread.run_sync(verify_key, app_state.sessions, key)
            except AuthenticationFailed:
                problem = unauthenticated("this API key is unknown, expired or revoked")
                await problem_response(problem)(scope, receive, send)
                return
            except Exception as exc:  # the database is down: 503, never a 500
                await problem_response(problem_for(exc))(scope, receive, send)
                return
            cache.put(digest, caller)
        state["caller"] = caller
        state[KEY_DIGEST] = digest

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                if ALLOWANCE not in state and isinstance(state.get("caller"), Caller):
                    await self._count_after(scope)
                allowance = state.get(ALLOWANCE)
                if allowance is not None:
                    reset = allowance.seconds_to_reset(utcnow())
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"ratelimit-limit", str(allowance.limit).encode()),
                        (b"ratelimit-remaining", str(allowance.remaining).encode()),
                        (b"ratelimit-reset", str(reset).encode()),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_limits)

    @staticmethod
    async def _count_after(scope: Scope) -> None:
        def count() -> None:
            with scope["app"].state.sessions() as session:
                count_request(scope, session)
                session.commit()

        try:
            await anyio.to_thread.run_sync(count)
        except (ApiProblem, Exception):  # the answer is decided already; headers only
            return


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes (413) and NaN/Infinity in JSON (422)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.limit:
            await problem_response(self._too_large())(scope, receive, send)
            return
        if _is_json(scope) and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            body = await self._whole_body(receive)
            problem = self._too_large() if body is None else _non_finite_number(body)
            if problem is not None:
                await problem_response(problem)(scope, receive, send)
                return
            await self.app(scope, _replay(body or b"", receive), send)
            return
        await self.app(scope, self._counting(receive), send)

    def _too_large(self) -> ApiProblem:
        return ApiProblem(
            413, f"the request body is over the limit of {self.limit} bytes", slug="body-too-large"
        )

    async def _whole_body(self, receive: Receive) -> bytes | None:
        """The body, or None once it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise self._too_large()
            return message

        return counted


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value.lower()
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # the client's disconnect, when it comes
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _non_finite_number(body: bytes) -> ApiProblem | None:
    """A 422 problem if ``body`` parses only with NaN/Infinity tokens; None otherwise
    (a body that is not JSON at all is left to the route's own validation)."""
    if b"NaN" not in body and b"Infinity" not in body:
        return None
    try:
        json.loads(body, parse_constant=_refuse)
    except ValueError as exc:
        if "is not a JSON number" in str(exc):
            return ApiProblem(
                422,
                f"body: {exc}: NaN and Infinity are refused",
                slug="invalid-input",
                field="body",
            )
    return None
