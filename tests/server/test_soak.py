"""Soak (slow): many concurrent streams on a KV pool far too small for all of them at once.

The scheduler must retract and evict to make progress; every stream must still finish without
an error, and afterwards the KV pool must be fully free (only evictable cache left).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Server
from .spawn import spawn_server
from .test_fault_tolerance import idle_load

STREAMS = 48
MAX_TOKENS = 48


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--max-total-tokens", "768", "--max-running-requests", "32",
            "--chunked-prefill-size", "128"]  # fmt: skip
    with spawn_server(tmp_path_factory.mktemp("soak"), args) as s:
        yield s


async def one_stream(c: httpx.AsyncClient, i: int) -> tuple[int, str]:
    body = {"prompt": f"Story number {i}: once upon a time, in a land far away,",
            "max_tokens": MAX_TOKENS, "ignore_eos": True, "stream": True,
            "temperature": 0.8, "seed": i}  # fmt: skip
    tokens, error = 0, ""
    async with c.stream("POST", "/v1/completions", json=body) as r:
        if r.status_code != 200:
            return 0, f"status {r.status_code}: {(await r.aread())[:200]!r}"
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                error = str(event["error"])
            elif event["choices"] and event["choices"][0].get("finish_reason"):
                tokens = MAX_TOKENS if event["choices"][0]["finish_reason"] == "length" else -1
    return tokens, error


@pytest.mark.slow
def test_soak_retraction_no_errors(small_pool: Server) -> None:
    async def run() -> list[tuple[int, str]]:
        limits = httpx.Limits(max_connections=STREAMS)
        async with httpx.AsyncClient(base_url=small_pool.url, timeout=1800, limits=limits) as c:
            return list(await asyncio.gather(*[one_stream(c, i) for i in range(STREAMS)]))

    results = asyncio.run(run())
    errors = [e for _, e in results if e]
    assert not errors, errors[:3]
    assert all(n == MAX_TOKENS for n, _ in results), results
    http = httpx.Client(base_url=small_pool.url, timeout=60)
    load = idle_load(http)
    assert load["num_retractions"] > 0  # the pool really was too small
    assert load["kv_available"] + load["kv_evictable"] == load["kv_size"]
    assert http.get("/v1/models").json()["data"][0]["id"] == "SmolLM2-135M-Instruct"
