"""``pfd-db serve`` as a real process on a free loopback port, for the tests and
the benchmarks.

    with Served(url, workers=2) as server:
        httpx.get(f"{server.base_url}/health")
        code = server.stop()          # SIGTERM, then the exit code

The process leads its own process group; leaving the block (a failed test
included) kills the whole group if it is still running, workers and all, so no
server outlives its test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

PFD_DB = str(Path(sys.executable).with_name("pfd-db"))


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """``pfd-db serve --url URL --port P --workers N``, started on entry and
    ready (``/health`` answers) before the block runs."""

    def __init__(
        self,
        url: str,
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.url = url
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    def __enter__(self) -> Served:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()

    def start(self) -> None:
        """Start the server and wait until it answers; RuntimeError with its output
        if it exits or does not answer in time."""
        argv = [PFD_DB, "serve", "--url", self.url, "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", str(self.workers)]  # fmt: skip
        self.process = subprocess.Popen(
            argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"pfd-db serve exited {code}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        waited = self.start_timeout
        raise RuntimeError(f"pfd-db serve did not answer in {waited} s:\n{self.output()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (a graceful stop), then the exit code; killed if it takes longer
        than ``timeout`` (RuntimeError then)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            output = self.output()
        raise RuntimeError(f"pfd-db serve ignored SIGTERM for {timeout} s:\n{output}")

    def kill(self) -> None:
        """Kill the process group (the server and its workers) if anything of it runs."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")
