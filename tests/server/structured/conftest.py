"""One real server for the structured-output, tool-calling and reasoning tests: the default
model with the hermes tool-call parser and the qwen3 reasoning parser (reasoning only where
the output opens a <think> section, so plain requests are unaffected)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.server.conftest import ROOT, START_TIMEOUT, Server, free_port


@pytest.fixture(scope="session")
def grammar_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    log = tmp_path_factory.mktemp("grammar_server") / "server.log"
    cmd = [sys.executable, "-m", "radixserve.serve", "--port", str(port),
           "--max-total-tokens", "8192", "--max-running-requests", "32",
           "--tool-call-parser", "hermes", "--reasoning-parser", "qwen3",
           "--log-level", "warning"]  # fmt: skip
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
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
