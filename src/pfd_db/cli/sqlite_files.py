"""What a SQLite file's header and side files say, read without opening it."""

from __future__ import annotations

import os
from pathlib import Path

from pfd_db.target import SQLITE_MAGIC, sqlite_side_file

WAL_VERSIONS = b"\x02\x02"  # file format write and read versions 2: WAL mode


def wal_without_readers(path: Path) -> bool:
    """A writable WAL-mode SQLite file with no -wal beside it: no connection has it
    open, and a connection that can write deletes the -wal/-shm it creates on close
    (a read-only one leaves them)."""
    if not os.access(path, os.W_OK):
        return False
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return (
        header[:16] == SQLITE_MAGIC
        and header[18:20] == WAL_VERSIONS
        and not sqlite_side_file(path, "wal").exists()
    )
