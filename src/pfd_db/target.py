"""Which database: the one place that reads, shows and reaches a database URL.

A URL is parsed and normalised here (``postgresql://`` and ``postgres://`` mean
psycopg 3), masked for display, and turned into what each user needs: the
SQLite file and the ``file:`` URI that opens it read-only (or writable), the
argv and libpq environment of a client program (``psql``, ``pg_dump``,
``sqlite3``: the password only in the environment), the location of the
instance key beside a SQLite file, the names of a SQLite file's side files
and its header, what tells two databases apart (:func:`identity`), the same
database on another server (:func:`on_server`), and a check that the database
answers. Nothing else in pfd-db builds any of these.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from pfd_db.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from sqlalchemy import Engine

SUPPORTED_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
"""The database each backend is reached through: the standard library's sqlite3, psycopg 3."""
URL_FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DBNAME"
IN_MEMORY = (None, "", ":memory:")
SQLITE_MAGIC = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""
SideFile = Literal["wal", "shm", "journal"]
"""A file SQLite keeps beside a database: its write-ahead log, the WAL index, the
rollback journal."""
Mode = Literal["ro", "ro-immutable", "rw", "rwc"]
"""How a SQLite file is opened: read-only (``immutable``: nothing can change it,
not even its WAL index), read-write, or read-write and created if missing."""

DEFAULT_PG_PORT = 5432
PG_ENVIRONMENT = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
}
"""libpq's environment variables for the URL's parts and query options."""


def normalise_url(url: str) -> str:
    """The URL with a PostgreSQL scheme pointed at psycopg 3 (``postgres://`` too)."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def parse_url(url: str | URL) -> URL:
    """``url`` parsed and normalised, or :class:`DatabaseUnavailable` naming what is
    wrong with it: not a URL, or a database or driver pfd-db does not work with."""
    try:
        parsed = url if isinstance(url, URL) else make_url(normalise_url(url))
    except ArgumentError as exc:
        raise DatabaseUnavailable(f"not a database URL: expected {URL_FORMS}") from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in SUPPORTED_DRIVERS or driver not in ("", SUPPORTED_DRIVERS[backend]):
        raise DatabaseUnavailable(
            f"unsupported database URL scheme {parsed.drivername}:// "
            f"({mask_password(parsed)}): use {URL_FORMS} (psycopg 3)"
        )
    if backend != "sqlite" and not _utf8(parsed):
        # a file name may hold any bytes; a server's connection string may not
        raise DatabaseUnavailable(
            f"not a database URL: it holds a byte that is not UTF-8: use {URL_FORMS}"
        )
    return parsed


def _utf8(url: URL) -> bool:
    """Whether ``url`` is text a server's connection string can carry."""
    try:
        as_text(url).encode("utf-8")
    except UnicodeError:
        return False
    return True


def mask_password(url: str | URL) -> str:
    """The URL as text with its password hidden, whether it is given in the user
    info (``user:secret@host``) or as a ``password`` query parameter."""
    try:
        parsed = make_url(url)
        if "password" in parsed.query:
            parsed = parsed.update_query_dict({"password": "MASKED"})
        shown = parsed.render_as_string(hide_password=True)
    except (ArgumentError, UnicodeError):
        return "<unparseable URL>"
    shown = shown.replace("password=MASKED", "password=***")
    base, question, query = shown.partition("?")
    return base + question + query.replace("%2F", "/")  # a socket directory, readable


def as_text(url: URL) -> str:
    """``url`` as text, password included, for a library that takes only text
    (Alembic's offline mode). Never show it: :func:`mask_password` is for that."""
    return url.render_as_string(hide_password=False)


def identity(url: str | URL) -> str:
    """What tells databases apart, for a cache key or a same-database check: a
    SQLite file by its resolved path (however the URL spells it: relative, a
    ``file:`` URI, through a symlink), anything else by its normalised URL without
    any password (in the user info or the query). Holds no secret."""
    target = locate(url)
    if target.path is not None:
        return str(target.path.resolve())
    return as_text(target.url._replace(password=None).difference_update_query(["password"]))


def on_server(
    given: URL,
    *,
    database: str,
    username: str,
    host: str | None = None,
    port: int | None = None,
    socket_directory: str | None = None,
) -> URL:
    """``database`` as ``username`` on another server than ``given`` names, with
    ``given``'s driver and query options: at ``host``:``port``, or through the Unix
    socket in ``socket_directory`` (the port then goes in the query, unless it is
    libpq's default). ``given``'s password is kept only for the same user."""
    query = {k: v for k, v in given.query.items() if k not in ("host", "port", "hostaddr")}
    if socket_directory is not None:
        query["host"] = socket_directory
        if port is not None and port != DEFAULT_PG_PORT:
            query["port"] = str(port)
        host, port = None, None
    return URL.create(
        given.drivername,
        username=username,
        password=given.password if username == given.username else None,
        host=host,
        port=port,
        database=database,
        query=query,
    )


@dataclass(frozen=True)
class ClientCommand:
    """A database client to run: its arguments and the environment it needs."""

    argv: list[str]
    environment: dict[str, str] = field(repr=False)


@dataclass(frozen=True)
class Target:
    """A database as the operator named it."""

    url: URL
    """Parsed and normalised (postgresql:// means psycopg 3); may hold a password."""
    path: Path | None
    """The SQLite file, absolute; None for a server or an in-memory database."""
    named: str | None = None
    """The SQLite file as the URL spells it (relative paths stay relative)."""

    @property
    def shown(self) -> str:
        """The URL to print: never with its password."""
        return mask_password(self.url)

    @property
    def described(self) -> str:
        """The database as people know it: a SQLite file by its path (not the URI
        it is opened with), a server by its URL without the password."""
        return str(self.path) if self.path is not None else self.shown

    @property
    def sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def key_path(self) -> Path | None:
        """Where this database's instance key file lives by default: ``<file>.key``
        beside a SQLite file; None for a server or an in-memory database."""
        return None if self.named is None else key_beside(self.named)

    def connect_url(self, mode: Mode = "rw") -> URL:
        """The URL to connect with: for a SQLite file, a ``file:`` URI opened as
        ``mode`` says (so a read never creates nor writes a file); else :attr:`url`."""
        if self.path is None:
            return self.url
        return sqlite_uri(self.path, mode)

    def client_command(
        self, program: str, extra: Sequence[str] = (), *, name_database: bool = False
    ) -> ClientCommand:
        """Run ``program`` (``sqlite3``, ``psql``, ``pg_dump``, ``pg_restore``, or a
        path to one) on this database with ``extra`` arguments. PostgreSQL's are
        given in libpq's environment variables, so no password shows in the
        process list; ``name_database`` also names the database in a ``--dbname``
        argument (for ``pg_restore``, which writes a script without one)."""
        environment = dict(os.environ)
        if self.sqlite:
            return ClientCommand([program, str(self.path or ":memory:"), *extra], environment)
        url = self.url
        parts: dict[str, Any] = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database,
        }
        for name, value in url.query.items():
            if name in PG_ENVIRONMENT:
                parts[name] = value if isinstance(value, str) else value[-1]
        environment.update(
            {PG_ENVIRONMENT[name]: str(value) for name, value in parts.items() if value is not None}
        )
        argv = [program, *extra]
        if name_database and url.database:
            argv.append(f"--dbname=dbname='{_conninfo_quoted(url.database)}'")
        return ClientCommand(argv, environment)


def _conninfo_quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def locate(url: str | URL) -> Target:
    """The database ``url`` names; :class:`DatabaseUnavailable` for an unusable URL.
    A SQLite ``file:`` URI (``?uri=true``) names its file as a plain path does."""
    parsed = parse_url(url)
    named = _sqlite_file_named(parsed)
    path = None if named is None else Path(os.path.abspath(os.path.expanduser(named)))
    return Target(parsed, path, named)


def _sqlite_file_named(url: URL) -> str | None:
    name = url.database
    if url.get_backend_name() != "sqlite" or name in IN_MEMORY:
        return None
    assert name is not None
    if name.startswith("file:") and url.query.get("uri") == "true":
        name = unquote(name.removeprefix("file:").partition("?")[0])
        return None if name in IN_MEMORY or url.query.get("mode") == "memory" else name
    return name


def sqlite_uri(path: Path, mode: Mode | None = "ro") -> URL:
    """The URL opening the SQLite file ``path`` as a ``file:`` URI in ``mode`` (None:
    as the program opening it decides): the path percent-encoded, so spaces, ``?``,
    ``#``, ``%`` and any Unicode stay in it."""
    query = {"uri": "true"}
    if mode is not None:
        query["mode"] = mode.removesuffix("-immutable")
    if mode == "ro-immutable":
        query["immutable"] = "1"
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query=query)


def command_url(url: str | URL) -> str:
    """``url`` as an argument of a suggested ``pfd-db`` command, one that ``--url``
    and ``--to`` accept as written: a SQLite file as ``sqlite:////abs/path`` (or as
    a ``file:`` URI when its path would not survive a plain URL), a server's URL
    without any password (libpq finds it in PGPASSWORD or ``~/.pgpass``); quoted
    for a POSIX shell when it needs to be."""
    target = locate(url)
    if target.path is not None:
        plain = f"sqlite:///{target.path}"
        try:
            kept = locate(plain).path == target.path
        except DatabaseUnavailable:
            kept = False
        if not kept:
            plain = as_text(sqlite_uri(target.path, None))
        return shlex.quote(plain)
    given = target.url
    server = URL.create(
        "postgresql", given.username, None, given.host, given.port, given.database, given.query
    ).difference_update_query(["password"])
    return shlex.quote(as_text(server))


def sqlite_side_file(path: str | Path, kind: SideFile) -> Path:
    """The ``kind`` side file SQLite keeps beside the database file ``path``."""
    return Path(f"{path}-{kind}")


def sqlite_side_files(path: str | Path) -> tuple[Path, ...]:
    """Every side file SQLite may keep beside the database file ``path``: its
    write-ahead log, WAL index and rollback journal."""
    return tuple(sqlite_side_file(path, kind) for kind in ("wal", "shm", "journal"))


def key_beside(file: str | Path) -> Path:
    """The instance key file that goes with the SQLite file (or backup) ``file``."""
    return Path(f"{file}.key")


def instance_key_path(url: str | URL) -> Path | None:
    """Where the instance key of ``url``'s database lives by default (``<file>.key``
    beside a SQLite file); None otherwise."""
    return locate(url).key_path


def verify_reachable(engine: Engine) -> None:
    """Connect and read once, or :class:`DatabaseUnavailable` naming the database
    and what to check."""
    target = locate(engine.url)
    probe = "SELECT count(*) FROM sqlite_master" if target.sqlite else "SELECT 1"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(probe)
    except DBAPIError as exc:
        raise DatabaseUnavailable(unreachable(target, first_line(exc.orig))) from None


def unreachable(target: Target, reason: str) -> str:
    """Why ``target`` cannot be used, and what to do about it."""
    if target.path is None:
        return (
            f"cannot reach {target.shown}: {reason}: check the host, port, user, password "
            "and database name (--url or PFD_DB_URL) and that the server is running"
        )
    if "not a database" in reason:
        return f"{target.path} is not a SQLite database ({reason}): pass --url with the right file"
    return f"cannot open the database {target.path} ({reason}): check the file, or pass --url"


def first_line(value: object) -> str:
    """The first line of ``value``'s text (its type's name when it has none)."""
    text = str(value).strip()
    return text.splitlines()[0].strip() if text else type(value).__name__
