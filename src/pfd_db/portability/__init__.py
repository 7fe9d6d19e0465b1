"""Moving data in and out of a pfd-db database.

- :mod:`~pfd_db.portability.copy`: copy a database at head into an empty one,
  SQLite and PostgreSQL either way, ids, sequences and search index included,
  checked table by table (``pfd-db copy``);
- :mod:`~pfd_db.portability.backup`: consistent backups while writers work, and
  restores (``pfd-db backup``, ``pfd-db restore``);
- :mod:`~pfd_db.portability.legacy`: read an LSTM_PFD dashboard database and
  write its rows into pfd-db (``pfd-db import-legacy``).

What they share: :mod:`~pfd_db.portability.rows` (rows in a form both dialects
take) and :mod:`~pfd_db.portability.filling` (the database being filled).
"""

from __future__ import annotations

from pfd_db.errors import PfdDbError


class CopyMismatch(PfdDbError):
    """A copied table differs from its source (row count or checksum); the target
    keeps its unfinished-copy marker."""
