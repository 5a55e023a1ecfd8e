"""A real radixserve server on 127.0.0.1 (default model, small KV pool) for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .spawn import ROOT, START_TIMEOUT, Server, free_port, spawn_server

__all__ = ["PAYLOAD_LIMIT", "ROOT", "START_TIMEOUT", "Server", "children_of", "free_port"]
PAYLOAD_LIMIT = 200_000


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


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.environ.get("RADIXSERVE_TEST_URL"):  # reuse a running server (development only)
        yield Server(None, os.environ["RADIXSERVE_TEST_URL"], Path("/dev/null"))
        return
    args = ["--max-total-tokens", "8192", "--max-running-requests", "64",
            "--max-payload-size", str(PAYLOAD_LIMIT)]  # fmt: skip
    with spawn_server(tmp_path_factory.mktemp("server"), args) as srv:
        yield srv
