"""The ASGI application: ``create_app`` builds it for ``pfd-db serve``, embedding and tests.

The app holds on ``app.state``: ``engine``, ``sessions`` (a sessionmaker),
``read_sessions`` (one that refuses writes), ``auth_cache``, ``request_log``
(the request-log buffer) and ``metrics``. Its middleware, outermost first:
trusted-proxy client addresses (only when configured), request timing (metrics
and the request log, :mod:`pfd_db.api.request_timing`), CORS (only when
origins are configured), API-key auth, the body limit. Routes are every
``router`` of :data:`pfd_db.api.routes.ROUTERS`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pfd_db import __version__
from pfd_db.api import docs, problems
from pfd_db.api.auth_cache import AuthCache
from pfd_db.api.metrics import Metrics
from pfd_db.api.middleware import AuthMiddleware, BodyLimitMiddleware
from pfd_db.api.request_log import RequestLog
from pfd_db.api.request_timing import RequestTiming
from pfd_db.api.routes import ROUTERS
from pfd_db.config import Settings, get_settings
from pfd_db.engine import make_engine
from pfd_db.engine import read_only as read_only_engine

TITLE = "pfd-db"
DESCRIPTION = (
    "The pfd-db store over HTTP. Authenticate with an API key: `Authorization: Bearer <key>` "
    "or `X-API-Key: <key>`. Errors are `application/problem+json` (RFC 9457). Every "
    "authenticated response carries `RateLimit-Limit`, `RateLimit-Remaining` and "
    "`RateLimit-Reset`."
)


def create_app(url: str | None = None, *, engine: Engine | None = None) -> Any:
    """The API application on ``engine``, or on a new engine for ``url`` (default:
    the settings' URL, ``PFD_DB_URL``: how ``pfd-db serve`` reaches its workers).

    An engine given is the caller's (not disposed at shutdown); one made here is.
    """
    settings = get_settings()
    owned = engine is None
    engine = engine if engine is not None else make_engine(url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            app.state.request_log.close()  # flush what is buffered
            if owned:
                engine.dispose()

    app = FastAPI(
        title=TITLE,
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.sessions = sessionmaker(bind=engine, autoflush=False, expire_on_commit=False)
    app.state.read_sessions = sessionmaker[Session](
        bind=read_only_engine(engine), autoflush=False, expire_on_commit=False
    )
    app.state.auth_cache = AuthCache()
    app.state.request_log = RequestLog(app.state.sessions)
    app.state.metrics = Metrics(engine, app.state.request_log, settings.server_metrics_addresses)
    app.state.settings = settings
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    docs.install(app)
    _add_middleware(app, settings)
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Innermost first (each ``add_middleware`` wraps what is there)."""
    app.add_middleware(BodyLimitMiddleware, limit=settings.server_body_limit_bytes)
    app.add_middleware(AuthMiddleware)
    origins = [o for o in settings.server_cors_origins.split(",") if o]
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept"],
            expose_headers=[
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "Retry-After",
            ],
        )
    app.add_middleware(RequestTiming, request_log=app.state.request_log, metrics=app.state.metrics)
    proxies = [p for p in settings.server_trusted_proxies.split(",") if p]
    if proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
