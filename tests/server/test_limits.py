"""--request-timeout and --max-queued-requests on a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Server
from .spawn import spawn_server
from .test_fault_tolerance import idle_load

LONG = {"messages": [{"role": "user", "content": "Count to one thousand:"}],
        "max_tokens": 3000, "ignore_eos": True, "temperature": 0}  # fmt: skip


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--request-timeout", "2", "--max-running-requests", "1", "--max-queued-requests", "1"]
    with spawn_server(tmp_path_factory.mktemp("limits"), args) as s:
        yield s


@pytest.fixture(scope="module")
def http(srv: Server) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=120)


def test_request_timeout(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=LONG)
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["type"] == "timeout_error" and "--request-timeout" in err["message"]
    with http.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as s:
        if s.status_code == 504:  # timed out before the first token (a loaded machine)
            pass
        else:
            data = [ln[6:] for ln in s.iter_lines() if ln.startswith("data: ")]
            assert data[-1] == "[DONE]"
            assert json.loads(data[-2])["error"]["code"] == 504
    load = idle_load(http)
    assert load["kv_available"] + load["kv_evictable"] == load["kv_size"]


def test_queue_cap_503_retry_after(srv: Server) -> None:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=120) as c:
            return list(await asyncio.gather(*[c.post("/v1/completions", json={
                "prompt": "Count:", "max_tokens": 3000, "ignore_eos": True}) for _ in range(6)]))

    rs = asyncio.run(run())
    codes = sorted(r.status_code for r in rs)
    # One runs, one waits (both then time out), the rest are turned away at once.
    assert codes.count(503) >= 4 and set(codes) <= {503, 504}, codes
    over: Any = next(r for r in rs if r.status_code == 503)
    assert over.headers["retry-after"] == "1"
    assert "--max-queued-requests" in over.json()["error"]["message"]
