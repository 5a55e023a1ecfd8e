"""The HTTP process serves plain requests without ever loading torch (~190 MB of RSS and
seconds of start-up; only the scheduler process runs the model). The first constrained
request validates its grammar with xgrammar, which loads torch there: that still works."""

from __future__ import annotations

from pathlib import Path

import httpx

from .spawn import spawn_server


def torch_mapped(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_plain_requests_leave_torch_unloaded(tmp_path: Path) -> None:
    with spawn_server(tmp_path, []) as srv:
        assert srv.proc is not None
        with httpx.Client(base_url=srv.url, timeout=300) as c:
            chat = c.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "stop": ["\n"]})
            assert chat.status_code == 200, chat.text
            done = c.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 3, "logprobs": 2,
                                                   "stream": True})  # fmt: skip
            assert done.status_code == 200 and "[DONE]" in done.text
            assert c.post("/tokenize", json={"prompt": "Hi there"}).json()["count"] == 2
            gen = c.post("/generate", json={"text": "Hi", "sampling_params": {"max_new_tokens": 2}})
            assert gen.status_code == 200, gen.text
            assert not torch_mapped(srv.proc.pid)
            schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
            fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
            ok = c.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "JSON"}], "max_tokens": 8,
                "response_format": fmt})  # fmt: skip
            assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"][0] == "{"
            fmt["json_schema"]["schema"] = {"type": "nonsense"}  # type: ignore[index]
            bad = c.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "x"}], "response_format": fmt})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_format"
            assert torch_mapped(srv.proc.pid)  # the check above can see torch
