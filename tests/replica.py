"""A real streaming replica of the suite's PostgreSQL server, for the replica tests.

:class:`StreamingReplica` clones the running test server with ``pg_basebackup -R``
(as the unprivileged server user when the suite runs as root) into a fresh
directory under /tmp, and starts a second ``postgres`` on it: a hot standby that
streams the primary's WAL, listening only on a Unix socket in its own directory.
Like the primary it trades durability for speed, and :meth:`stop` stops it at
once and deletes its directory (also at exit and on SIGTERM).

A test can stop it hard (:meth:`kill`, an immediate shutdown: no checkpoint, as
after a crash), start it again (:meth:`restart`), pause and resume its replay,
and wait until it has replayed what the primary has written.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from pgserver import PostgresServer

REPLICA_SETTINGS = {
    "hot_standby": "on",
    "listen_addresses": "''",
    "max_standby_streaming_delay": "-1",  # never cancel a test's query for a conflict
    # ... and so the primary keeps the rows a standby snapshot still sees: without
    # it, a cleanup record (autovacuum of another worker's tables) waits for any
    # query or idle transaction on the standby, and replay stopped for over 45 s.
    "hot_standby_feedback": "on",
    "wal_receiver_status_interval": "1s",
}
WAIT_SECONDS = 30.0


class StreamingReplica(PostgresServer):
    """A hot standby of ``primary``: ``start()`` it, use ``url()``, ``stop()`` it."""

    def __init__(self, primary: PostgresServer) -> None:
        super().__init__()
        self.primary = primary
        self._previous_sigterm: Any = None

    def start(self) -> None:
        """Clone the primary (``pg_basebackup -R``) into a new temp directory and
        start the standby on its own socket; returns once it accepts connections."""
        try:
            self._make_base("pfd-pgreplica-")
            self._run(
                "pg_basebackup", "-D", str(self.datadir), "-h", str(self.primary.sockdir),
                "-U", "postgres", "-R", "-X", "stream", "-c", "fast", "--no-sync",
            )  # fmt: skip
            settings = {**REPLICA_SETTINGS, "unix_socket_directories": f"'{self.sockdir}'"}
            with (self.datadir / "postgresql.conf").open("a") as conf:
                conf.write("\n# pfd_db test replica\n")
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            self.restart()
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Start the standby (again, after :meth:`kill`); returns once it accepts connections."""
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir),
                  "-l", str(self.logfile))  # fmt: skip
        self.started = True

    def kill(self) -> None:
        """Stop the standby at once, as a crash would (immediate shutdown)."""
        self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.datadir))
        self.started = False

    def stop(self) -> None:
        """Stop the standby at once and delete its directory. Idempotent."""
        try:
            super().stop()
        finally:
            if self._previous_sigterm is not None and _in_main_thread():
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None

    def _stop_on_sigterm(self) -> None:
        """On SIGTERM stop the standby, then do what was done before (the primary's
        handler, which stops it, or the default: die)."""
        if not _in_main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        self._previous_sigterm = previous

        def handler(signum: int, frame: Any) -> None:
            self.stop()
            if callable(previous):
                previous(signum, frame)
            else:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, handler)

    # --- replay ------------------------------------------------------------------

    def pause_replay(self) -> None:
        """Stop applying WAL (it is still received): the standby falls behind."""
        with self.connect() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        """Apply WAL again."""
        with self.connect() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

    def wait_for_replay(self, timeout: float = WAIT_SECONDS) -> None:
        """Return once the standby has replayed everything committed on the primary.

        The suite's server commits asynchronously (``synchronous_commit = off``), so
        a commit with it on that wrote WAL (a transactional logical message)
        flushes the WAL first: what was committed is then what the standby can
        receive."""
        with self.primary.connect() as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = on")
            conn.execute("SELECT pg_logical_emit_message(true, 'pfd_test', 'flush')")
        with self.primary.connect() as conn:
            row = conn.execute("SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn").fetchone()
        assert row is not None
        target = int(row[0])
        deadline = time.monotonic() + timeout
        while True:
            with self.connect() as conn:
                got = conn.execute("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn").fetchone()
            if got is not None and got[0] is not None and int(got[0]) >= target:
                return
            if time.monotonic() > deadline:
                state = self.replay_state()
                raise TimeoutError(f"the replica has not replayed up to {target} in {timeout} s: "
                                   f"{state}")  # fmt: skip
            time.sleep(0.02)

    def replay_state(self) -> str:
        """Where the standby is and what its replay waits for (for a timeout's message)."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT pg_get_wal_replay_pause_state(), pg_last_wal_receive_lsn() - '0/0'::pg_lsn,"
                " pg_last_wal_replay_lsn() - '0/0'::pg_lsn,"
                " (SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity"
                "  WHERE backend_type = 'startup'),"
                " (SELECT string_agg(state || ' ' || left(query, 60), '; ') FROM pg_stat_activity"
                "  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())"
            ).fetchone()
        assert row is not None
        pause, received, replayed, waits_on, others = row
        return (
            f"replay {pause}, received {received}, replayed {replayed}, "
            f"startup waits on {waits_on}, other sessions: {others}"
        )


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
