"""OpenAPI 3.1 at ``/openapi.json`` and Swagger UI at ``/docs``, with no network.

The schema FastAPI builds from the routes' pydantic models is completed here:
every ``/api`` operation lists the problem documents it may answer with (401,
403, 404 when the path names a record, 409 for changes, 413 when it takes a
body, 422, 429, 503), each an ``application/problem+json`` :class:`Problem`
(FastAPI's own 422 model, which this server never sends, is replaced), and
the ``RateLimit-*`` headers of its success. The two security schemes come
from :mod:`pfd_db.api.access`.

``/docs`` is Swagger UI 5 (it renders OpenAPI 3.1) served from the assets of
the ``swagger-ui-bundle-v2`` package under ``/docs/assets/``: a browser with no
internet access sees the same page.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from pfd_db.api.schemas.common import Problem

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
ASSETS_PACKAGE = "swagger_ui_bundle"  # installed by swagger-ui-bundle-v2 (Swagger UI 5)
MIN_MAJOR = 5  # Swagger UI 4 cannot render OpenAPI 3.1
BUNDLE = "swagger-ui-bundle.js"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_DESCRIPTIONS = {
    401: "Missing, unknown, expired or revoked API key (with WWW-Authenticate)",
    403: "The key's scope or its owner's role does not allow this",
    404: "No such record",
    409: "Conflict with what is stored",
    413: "Request body over the limit",
    422: "Invalid input: the problem's `field` names it",
    429: "The key's hourly limit is reached (see Retry-After)",
    503: "Database unavailable (see Retry-After)",
}
_RATE_HEADERS = {
    name: {"description": text, "schema": {"type": "integer"}}
    for name, text in (
        ("RateLimit-Limit", "Requests this key may make an hour."),
        ("RateLimit-Remaining", "Requests left in the current window."),
        ("RateLimit-Reset", "Seconds until the window starts again."),
    )
}


@cache
def assets_dir() -> Path | None:
    """The directory of the newest Swagger UI 5+ assets installed
    (``swagger_ui_bundle/vendor/swagger-ui-<version>/``), or None."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    versions = {
        _version(bundle.parent.name): bundle.parent
        for root in spec.submodule_search_locations
        for bundle in Path(root).rglob(BUNDLE)
    }
    newest = max(versions, default=(0,))
    return versions[newest] if newest[0] >= MIN_MAJOR else None


def _version(folder: str) -> tuple[int, ...]:
    found = re.search(r"(\d+)\.(\d+)\.(\d+)$", folder)
    return tuple(int(part) for part in found.groups()) if found else (0,)


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets, and complete ``app``'s OpenAPI schema."""
    folder = assets_dir()
    if folder is not None:
        app.mount(ASSETS_PATH, StaticFiles(directory=folder), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_PATH}/{BUNDLE}",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        )

    app.add_route(DOCS_PATH, swagger_ui, include_in_schema=False)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = complete(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every operation's problem responses and rate-limit headers."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                _complete_operation(path, method, operation)
    return schema


def _complete_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    statuses = {422}
    if path.startswith("/api/"):
        statuses |= {401, 403, 429, 503}
        if "{" in path:
            statuses.add(404)
        if method != "get":
            statuses.add(409)
        if "requestBody" in operation or method in ("post", "put", "patch"):
            statuses.add(413)
        for status, response in responses.items():
            if str(status).startswith("2"):
                response.setdefault("headers", {}).update(_RATE_HEADERS)
    elif not operation.get("parameters") and "requestBody" not in operation:
        statuses.discard(422)  # /health takes no input
    for status in sorted(statuses):
        response = responses.setdefault(str(status), {})
        response["description"] = response.get("description") or _DESCRIPTIONS[status]
        if status == 422 or not response.get("content"):
            response["description"] = _DESCRIPTIONS.get(status, response["description"])
            response["content"] = {"application/problem+json": {"schema": PROBLEM_REF}}
    for status, response in responses.items():
        content = response.get("content", {})
        if str(status)[0] in "45" and "application/json" in content:
            content.pop("application/json")
            content["application/problem+json"] = {"schema": PROBLEM_REF}
