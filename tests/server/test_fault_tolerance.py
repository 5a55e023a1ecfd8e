"""A failing step fails only its requests; a killed scheduler is restarted (real server)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Server
from .spawn import spawn_server, wait_healthy

MARKER = "ZZFAULTZZ"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with spawn_server(tmp_path_factory.mktemp("fault"), [],
                      env={"RADIXSERVE_TEST_FAULT": MARKER}) as s:  # fmt: skip
        yield s


@pytest.fixture(scope="module")
def http(srv: Server) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=120)


def idle_load(http: httpx.Client, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        load = http.get("/get_load").json()
        if load["num_running_reqs"] == load["num_waiting_reqs"] == load["num_used_tokens"] == 0:
            return load
        if time.monotonic() > deadline:
            pytest.fail(f"not idle: {load}")
        time.sleep(0.2)


def chat(content: str, **kw: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 4,
            "temperature": 0, **kw}  # fmt: skip


def test_failing_step_fails_only_its_requests(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat(f"say {MARKER} please"))
    assert r.status_code == 500, r.text
    err = r.json()["error"]
    assert err["code"] == 500 and "injected fault" in err["message"]
    with http.stream("POST", "/v1/chat/completions",
                     json=chat(f"{MARKER} again", stream=True)) as s:  # fmt: skip
        assert s.status_code == 500  # the first update is awaited before the stream starts
    load = idle_load(http)
    assert load["kv_available"] + load["kv_evictable"] == load["kv_size"]
    assert load["num_step_errors"] >= 2
    ok = http.post("/v1/chat/completions", json=chat("Hello"))
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
    assert ok.json()["model"] == "SmolLM2-135M-Instruct"  # the default model's name, no path
    metrics = http.get("/metrics").text
    line = [ln for ln in metrics.splitlines() if ln.startswith("radixserve:num_step_errors")]
    assert line and float(line[0].split()[-1]) >= 2


def test_killed_scheduler_is_restarted(http: httpx.Client, srv: Server) -> None:
    pid = http.get("/get_server_info").json()["scheduler_pid"]
    body = chat("Count to one thousand:", stream=True, max_tokens=400, ignore_eos=True)
    with http.stream("POST", "/v1/chat/completions", json=body) as s:
        assert s.status_code == 200
        lines = s.iter_lines()
        first = next(ln for ln in lines if ln.startswith("data: "))  # the stream is running
        assert "chat.completion.chunk" in first
        os.kill(pid, signal.SIGKILL)
        rest = [ln[6:] for ln in lines if ln.startswith("data: ")]
    assert rest[-1] == "[DONE]"
    errors = [json.loads(x)["error"] for x in rest[:-1] if '"error"' in x]
    assert errors and errors[0]["code"] == 503 and "died" in errors[0]["message"]
    # Loading the model takes the new scheduler seconds: meanwhile the server says unhealthy
    # and refuses work with 503 instead of hanging.
    assert http.get("/health").status_code == 503
    busy = http.post("/v1/chat/completions", json=chat("Hello"))
    assert busy.status_code == 503 and "restarted" in busy.json()["error"]["message"]
    wait_healthy(srv)  # the watchdog restarted it
    info = http.get("/get_server_info").json()
    assert info["scheduler_pid"] != pid
    ok = http.post("/v1/chat/completions", json=chat("Hello"))
    assert ok.status_code == 200, ok.text
    assert http.get("/get_load").json()["num_scheduler_restarts"] == 1


def test_no_restart_on_crash(tmp_path_factory: pytest.TempPathFactory) -> None:
    from radixserve.serve import parse_args

    assert parse_args([]).restart_on_crash is True
    with spawn_server(tmp_path_factory.mktemp("norestart"), ["--no-restart-on-crash"]) as s:
        c = httpx.Client(base_url=s.url, timeout=60)
        os.kill(c.get("/get_server_info").json()["scheduler_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while c.get("/health").status_code == 200:  # the watchdog notices (0.2 s polls)
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = c.post("/v1/chat/completions", json=chat("Hello"))
        assert r.status_code == 503 and "restarted" not in r.json()["error"]["message"]
        assert c.get("/health").status_code == 503  # stays down: nothing restarts it
