"""``pfd-db serve``: the HTTP API (:mod:`pfd_db.api`) on uvicorn.

The database is checked first as for any command that writes (reachable, at
head). The URL reaches the worker processes through ``PFD_DB_URL``: each builds
its app with ``pfd_db.api:create_app`` (uvicorn's factory mode). SQLite is served
by one worker (one writer; ``--workers`` above 1 is refused), PostgreSQL by as
many as asked. SIGTERM (or Ctrl-C) is graceful: the server stops accepting,
lets in-flight requests finish, and each app's shutdown flushes its request
log; then the command exits 0.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import typer

from pfd_db.cli.options import UrlOption

app = typer.Typer()

HostOption = Annotated[
    str | None,
    typer.Option("--host", help="Address to listen on (default: PFD_DB_SERVER_HOST, 127.0.0.1)."),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        "--port", min=0, max=65_535, help="Port to listen on (default: PFD_DB_SERVER_PORT, 8000)."
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        max=64,
        help="Worker processes (default: PFD_DB_SERVER_WORKERS, 1); SQLite takes 1 only.",
    ),
]
GRACEFUL_SHUTDOWN_SECONDS = 30
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@app.command()
def serve(
    url: UrlOption = None,
    host: HostOption = None,
    port: PortOption = None,
    workers: WorkersOption = None,
) -> None:
    """Serve the database over HTTP (the API under /api/v1, /docs, /health, /ready)."""
    import uvicorn

    from pfd_db.cli.database import WRITE, database, target_of, url_in_settings
    from pfd_db.cli.output import say
    from pfd_db.config import get_settings
    from pfd_db.errors import ConfigurationError
    from pfd_db.replicas import configured_urls

    settings = get_settings()
    target = target_of(url)
    count = workers if workers is not None else settings.server_workers
    if target.path is not None and count > 1:
        raise ConfigurationError(
            f"--workers {count}: a SQLite database is served by one worker process: "
            "use --workers 1, or PostgreSQL for several"
        )
    if target.path is not None and configured_urls():
        raise ConfigurationError(
            "PFD_DB_REPLICA_URLS: read replicas need a PostgreSQL primary and "
            f"{target.described} is SQLite: unset PFD_DB_REPLICA_URLS"
        )
    with database(url, WRITE):
        pass  # checked: reachable, writable, at head
    bind_host = host or settings.server_host
    bind_port = port if port is not None else settings.server_port
    with url_in_settings(url), _stopped_by_signal_is_success():
        say(f"serving {target.described} on http://{bind_host}:{bind_port} ({count} workers)")
        uvicorn.run(
            "pfd_db.api:create_app",
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=count,
            proxy_headers=False,  # the app honours only PFD_DB_SERVER_TRUSTED_PROXIES
            server_header=False,
            access_log=False,  # requests are logged to api_request_logs, by route template
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            log_level="info",
        )


@contextmanager
def _stopped_by_signal_is_success() -> Iterator[None]:
    """uvicorn stops gracefully on SIGTERM or SIGINT, then raises the signal again
    so the process ends as if killed by it; a handler here takes that second one,
    so a graceful stop exits 0."""

    def stopped(signum: int, frame: FrameType | None) -> None:
        """The server has stopped already: nothing left to do."""

    previous = {number: signal.signal(number, stopped) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
