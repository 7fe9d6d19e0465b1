"""What makes a backup file whole: written aside, synced, renamed, and described.

Every backup is written to a temporary file in the folder of its path, synced,
and linked to its name only when complete (then the folder is synced), so a
backup cut short never stands at that name. Beside it, ``<backup>.manifest.json``
(written the same way, before the backup gets its name) holds its revision, the
rows per table and the SHA-256 of the file. :func:`verify` checks a file
against its manifest before a restore writes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from pfd_db import migrations
from pfd_db.errors import Conflict, InvalidInput, MigrationError
from pfd_db.target import sqlite_side_files

SUFFIX = ".manifest.json"
FORMAT = "pfd-db backup manifest 1"


@dataclass(frozen=True)
class Manifest:
    """A backup's description: how it was made, its revision, rows and checksum."""

    method: str
    revision: str | None
    tables: dict[str, int]
    sha256: str
    bytes: int
    format: str = FORMAT


def manifest_path(path: Path) -> Path:
    """Where the manifest of the backup ``path`` lies."""
    return Path(f"{path}{SUFFIX}")


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(path: Path, method: str, revision: str | None, tables: dict[str, int]) -> Manifest:
    """The manifest of the (complete, synced) file at ``path``."""
    return Manifest(method, revision, dict(tables), file_sha256(path), path.stat().st_size)


@contextmanager
def written_aside(path: Path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write into; removed with its SQLite
    side files when the block fails (a kill leaves only that hidden file)."""
    partial = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.partial"
    try:
        yield partial
    except BaseException:
        for leftover in (partial, *sqlite_side_files(partial)):
            leftover.unlink(missing_ok=True)
        raise


def publish(partial: Path, path: Path, manifest: Manifest) -> None:
    """Give the complete file ``partial`` its name ``path``, its manifest first
    (cut short between the two, a manifest lies beside no backup, and a name holds
    either nothing or a described whole backup), each synced; never replaces an
    existing ``path``, nor the manifest of one found there."""
    _sync(partial)
    text = json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n"
    described = manifest_path(path)
    aside = described.parent / f".{described.name}.{uuid.uuid4().hex[:12]}.partial"
    aside.write_text(text)
    _sync(aside)
    if path.exists():
        aside.unlink()
        raise _taken(path)
    os.replace(aside, described)
    try:
        os.link(partial, path)  # fails if path appeared meanwhile: nothing is overwritten
    except FileExistsError:
        raise _taken(path) from None
    partial.unlink()
    _sync_folder(path.parent)


def _taken(path: Path) -> Conflict:
    return Conflict(
        f"{path} appeared while the backup was written; it was left as it is: "
        "choose a new file for the backup"
    )


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> Manifest:
    """The manifest of the backup ``path``; :class:`InvalidInput` when it is
    missing or unreadable."""
    described = manifest_path(path)
    try:
        document = json.loads(described.read_text())
        if document.get("format") != FORMAT:
            raise ValueError(document.get("format"))
        return Manifest(**document)
    except FileNotFoundError:
        raise InvalidInput(
            f"{path} has no manifest ({described.name}): not a complete pfd-db backup "
            "(cut short, or not written by `pfd-db backup`); to load a database file, "
            "use `pfd-db copy --url FILE --to ...`"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidInput(f"the manifest {described} is not readable: {exc}") from None


def verify(path: Path) -> Manifest:
    """The manifest of ``path`` once the file matches it (size and SHA-256) and its
    revision is one this pfd-db knows; :class:`InvalidInput` or
    :class:`MigrationError` otherwise."""
    manifest = read(path)
    size = path.stat().st_size
    if size != manifest.bytes or file_sha256(path) != manifest.sha256:
        raise InvalidInput(
            f"{path} does not match its manifest ({size} bytes, expected {manifest.bytes}, "
            "or a different checksum): the backup is damaged or incomplete; use another"
        )
    require_known(manifest.revision)
    return manifest


def require_known(revision: str | None) -> None:
    """:class:`MigrationError` for a revision this pfd-db does not know."""
    known = [r.revision for r in migrations.history()]
    if revision is not None and revision not in known:
        raise MigrationError(
            f"the backup is at unknown revision {revision} (this pfd-db knows up to "
            f"{migrations.head_revision()}): restore it with a newer pfd-db"
        )
