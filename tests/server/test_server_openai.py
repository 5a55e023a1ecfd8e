"""The OpenAI-compatible API of a real server, through the official `openai` client."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

from .conftest import Server

MSG = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def model(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def test_models(client: openai.OpenAI, model: str) -> None:
    card = client.models.retrieve(model)
    assert card.id == model and card.object == "model"
    assert card.model_extra is not None and card.model_extra["max_model_len"] > 0


def test_chat_stream_equals_non_stream_greedy(client: openai.OpenAI, model: str) -> None:
    full = client.chat.completions.create(model=model, messages=MSG, max_tokens=12,
                                          temperature=0)  # fmt: skip
    text = full.choices[0].message.content
    assert isinstance(text, str) and text
    assert full.choices[0].finish_reason in ("stop", "length")
    u = full.usage
    assert u is not None and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens >= 0
    chunks = list(client.chat.completions.create(
        model=model, messages=MSG, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == u.completion_tokens
    # The second identical prompt is served from the prefix cache.
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0  # type: ignore[union-attr]


def test_chat_n2_logprobs(client: openai.OpenAI, model: str) -> None:
    r = client.chat.completions.create(model=model, messages=MSG, max_tokens=6, n=2,
                                       temperature=0, logprobs=True, top_logprobs=3)  # fmt: skip
    assert [c.index for c in r.choices] == [0, 1]
    for c in r.choices:
        lp = c.logprobs
        assert lp is not None and lp.content is not None
        assert len(lp.content) == r.usage.completion_tokens // 2  # type: ignore[union-attr]
        for tok in lp.content:
            assert tok.logprob <= 0 and len(tok.top_logprobs) == 3
            tops = [t.logprob for t in tok.top_logprobs]
            assert tops == sorted(tops, reverse=True)
            assert math.isclose(tok.logprob, tops[0], abs_tol=1e-4)  # greedy picks the top one


def test_chat_stop_string(client: openai.OpenAI, model: str) -> None:
    base = client.chat.completions.create(model=model, messages=MSG, max_tokens=16,
                                          temperature=0).choices[0].message.content or ""  # fmt: skip
    words = base.split()
    if len(words) < 3:
        pytest.skip(f"output too short to pick a stop word: {base!r}")
    stop = words[2]
    r = client.chat.completions.create(model=model, messages=MSG, max_tokens=16, temperature=0,
                                       stop=[stop])  # fmt: skip
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == base[: base.index(stop)]


def test_completions(client: openai.OpenAI, model: str, server: Server) -> None:
    r = client.completions.create(model=model, prompt=["The sky is", "One, two,"], max_tokens=4,
                                  temperature=0, n=2)  # fmt: skip
    assert len(r.choices) == 4 and r.choices[0].text == r.choices[1].text
    ids = httpx.post(server.url + "/tokenize", json={"prompt": "The sky is"}).json()["tokens"]
    r2 = client.completions.create(model=model, prompt=ids, max_tokens=4, temperature=0,
                                   echo=True, logprobs=2)  # fmt: skip
    assert r2.choices[0].text.endswith(r.choices[0].text)
    lp = r2.choices[0].logprobs
    assert lp is not None and lp.token_logprobs and lp.top_logprobs and lp.text_offset
    # echo + logprobs: the prompt tokens first (the first one without a logprob), then 4 more.
    assert len(lp.token_logprobs) == len(ids) + 4 and lp.token_logprobs[0] is None
    assert all(v is not None and v <= 0.0 for v in lp.token_logprobs[1:])
    assert lp.top_logprobs[0] is None and all(len(t) <= 2 for t in lp.top_logprobs[1:] if t)
    assert "".join(lp.tokens[: len(ids)]) == r2.choices[0].text[: -len(r.choices[0].text)]
    chunks = list(client.completions.create(model=model, prompt="The sky is", max_tokens=4,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_openai_errors(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model, messages=MSG, top_p=3.0)
    assert e.value.status_code == 400 and "top_p" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=model, prompt="x", suffix="y")
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model, prompt=[1] * 20_000, max_tokens=1)
    assert "context" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
