"""Sessions (/open_session, /close_session, session_params), /extend and /batch on a real server."""

from __future__ import annotations

from typing import Any, Optional

import httpx
import pytest

from .conftest import Server

SP = {"max_new_tokens": 6, "temperature": 0}


@pytest.fixture(scope="module")
def http(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120)


def tokens(http: httpx.Client, text: str) -> list[int]:
    return list(http.post("/tokenize", json={"prompt": text}).json()["tokens"])


def generate(http: httpx.Client, session: Optional[dict[str, Any]] = None, **body: Any
             ) -> httpx.Response:  # fmt: skip
    body.setdefault("sampling_params", SP)
    if session is not None:
        body["session_params"] = session
    return http.post("/generate", json=body)


def load(http: httpx.Client) -> dict[str, Any]:
    return dict(http.get("/get_load").json())


def test_extend_five_turns_reuse_the_cache(http: httpx.Client) -> None:
    first = generate(http, text="The capital of France is", rid="conv-1").json()["meta_info"]
    context = first["prompt_tokens"] + first["completion_tokens"]
    for turn in range(5):
        text = f" Question {turn}: and after that?"
        r = http.post("/extend", json={"rid": "conv-1", "text": text, "sampling_params": SP})
        assert r.status_code == 200, r.text
        body = r.json()
        meta = body["meta"]
        assert body["text"].startswith(text) and meta["rid"] == "conv-1"
        assert meta["finish_reason"] in ("stop", "length") and meta["radix_cache_hit"] is True
        assert meta["prompt_tokens"] == context + meta["input_tokens"]
        # All of the previous context comes from the cache except its very last token: the
        # KV of a request's final sampled token is never computed (nothing is fed after it).
        assert meta["cached_tokens"] >= context - 1
        assert meta["context_length"] == meta["prompt_tokens"] + meta["output_tokens"]
        context = meta["context_length"]
    missing = http.post("/extend", json={"rid": "no-such-conversation", "text": "hi"})
    assert missing.status_code == 404
    assert "no-such-conversation" in missing.json()["error"]["message"]
    assert http.post("/extend", json={"rid": "conv-1"}).status_code == 400


def test_session_append_branch_replace(http: httpx.Client) -> None:
    sid = http.post("/open_session", json={"capacity_of_str_len": 2000}).json()
    assert isinstance(sid, str) and sid
    ids = tokens(http, "Once upon a time")
    a = generate(http, {"id": sid}, input_ids=ids, rid="s1-a").json()
    more = tokens(http, " there was a dragon")
    b = generate(http, {"id": sid, "rid": "s1-a"}, input_ids=more, rid="s1-b").json()
    # The same prompt sent whole gives the same greedy answer: b's prompt is a's + more.
    ref = generate(http, input_ids=ids + a["output_ids"] + more).json()
    assert b["output_ids"] == ref["output_ids"]
    meta = b["meta_info"]
    assert meta["prompt_tokens"] == len(ids) + len(a["output_ids"]) + len(more)
    assert meta["cached_tokens"] >= len(ids) + len(a["output_ids"]) - 1
    # Branch from a, keeping only its prompt (offset), next to b.
    other = tokens(http, " in a faraway land")
    c = generate(http, {"id": sid, "rid": "s1-a", "offset": len(ids)}, input_ids=other,
                 rid="s1-c").json()  # fmt: skip
    assert c["meta_info"]["prompt_tokens"] == len(ids) + len(other)
    assert c["output_ids"] == generate(http, input_ids=ids + other).json()["output_ids"]
    assert (
        generate(http, {"id": sid, "rid": "s1-b"}, text=" still here", rid="s1-b2").status_code
        == 200
    )
    # replace drops a's other branches (b, its child, and c).
    d = generate(http, {"id": sid, "rid": "s1-a", "replace": True}, text=" The end.", rid="s1-d")
    assert d.status_code == 200
    for gone in ("s1-b", "s1-b2", "s1-c"):
        r = generate(http, {"id": sid, "rid": gone}, text=" again", rid=f"{gone}-x")
        assert r.status_code == 404 and gone in r.json()["error"]["message"]
    assert generate(http, {"id": sid, "rid": "s1-d"}, text=" More.", rid="s1-e").status_code == 200
    dup = generate(http, {"id": sid, "rid": "s1-d"}, text=" More.", rid="s1-e")
    assert dup.status_code == 400
    bad_offset = generate(http, {"id": sid, "rid": "s1-a", "offset": 10_000}, text="x", rid="o")
    assert bad_offset.status_code == 400
    assert http.post("/close_session", json={"session_id": sid}).status_code == 200
    assert http.post("/close_session", json={"session_id": sid}).status_code == 404
    closed = generate(http, {"id": sid, "rid": "s1-d"}, text=" More.", rid="s1-f")
    assert closed.status_code == 404


def test_session_capacity_and_open_errors(http: httpx.Client) -> None:
    sid = http.post("/open_session", json={"capacity_of_str_len": 40, "session_id": "cap"}).json()
    assert sid == "cap"
    again = http.post("/open_session", json={"capacity_of_str_len": 40, "session_id": "cap"})
    assert again.status_code == 400
    assert http.post("/open_session", json={"capacity_of_str_len": 0}).status_code == 400
    assert http.post("/open_session", json={}).status_code == 400
    ok = generate(http, {"id": "cap"}, text="Hello there", rid="cap-1")
    assert ok.status_code == 200
    assert (
        ok.json()["meta_info"]["prompt_tokens"] + ok.json()["meta_info"]["completion_tokens"] <= 40
    )
    too_long = generate(http, {"id": "cap", "rid": "cap-1"}, text=" word" * 40, rid="cap-2")
    assert too_long.status_code == 400 and "capacity" in too_long.json()["error"]["message"]
    # The output stops at the capacity (the caller cannot easily count the whole prompt).
    fill = generate(http, {"id": "cap", "rid": "cap-1"}, text=" ok", rid="cap-4",
                    sampling_params={"temperature": 0, "ignore_eos": True,
                                     "max_new_tokens": 100}).json()  # fmt: skip
    meta = fill["meta_info"]
    assert meta["prompt_tokens"] + meta["completion_tokens"] == 40
    assert meta["finish_reason"]["type"] == "length"
    # Appending to the full request leaves no room: refused.
    full = generate(http, {"id": "cap", "rid": "cap-4"}, text=" ok", rid="cap-5")
    assert full.status_code == 400 and "capacity" in full.json()["error"]["message"]
    assert generate(http, {"id": "nope"}, text="hi").status_code == 404
    assert http.post("/close_session", json={"session_id": "cap"}).status_code == 200


def test_flush_refused_while_a_session_is_open(http: httpx.Client) -> None:
    sid = http.post("/open_session", json={"capacity_of_str_len": 500, "session_id": "fl"}).json()
    assert generate(http, {"id": sid}, text="Flush me", rid="fl-1").status_code == 200
    refused = http.post("/flush_cache")
    assert refused.status_code == 400 and "(fl)" in refused.text
    assert http.post("/close_session", json={"session_id": sid}).status_code == 200
    assert http.post("/flush_cache").status_code == 200
    # The flush forgot the /extend conversations too.
    assert http.post("/extend", json={"rid": "conv-1", "text": " more"}).status_code == 404


def test_kv_fully_free_after_closing_every_session(http: httpx.Client) -> None:
    assert http.post("/flush_cache").status_code == 200
    sids = [http.post("/open_session", json={"capacity_of_str_len": 500}).json() for _ in range(2)]
    for i, sid in enumerate(sids):
        generate(http, {"id": sid}, text=f"Session number {i} says", rid=f"kv-{i}")
        generate(http, {"id": sid, "rid": f"kv-{i}"}, text=" and then", rid=f"kv-{i}-b")
    held = load(http)
    assert held["num_running_reqs"] == 0 and held["num_used_tokens"] > 0  # locked by sessions
    for sid in sids:
        assert http.post("/close_session", json={"session_id": sid}).status_code == 200
    free = load(http)
    assert free["num_used_tokens"] == 0
    assert free["kv_available"] + free["kv_evictable"] == free["kv_size"]
    assert http.post("/flush_cache").status_code == 200
    assert load(http)["kv_available"] == load(http)["kv_size"]


def test_batch_mixed_good_and_bad(http: httpx.Client) -> None:
    ids = tokens(http, "Translate to German: Hello world")
    requests: list[Any] = [
        {"text": "Translate to French: Hello world", "sampling_params": SP},
        {"input_ids": ids, "sampling_params": SP},
        {"text": "bad", "sampling_params": {"temperature": -1}},
        {"sampling_params": SP},
        {"input_ids": [10**9]},
        "not an object",
    ]
    r = http.post("/batch", json={"requests": requests})
    assert r.status_code == 200, r.text
    body = r.json()
    res = body["responses"]
    assert len(res) == 6
    assert res[0]["text"].startswith("Translate to French: Hello world")
    single = generate(http, input_ids=ids).json()
    assert res[1]["text"].endswith(single["text"])
    assert res[1]["meta"]["output_tokens"] == single["meta_info"]["completion_tokens"]
    assert res[1]["meta"]["input_tokens"] == len(ids)
    for bad in res[2:]:
        assert bad["error"]["code"] == 400 and bad["error"]["message"]
    meta = body["batch_meta"]
    assert meta["total_requests"] == 6 and meta["successful"] == 2
    assert meta["total_time_ms"] > 0 and 0.0 <= meta["avg_radix_cache_hit_rate"] <= 1.0
    too_many = http.post("/batch", json={"requests": [{"text": "x"}] * 257})
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == 413
    assert http.post("/batch", json={"requests": []}).status_code == 400
    assert http.post("/batch", json={"requests": "x"}).status_code == 400


def test_chat_continues_a_session(http: httpx.Client) -> None:
    """Chat's session_params (SGLang's extension) appends the templated messages to the
    session's conversation, as /generate does."""
    sid = http.post("/open_session", json={"capacity_of_str_len": 4000}).json()

    def chat(content: str, session: Optional[dict[str, Any]] = None, **extra: Any
             ) -> httpx.Response:  # fmt: skip
        body: dict[str, Any] = {"model": "m", "max_tokens": 5, "temperature": 0,
                                "messages": [{"role": "user", "content": content}], **extra}  # fmt: skip
        if session is not None:
            body["session_params"] = session
        return http.post("/v1/chat/completions", json=body)

    first = chat("Name a colour.", {"id": sid}, rid="chat-s1")
    assert first.status_code == 200, first.text
    u1 = first.json()["usage"]
    alone = chat("And another one?").json()["usage"]["prompt_tokens"]
    second = chat("And another one?", {"id": sid, "rid": "chat-s1"}, rid="chat-s2")
    assert second.status_code == 200, second.text
    u2 = second.json()["usage"]
    assert u2["prompt_tokens"] == u1["prompt_tokens"] + u1["completion_tokens"] + alone
    assert u2["prompt_tokens_details"]["cached_tokens"] >= u1["prompt_tokens"]
    bad = chat("hi", {"id": sid, "rid": "chat-s1"}, n=2)
    assert bad.status_code == 400 and "n = 1" in bad.json()["error"]["message"]
    assert chat("hi", {"rid": "chat-s1"}).status_code == 400  # no session id
    missing = chat("hi", {"id": sid, "rid": "no-such-request"})
    assert missing.status_code == 404, missing.text
