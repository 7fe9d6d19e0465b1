"""pfd-db: the persistence layer of the PFD fault-diagnosis dashboard.

Importing the package creates no engine and touches no database: the engine
is made from the settings (``PFD_DB_*`` environment variables) on first use.
"""

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("pfd-db")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

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
