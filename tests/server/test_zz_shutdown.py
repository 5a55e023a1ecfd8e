"""Runs last: SIGTERM stops the server and its scheduler process cleanly."""

from __future__ import annotations

import signal
import time

import pytest

from .conftest import Server, children_of


def test_sigterm_leaves_no_orphans(server: Server) -> None:
    if server.proc is None:
        pytest.skip("the server is not ours")
    kids = children_of(server.proc.pid)
    server.proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully (lifespan: engine stopped), then re-raises the signal, so
    # the exit status is "terminated by SIGTERM" rather than 0.
    assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM), server.log_tail()
    deadline = time.monotonic() + 10
    alive = kids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [k for k in kids if _alive(k)]
    assert not alive, f"orphan processes {alive}"


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
