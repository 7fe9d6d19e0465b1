"""pfd-db: the persistence layer of the PFD fault-diagnosis dashboard.

Importing the package creates no engine and touches no database: the engine
is made from the settings (``PFD_DB_*`` environment variables) on first use.
The names below are loaded when first used, so ``import pfd_db`` (and the
``pfd-db`` command's start-up) costs nothing until they are.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str
    from pfd_db.config import Settings, get_settings
    from pfd_db.engine import make_engine, pool_status
    from pfd_db.session import (
        SessionLocal,
        SessionScoped,
        configure,
        get_db,
        get_db_session,
        get_engine,
    )

_HOMES = {
    "Settings": "pfd_db.config",
    "get_settings": "pfd_db.config",
    "make_engine": "pfd_db.engine",
    "pool_status": "pfd_db.engine",
    "SessionLocal": "pfd_db.session",
    "SessionScoped": "pfd_db.session",
    "configure": "pfd_db.session",
    "get_db": "pfd_db.session",
    "get_db_session": "pfd_db.session",
    "get_engine": "pfd_db.session",
}


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    if name == "__version__":
        value: Any = _installed_version()
    elif name in _HOMES:
        value = getattr(import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'pfd_db' has no attribute {name!r}")
    globals()[name] = value
    return value


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pfd-db")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


__all__ = [
    "SessionLocal",
    "SessionScoped",
    "Settings",
    "__version__",
    "configure",
    "get_db",
    "get_db_session",
    "get_engine",
    "get_settings",
    "make_engine",
    "pool_status",
]
