"""Start and kill real servers on a given --data-dir (for the files/batches/responses tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ..conftest import ROOT, START_TIMEOUT, children_of, free_port

MAX_FILE_SIZE = 300_000


class DurableServer:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir, self.log = data_dir, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "radixserve.serve", "--port", str(self.port),
               "--max-total-tokens", "8192", "--max-running-requests", "64",
               "--data-dir", str(data_dir), "--max-file-size", str(MAX_FILE_SIZE),
               "--batch-concurrency", "32", "--log-level", "warning"]  # fmt: skip
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server not healthy after {START_TIMEOUT}s:\n{self.tail()}")
            time.sleep(0.5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL the server and its scheduler process: no shutdown code runs."""
        kids = children_of(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Holder:
    server: DurableServer


@pytest.fixture(scope="session")
def holder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Holder]:
    """One server on one data dir for every durable-store test module (the restart test
    replaces it with a new process on the same dir)."""
    tmp = tmp_path_factory.mktemp("durable")
    h = Holder()
    h.server = DurableServer(tmp / "data", tmp / "server.log")
    yield h
    h.server.stop()


@pytest.fixture
def client(holder: Holder) -> openai.OpenAI:
    return openai.OpenAI(base_url=holder.server.url + "/v1", api_key="unused", max_retries=0)


WAIT = 600.0  # a safety net for a very busy machine, not a timing assertion


def chat_line(custom_id: str, content: str, max_tokens: int = 2, **extra: Any) -> str:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": body})  # fmt: skip


def upload(client: openai.OpenAI, lines: list[str], purpose: Any = "batch") -> str:
    data = ("\n".join(lines) + "\n").encode()
    return client.files.create(file=("input.jsonl", data), purpose=purpose).id


def wait_batch(client: openai.OpenAI, batch_id: str) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.5)


def read_jsonl(client: openai.OpenAI, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines() if x]
