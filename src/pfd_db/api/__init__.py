"""The HTTP API: the store served over FastAPI (``pfd-db serve``).

``create_app(url=None, *, engine=None)`` builds the ASGI application; see
:mod:`pfd_db.api.app`. Loaded lazily, so importing this package is cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(url: str | None = None, *, engine: Any = None) -> Any:
    """The API application (see :func:`pfd_db.api.app.create_app`)."""
    from pfd_db.api.app import create_app as build

    return build(url, engine=engine)
