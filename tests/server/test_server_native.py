"""SGLang's native routes, error cases, disconnects and concurrency on a real server (httpx)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import PAYLOAD_LIMIT, Server


@pytest.fixture(scope="module")
def http(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60)


def sse_data(lines: list[str]) -> list[Any]:
    data = [ln[6:] for ln in lines if ln.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def wait_idle(http: httpx.Client, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        load = http.get("/get_load").json()
        if load["num_running_reqs"] == 0 and load["num_waiting_reqs"] == 0:
            if load["num_used_tokens"] == 0:
                return load
        if time.monotonic() > deadline:
            pytest.fail(f"server not idle: {load}")
        time.sleep(0.1)


def test_generate_single_batch_stream(http: httpx.Client) -> None:
    sp = {"max_new_tokens": 5, "temperature": 0}
    one = http.post("/generate", json={"text": "Hello, my name is", "sampling_params": sp}).json()
    meta = one["meta_info"]
    assert len(one["output_ids"]) == meta["completion_tokens"] <= 5 and one["text"]
    assert meta["finish_reason"]["type"] in ("stop", "length") and meta["prompt_tokens"] > 0
    assert {"id", "cached_tokens", "e2e_latency"} <= set(meta)
    ids = http.post("/tokenize", json={"prompt": "Hello, my name is"}).json()["tokens"]
    batch = http.put("/generate", json={"input_ids": [ids, ids[:3]], "sampling_params": sp})
    assert batch.status_code == 200
    assert batch.json()[0]["output_ids"] == one["output_ids"]  # greedy, same prompt
    with http.stream("POST", "/generate", json={"text": "Hello, my name is", "stream": True,
                                               "sampling_params": sp}) as r:  # fmt: skip
        events = sse_data(list(r.iter_lines()))
    assert events[-1]["text"] == one["text"]  # cumulative
    assert events[-1]["meta_info"]["finish_reason"] is not None


def test_generate_logprobs(http: httpx.Client) -> None:
    body = {"text": "1, 2, 3,", "return_logprob": True, "top_logprobs_num": 2,
            "sampling_params": {"max_new_tokens": 3, "temperature": 0}}  # fmt: skip
    meta = http.post("/generate", json=body).json()["meta_info"]
    assert len(meta["output_token_logprobs"]) == meta["completion_tokens"]
    assert all(len(t) == 2 for t in meta["output_top_logprobs"])
    ids = http.post("/tokenize", json={"prompt": "1, 2, 3,"}).json()["tokens"]
    for start in (0, 2):
        meta = http.post("/generate", json={**body, "logprob_start_len": start}).json()
        meta = meta["meta_info"]
        first = max(start, 1)  # the first prompt token has no logprob
        assert [t[1] for t in meta["input_token_logprobs"]] == ids[first:]
        assert all(t[0] <= 0.0 for t in meta["input_token_logprobs"])
        assert [len(t) for t in meta["input_top_logprobs"]] == [2] * (len(ids) - first)
        assert all(t[0][0] >= t[1][0] for t in meta["input_top_logprobs"])
    meta = http.post("/generate", json={**body, "logprob_start_len": -1}).json()["meta_info"]
    assert "input_token_logprobs" not in meta


def test_info_routes(http: httpx.Client) -> None:
    health = http.get("/health").json()
    assert health["status"] == "healthy" and "radix_cache_usage_perc" in health
    assert http.get("/health_generate").status_code == 200
    info = http.get("/get_model_info").json()
    assert set(info) == {"model_path", "is_generation", "tokenizer_path",
                         "preferred_sampling_params", "weight_version", "has_image_understanding",
                         "has_audio_understanding", "model_type", "architectures"}  # fmt: skip
    assert info["is_generation"] is True
    assert http.get("/get_server_info").json()["port"] > 0
    text = "SGLang provides efficient tokenization endpoints."
    t = http.post("/v1/tokenize", json={"prompt": text, "add_special_tokens": False}).json()
    assert t["count"] == len(t["tokens"]) and t["max_model_len"] > 0
    assert http.post("/detokenize", json={"tokens": t["tokens"]}).json()["text"] == text
    wait_idle(http)
    assert http.post("/flush_cache").status_code == 200
    assert http.get("/get_load").json()["kv_cached"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/generate", b"{bad json", 400),
        ("POST", "/generate", b'{"text": 5}', 400),
        ("POST", "/generate", b'{"text": "x", "sampling_params": {"top_k": 0}}', 400),
        ("POST", "/generate", b'{"input_ids": [1, 99999999]}', 400),
        ("POST", "/v1/chat/completions", b'{"messages": "hi"}', 400),
        ("POST", "/v1/completions", b'{"prompt": "x", "max_tokens": -1}', 400),
        ("GET", "/nope", b"", 404),
        ("POST", "/generate", b'{"text": "' + b"a" * PAYLOAD_LIMIT + b'"}', 413),
    ],
    ids=["bad-json", "wrong-type", "top-k-0", "bad-token", "messages-str", "max-tokens-neg",
         "404", "413"],
)  # fmt: skip
def test_errors(http: httpx.Client, method: str, path: str, body: bytes, status: int) -> None:
    r = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and err["message"]


def test_disconnect_mid_stream_frees_kv(http: httpx.Client) -> None:
    wait_idle(http)
    body = {"text": "Tell me a long story.", "stream": True, "rid": "disconnect-me",
            "sampling_params": {"max_new_tokens": 2000, "ignore_eos": True}}  # fmt: skip
    with http.stream("POST", "/generate", json=body) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 3:
                break
    assert http.get("/get_load").json()["num_running_reqs"] <= 1
    wait_idle(http)  # running back to 0 and every KV slot free or evictable


def test_abort_request(http: httpx.Client, server: Server) -> None:
    body = {"text": "Count to a thousand.", "rid": "abort-me",
            "sampling_params": {"max_new_tokens": 2000, "ignore_eos": True}}  # fmt: skip

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            task = asyncio.create_task(c.post("/generate", json=body))
            await asyncio.sleep(1.0)
            assert (await c.post("/abort_request", json={"rid": "abort-me"})).status_code == 200
            return (await task).json()  # type: ignore[no-any-return]

    out = asyncio.run(run())
    assert out["meta_info"]["finish_reason"]["type"] == "abort"
    assert out["meta_info"]["completion_tokens"] < 2000
    wait_idle(http)


def test_64_concurrent_streams(server: Server) -> None:
    async def one(c: httpx.AsyncClient, i: int) -> str:
        body = {"messages": [{"role": "user", "content": f"Say a number: {i}"}],
                "max_tokens": 4, "stream": True}  # fmt: skip
        text = ""
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            lines = [ln async for ln in r.aiter_lines()]
        for ev in sse_data(lines):
            for ch in ev["choices"]:
                text += ch["delta"].get("content") or ""
        return text

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as c:
            return await asyncio.gather(*(one(c, i) for i in range(64)))

    texts = asyncio.run(run())
    assert len(texts) == 64 and sum(bool(t) for t in texts) >= 60


def test_metrics(http: httpx.Client) -> None:
    http.post("/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 2}})
    fams = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    for name in (
        "prompt_tokens",
        "generation_tokens",
        "time_to_first_token_seconds",
        "inter_token_latency_seconds",
        "e2e_request_latency_seconds",
        "num_running_reqs",
        "num_queue_reqs",
        "token_usage",
        "cache_hit_rate",
        "num_http_requests",
    ):
        assert "radixserve:" + name in fams, name
    gen = fams["radixserve:generation_tokens"].samples[0].value
    assert gen >= 2
    routes = {s.labels["route"] for s in fams["radixserve:num_http_requests"].samples}
    assert "/generate" in routes and "/v1/chat/completions" in routes


def test_configure_logging_switches_request_logging(server: Server) -> None:
    """/configure_logging's log_requests turns uvicorn's access log on and off while serving
    (this server started without --log-requests, at --log-level warning)."""
    import uuid

    on, off = f"/health?probe={uuid.uuid4().hex}", f"/health?probe={uuid.uuid4().hex}"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        try:
            r = http.post("/configure_logging", json={"log_requests": True})
            assert r.status_code == 200 and r.json()["log_requests"] is True
            assert http.get(on).status_code == 200
            assert http.get("/get_server_info").json()["log_requests"] is True
        finally:
            assert http.post("/configure_logging", json={"log_requests": False}).status_code == 200
        assert http.get(off).status_code == 200
        bad = http.post("/configure_logging", json={"dump_requests_folder": "/tmp/x"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "dump_requests_folder"
    time.sleep(0.2)  # the log file is written by the server process
    log = server.log.read_text(errors="replace")
    assert on.split("?")[1] in log and off.split("?")[1] not in log


def test_profile_writes_a_chrome_trace(server: Server, tmp_path: Any) -> None:
    """/start_profile .. /stop_profile, and num_steps ending a profile by itself: each writes a
    Chrome trace of the scheduler's steps to output_dir."""
    gen = {"text": "Hello", "sampling_params": {"max_new_tokens": 4, "temperature": 0}}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        manual = tmp_path / "manual"
        r = http.post("/start_profile", json={"output_dir": str(manual)})
        assert r.status_code == 200, r.text
        again = http.post("/start_profile", json={"output_dir": str(manual)})
        assert again.status_code == 400 and "already running" in again.json()["error"]["message"]
        assert http.post("/generate", json=gen).status_code == 200
        stop = http.post("/stop_profile")
        assert stop.status_code == 200, stop.text
        (trace,) = manual.glob("*.trace.json")
        assert trace.name in stop.json()["message"]
        events = json.loads(trace.read_text())["traceEvents"]
        assert any("linear" in str(e.get("name", "")).lower() or "aten::" in str(e.get("name", ""))
                   for e in events)  # fmt: skip
        assert http.post("/stop_profile").status_code == 400  # none running

        by_steps = tmp_path / "steps"
        r = http.post("/start_profile", json={"output_dir": str(by_steps), "num_steps": 2})
        assert r.status_code == 200, r.text
        assert http.post("/generate", json=gen).status_code == 200  # > 2 steps
        deadline = time.monotonic() + 30
        while not list(by_steps.glob("*.trace.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list(by_steps.glob("*.trace.json"))) == 1
        assert http.post("/stop_profile").status_code == 400  # it ended by itself

        for body in ({"activities": ["TPU"]}, {"activities": ["GPU"]}, {"num_steps": 0},
                     {"output_dir": "/proc/radixserve-no"}):  # fmt: skip
            bad = http.post("/start_profile", json=body)
            assert bad.status_code == 400, (body, bad.text)
        assert http.post("/stop_profile").status_code == 400  # no bad start left one running
