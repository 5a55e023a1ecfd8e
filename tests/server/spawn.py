"""Start a private radixserve server with extra flags / environment (for tests that break it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import httpx
import pytest

from .conftest import ROOT, START_TIMEOUT, Server, free_port


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
            pytest.fail(f"server not healthy after {timeout}s:\n{srv.log_tail()}")
        time.sleep(0.3)


@contextmanager
def spawn_server(tmp: Path, args: list[str], env: Optional[dict[str, str]] = None) -> Iterator[Server]:
    port = free_port()
    log = tmp / f"server-{port}.log"
    cmd = [sys.executable, "-m", "radixserve.serve", "--port", str(port),
           "--max-total-tokens", "4096", "--log-level", "warning", *args]  # fmt: skip
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
