"""Request fields and routes that SGLang and vLLM clients send, through a real server: each
test here once failed against radixserve (an ignored field, a missing route, a rejected value)."""

from __future__ import annotations

import httpx
import openai
import pytest

from .conftest import Server

MSG = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def test_continuous_usage_stats_on_every_chunk(client: openai.OpenAI) -> None:
    opts = {"include_usage": True, "continuous_usage_stats": True}
    chat = list(client.chat.completions.create(
        model="default", messages=MSG, max_tokens=4, temperature=0, stream=True,
        stream_options=opts))  # type: ignore[call-overload]  # fmt: skip
    content = [c for c in chat if c.choices and c.choices[0].delta.content]
    assert content
    counts = [c.usage.completion_tokens for c in content if c.usage is not None]
    assert len(counts) == len(content) and counts == sorted(counts) and counts[-1] <= 4
    assert all(c.usage is not None and c.usage.prompt_tokens > 0 for c in content)
    assert chat[-1].choices == [] and chat[-1].usage is not None
    assert chat[-1].usage.completion_tokens == 4
    text = list(client.completions.create(model="default", prompt="The sky is", max_tokens=3,
                                          temperature=0, stream=True, stream_options=opts))  # type: ignore[call-overload]  # fmt: skip
    pieces = [c for c in text if c.choices]
    assert pieces and all(c.usage is not None and c.usage.completion_tokens >= 1 for c in pieces)
    assert pieces[-1].usage is not None and pieces[-1].usage.total_tokens == (
        pieces[-1].usage.prompt_tokens + 3)


def test_get_weight_version(server: Server) -> None:
    r = httpx.get(server.url + "/get_weight_version")
    assert r.status_code == 200
    assert r.json() == {"weight_version": httpx.get(server.url + "/get_model_info").json()[
        "weight_version"]}
