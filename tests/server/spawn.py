"""Start a private radixserve server (`python -m radixserve.serve`) for tests, wait for /health,
and stop it with SIGTERM afterwards. Every test server gets its own --data-dir under the test's
temporary folder, so no test touches the user's store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 240.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, proc: Optional[subprocess.Popen[bytes]], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log  # proc None: not ours to stop

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_healthy(srv: Server, proc: Optional[subprocess.Popen[bytes]] = None,
                 timeout: float = START_TIMEOUT) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{srv.log_tail()}")
        try:
            if httpx.get(srv.url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            if proc is not None:
                proc.kill()
            pytest.fail(f"server not healthy after {timeout}s:\n{srv.log_tail()}")
        time.sleep(0.3)


@contextmanager
def spawn_server(tmp: Path, args: list[str], env: Optional[dict[str, str]] = None) -> Iterator[Server]:
    """A server with a small KV pool; `args` come last, so they override these defaults."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    cmd = [sys.executable, "-m", "radixserve.serve", "--port", str(port),
           "--max-total-tokens", "4096", "--log-level", "warning",
           "--data-dir", str(tmp / f"data-{port}"), *args]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **(env or {})})  # fmt: skip
    srv = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_healthy(srv, proc)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
