"""A real radixserve server on 127.0.0.1 (default model, small KV pool) for the whole session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 240.0
PAYLOAD_LIMIT = 200_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


class Server:
    def __init__(self, proc: Optional[subprocess.Popen[bytes]], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log  # proc None: not ours to stop

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.environ.get("RADIXSERVE_TEST_URL"):  # reuse a running server (development only)
        yield Server(None, os.environ["RADIXSERVE_TEST_URL"], Path("/dev/null"))
        return
    port = free_port()
    tmp = tmp_path_factory.mktemp("server")
    log = tmp / "server.log"
    cmd = [sys.executable, "-m", "radixserve.serve", "--port", str(port),
           "--max-total-tokens", "8192", "--max-running-requests", "64",
           "--max-payload-size", str(PAYLOAD_LIMIT), "--log-level", "warning",
           "--data-dir", str(tmp / "data")]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    srv = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{srv.log_tail()}")
        try:
            if httpx.get(srv.url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server not healthy after {START_TIMEOUT}s:\n{srv.log_tail()}")
        time.sleep(0.5)
    yield srv
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
