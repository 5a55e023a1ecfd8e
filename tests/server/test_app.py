"""App-level tests of the HTTP layer over a scripted engine (no model): request conversion,
SSE framing, n and batch merging, error envelopes, API key, payload limit, metrics."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from radixserve.args import ServerArgs
from radixserve.entrypoints.app import create_app

from .fake_engine import FakeTokenizerManager


def make_client(tm: FakeTokenizerManager, **kw: Any) -> TestClient[Any]:
    # A private store: the app's lifespan opens --data-dir (never the user's real one).
    kw.setdefault("data_dir", tempfile.mkdtemp(prefix="radixserve-app-"))
    return TestClient(app=create_app(tm, ServerArgs(**kw)))


@pytest.fixture()
def tm() -> FakeTokenizerManager:
    return FakeTokenizerManager()


@pytest.fixture()
def client(tm: FakeTokenizerManager) -> Iterator[TestClient[Any]]:
    with make_client(tm, max_payload_size=4096) as c:
        yield c


def sse_events(text: str) -> list[Any]:
    lines = [ln for ln in text.split("\n") if ln]
    assert all(ln.startswith("data: ") for ln in lines), lines
    assert lines[-1] == "data: [DONE]"
    return [json.loads(ln[6:]) for ln in lines[:-1]]


def test_lifespan_starts_and_stops_engine(tm: FakeTokenizerManager) -> None:
    with make_client(tm):
        assert tm.started and not tm.stopped
    assert tm.stopped


def test_chat_non_stream_maps_fields(client: TestClient[Any], tm: FakeTokenizerManager) -> None:
    body = {"model": "fake/model", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 5, "top_k": 7, "seed": 3, "stop": ["zz"], "logprobs": True,
        "top_logprobs": 2, "min_p": 0.1, "repetition_penalty": 1.1}  # fmt: skip
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "abcde",
                                             "reasoning_content": None, "tool_calls": None}  # fmt: skip
    assert data["choices"][0]["finish_reason"] == "length"
    lp = data["choices"][0]["logprobs"]["content"]
    assert [x["token"] for x in lp] == list("abcde")
    assert len(lp[0]["top_logprobs"]) == 2
    prompt = "system:be brief\nuser:hi\nassistant:"
    assert data["usage"] == {"prompt_tokens": len(prompt) + 1, "completion_tokens": 5,
                             "total_tokens": len(prompt) + 6,
                             "prompt_tokens_details": {"cached_tokens": 2}}  # fmt: skip
    sp = tm.requests[-1].sampling_params
    assert (sp.max_new_tokens, sp.top_k, sp.sampling_seed, sp.stop) == (5, 7, 3, ["zz"])
    assert (sp.min_p, sp.repetition_penalty, sp.top_p) == (0.1, 1.1, 1.0)
    assert sp.temperature == 0.7  # from the model's generation_config
    assert tm.requests[-1].input_ids == tm.tokenizer.encode(prompt)


def test_chat_stream_n2_include_usage(client: TestClient[Any], tm: FakeTokenizerManager) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "n": 2,
            "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}  # fmt: skip
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    texts = {0: "", 1: ""}
    for ev in events[:-1]:
        for ch in ev["choices"]:
            texts[ch["index"]] += ch["delta"].get("content") or ""
    assert texts == {0: "abc", 1: "abc"}
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 6
    # One request with n = 2: the engine (TokenizerManager) fans it out, not the HTTP layer.
    assert len(tm.requests) == 1 and tm.requests[0].sampling_params.n == 2


def test_completions_prompt_forms_echo_logprobs(client: TestClient[Any]) -> None:
    r = client.post("/v1/completions", json={"prompt": ["ab", "cd"], "max_tokens": 2, "n": 2})
    data = r.json()
    assert [c["text"] for c in data["choices"]] == ["ab"] * 4
    assert data["usage"]["prompt_tokens"] == 6  # each prompt counted once, not per choice
    r = client.post("/v1/completions", json={"prompt": [5, 6, 7], "max_tokens": 1, "echo": True,
                                              "logprobs": 1})  # fmt: skip
    ch = r.json()["choices"][0]
    assert ch["text"] == "\x05\x06\x07a"
    # The prompt tokens' logprobs first (none for the first token), then the generated one's.
    assert ch["logprobs"]["tokens"] == ["\x05", "\x06", "\x07", "a"]
    assert ch["logprobs"]["token_logprobs"] == [None, -1.0, -1.0, -0.5]
    assert ch["logprobs"]["text_offset"] == [0, 1, 2, 3]
    r = client.post("/v1/completions", json={"prompt": [[5], [6]], "max_tokens": 1,
                                              "stream": True})  # fmt: skip
    events = sse_events(r.text)
    assert sorted(c["index"] for e in events for c in e["choices"]) == [0, 1]


def test_native_generate_single_batch_stream(client: TestClient[Any]) -> None:
    r = client.post("/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 3}})
    data = r.json()
    assert data["text"] == "abc" and data["output_ids"] == [97, 98, 99]
    assert data["meta_info"]["finish_reason"] == {"type": "length", "length": 3}
    assert data["meta_info"]["prompt_tokens"] == 3
    r = client.put("/generate", json={"input_ids": [[5, 6], [7]],
                                      "sampling_params": [{"max_new_tokens": 1},
                                                          {"max_new_tokens": 2}]})  # fmt: skip
    assert [d["text"] for d in r.json()] == ["a", "ab"]
    r = client.post("/generate", json={"text": "hi", "stream": True, "return_logprob": True,
                                       "sampling_params": {"max_new_tokens": 2}})  # fmt: skip
    events = sse_events(r.text)
    assert [e["text"] for e in events] == ["a", "ab"]  # cumulative, as SGLang
    assert len(events[-1]["meta_info"]["output_token_logprobs"]) == 2


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [], "max_tokens": 1}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                  "temperature": "hot"}, "temperature"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                  "top_p": 1.5}, "top_p"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 100}]},
         "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                  "logit_bias": {"999": 1}}, "logit_bias"),
        ("/v1/completions", {"prompt": "x", "suffix": "y"}, "suffix"),
        ("/v1/completions", {"prompt": [1, "a"]}, "prompt"),
        ("/v1/completions", {"prompt": "x", "n": 0}, "n"),
        ("/v1/completions", {"max_tokens": 3}, None),
        ("/generate", {"text": "x", "input_ids": [1]}, "text"),
        ("/generate", {"text": "x", "sampling_params": {"bogus": 1}}, None),
        ("/generate", {"text": "x", "sampling_params": {"temperature": -1}}, "temperature"),
        ("/generate", {"text": "x" * 100}, None),
        ("/v1/detokenize", {"tokens": [1, 9999]}, "tokens"),
    ],
)  # fmt: skip
def test_bad_input_is_400_envelope(client: TestClient[Any], path: str, body: Any,
                                   param: Any) -> None:  # fmt: skip
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["code"] == 400 and err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_p": 1.5},
         "top_p"),
        ("/v1/completions", {"prompt": "x", "n": 129}, "n"),
        # Nothing is sized by n before the engine checks it (the fuzzer's MemoryError).
        ("/v1/completions", {"prompt": "x", "n": 2**33}, "n"),
        ("/v1/completions", {"prompt": "x", "n": 2**33, "echo": True}, "n"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 2**33},
         "n"),
        ("/v1/completions", {"prompt": "x" * 100}, "prompt"),
        ("/generate", {"text": "x", "sampling_params": {"min_p": 2}}, "min_p"),
    ],
)  # fmt: skip
def test_checks_run_once_in_the_engine(client: TestClient[Any], tm: FakeTokenizerManager,
                                       path: str, body: Any, param: str) -> None:  # fmt: skip
    """The HTTP layer passes the request on unchecked; the engine's input path rejects it and
    the route maps the error (its own name for the prompt) into the envelope."""
    before = len(tm.requests)
    r = client.post(path, json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert len(tm.requests) == before + 1  # it reached the engine: no check above it


def test_malformed_json_404_405_413(client: TestClient[Any]) -> None:
    r = client.post("/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", content=b"")
    assert r.status_code == 400
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["code"] == 404
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()
    r = client.post("/v1/completions", content=b'{"prompt": "' + b"x" * 5000 + b'"}')
    assert r.status_code == 413 and r.json()["error"]["code"] == 413


def test_api_key(tm: FakeTokenizerManager) -> None:
    with make_client(tm, api_key="sekrit") as c:
        assert c.get("/v1/models").status_code == 401
        bad = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
        ok = c.get("/v1/models", headers={"Authorization": "Bearer sekrit"})
        assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "fake/model"
        assert c.get("/health").status_code == 200


def test_models_tokenize_info_control(client: TestClient[Any], tm: FakeTokenizerManager) -> None:
    card = client.get("/v1/models/fake/model").json()
    assert (card["id"], card["object"], card["root"], card["max_model_len"]) == (
        "fake/model",
        "model",
        "fake/model",
        64,
    )
    assert {"created", "owned_by"} <= set(card)
    assert client.get("/v1/models/other").status_code == 404
    t = client.post("/tokenize", json={"prompt": "ab", "add_special_tokens": False}).json()
    assert t == {"tokens": [97, 98], "count": 2, "max_model_len": 64}
    assert client.post("/v1/detokenize", json={"tokens": [97, 98]}).json() == {"text": "ab"}
    info = client.get("/get_model_info").json()
    assert set(info) == {"model_path", "is_generation", "tokenizer_path",
                         "preferred_sampling_params", "weight_version", "has_image_understanding",
                         "has_audio_understanding", "model_type", "architectures"}  # fmt: skip
    assert client.get("/get_server_info").json()["max_total_num_tokens"] == 1000
    h = client.get("/health").json()
    assert h["status"] == "healthy" and h["num_requests_running"] == 0
    assert client.get("/health_generate").status_code == 200
    assert client.post("/flush_cache").status_code == 200
    assert client.post("/abort_request", json={"rid": "r1"}).json() == {"success": True}
    assert tm.aborted[-1] == "r1"
    r = client.post("/update_weights_from_disk", json={"model_path": "x"})
    assert r.status_code == 400 and r.json()["success"] is False


def test_metrics(client: TestClient[Any]) -> None:
    client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 3})
    client.post("/v1/completions", json={"prompt": "ab", "suffix": "x"})
    text = client.get("/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    gen = [s.value for s in fams["radixserve:generation_tokens"].samples
           if s.name.endswith("_total")]  # fmt: skip
    assert gen == [3.0]
    reqs = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in fams["radixserve:num_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert reqs[("/v1/completions", "200")] == 1 and reqs[("/v1/completions", "400")] == 1
    ttft = [s for s in fams["radixserve:time_to_first_token_seconds"].samples
            if s.name.endswith("_count")]  # fmt: skip
    assert ttft[0].value == 1
    hit = fams["radixserve:cache_hit_rate"].samples[0].value
    assert hit == 0.25
    spec = {n: fams["radixserve:" + n].samples[0].value
            for n in ("spec_draft_tokens", "spec_accepted_tokens", "spec_accept_rate")}  # fmt: skip
    assert spec == {"spec_draft_tokens": 8, "spec_accepted_tokens": 2, "spec_accept_rate": 0.25}


def test_health_503_when_engine_is_gone(client: TestClient[Any], tm: FakeTokenizerManager) -> None:
    assert client.get("/health").status_code == 200
    tm.stopped = True
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["error"]["code"] == 503
