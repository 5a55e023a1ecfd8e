"""/pause_generation and /continue_generation on a real server: in place, running requests keep
their KV and go on where they stopped; in abort mode they end; new requests wait meanwhile."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Server

LONG = {"max_new_tokens": 400, "temperature": 0, "ignore_eos": True}


@pytest.fixture()
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client
        client.post("/continue_generation")  # never leave the shared server paused


def load(http: httpx.Client) -> dict[str, Any]:
    return dict(http.get("/get_load").json())


def wait_for(http: httpx.Client, check: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        now = load(http)
        if check(now) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def freed(s: dict[str, Any]) -> bool:
    """Every KV slot free or only held by the prefix cache (evictable)."""
    return bool(s["kv_available"] + s["kv_evictable"] == s["kv_size"])


def test_pause_in_place_then_continue(http: httpx.Client) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = pool.submit(http.post, "/generate",
                              json={"text": "Count with me: one,", "sampling_params": LONG})  # fmt: skip
        wait_for(http, lambda s: s["num_running_reqs"] == 1)
        r = http.post("/pause_generation", json={"mode": "in_place"})
        assert r.status_code == 200 and r.json()["success"] is True
        steps = load(http)["num_forward_steps"]
        queued = pool.submit(http.post, "/generate",
                             json={"text": "Hi", "sampling_params": {"max_new_tokens": 2}})  # fmt: skip
        now = wait_for(http, lambda s: s["num_waiting_reqs"] == 1)
        assert now["num_running_reqs"] == 1 and now["num_waiting_reqs"] == 1
        assert now["kv_available"] < now["kv_size"]  # the paused request keeps its KV
        time.sleep(0.3)
        later = load(http)
        assert not running.done() and not queued.done()
        assert later["num_running_reqs"] == 1 and later["num_waiting_reqs"] == 1
        assert later["num_forward_steps"] == steps  # no step ran while paused
        assert http.post("/continue_generation").status_code == 200
        out, small = running.result(timeout=120), queued.result(timeout=120)
    assert out.status_code == 200 and small.status_code == 200
    meta = out.json()["meta_info"]
    assert meta["completion_tokens"] == LONG["max_new_tokens"]  # went on where it stopped
    assert meta["finish_reason"]["type"] == "length"
    idle = wait_for(http, lambda s: s["num_running_reqs"] == 0 and freed(s))
    assert idle["num_running_reqs"] == 0 and freed(idle)


def test_pause_abort_ends_requests_and_frees_kv(http: httpx.Client) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(http.post, "/generate",
                              json={"text": "Count with me: one,", "sampling_params": LONG})  # fmt: skip
        wait_for(http, lambda s: s["num_running_reqs"] == 1)
        assert http.post("/pause_generation", json={}).status_code == 200  # mode abort: default
        out = running.result(timeout=120)
    assert out.json()["meta_info"]["finish_reason"]["type"] == "abort"
    now = wait_for(http, lambda s: s["num_running_reqs"] == 0 and freed(s))
    assert now["num_running_reqs"] == 0 and freed(now)
    assert http.post("/continue_generation").status_code == 200
    r = http.post("/generate", json={"text": "Hi", "sampling_params": {"max_new_tokens": 2}})
    assert r.status_code == 200


def test_pause_bad_mode(http: httpx.Client) -> None:
    for mode in ("retract", "sideways"):
        r = http.post("/pause_generation", json={"mode": mode})
        assert r.status_code == 400 and r.json()["error"]["param"] == "mode", r.text
    assert load(http)["num_running_reqs"] == 0
