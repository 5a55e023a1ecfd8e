"""Request fields and routes that SGLang and vLLM clients send, through a real server: each
test here once failed against radixserve (an ignored field, a missing route, a rejected value)."""

from __future__ import annotations

import json

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


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip


@pytest.mark.parametrize(("parser", "text", "normal"), [
    ("hermes", 'Sure.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
               "</tool_call>", "Sure."),
    ("pythonic", "[get_weather(city='Paris')]", ""),
])  # fmt: skip
def test_parse_function_call(server: Server, parser: str, text: str, normal: str) -> None:
    body = {"text": text, "tool_call_parser": parser, "tools": TOOLS}
    r = httpx.post(server.url + "/parse_function_call", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["normal_text"] == normal and len(out["calls"]) == 1
    call = out["calls"][0]
    assert call["tool_index"] == 0 and call["name"] == "get_weather"
    assert json.loads(call["parameters"]) == {"city": "Paris"}
    unknown = text.replace("get_weather", "other")  # a function not in tools is dropped
    r = httpx.post(server.url + "/parse_function_call", json={**body, "text": unknown})
    assert r.status_code == 200 and r.json()["calls"] == []


@pytest.mark.parametrize(("parser", "text"), [
    ("qwen3", "<think>I should greet.</think>Hello!"),
    ("deepseek-r1", "I should greet.</think>\n\nHello!"),  # its template opened <think>
])  # fmt: skip
def test_separate_reasoning(server: Server, parser: str, text: str) -> None:
    r = httpx.post(server.url + "/separate_reasoning",
                   json={"text": text, "reasoning_parser": parser})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"text": "Hello!", "reasoning_text": "I should greet."}


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/parse_function_call", {"text": "x", "tool_call_parser": "nope", "tools": TOOLS},
     "tool_call_parser"),
    ("/parse_function_call", {"text": "x", "tool_call_parser": "hermes",
                              "tools": [{"type": "function"}]}, "tools"),
    ("/separate_reasoning", {"text": "x"}, "reasoning_parser"),  # none given, no server flag
    ("/separate_reasoning", {"text": "x", "reasoning_parser": "nope"}, "reasoning_parser"),
])  # fmt: skip
def test_parsing_helpers_bad_input(server: Server, path: str, body: dict[str, object],
                                   param: str) -> None:  # fmt: skip
    r = httpx.post(server.url + path, json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


NULLABLE = {"n": None, "frequency_penalty": None, "presence_penalty": None, "logprobs": None,
            "stream": None, "ignore_eos": None, "min_tokens": None}  # fmt: skip


def test_null_means_default(server: Server) -> None:
    """OpenAI marks these fields nullable; vLLM and non-Python clients send explicit nulls."""
    chat = {"messages": MSG, "max_tokens": 2, **NULLABLE}
    r = httpx.post(server.url + "/v1/chat/completions", json=chat, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["choices"]) == 1 and out["choices"][0]["logprobs"] is None
    assert out["usage"]["completion_tokens"] <= 2
    text = {"prompt": "The sky is", "max_tokens": 2, "echo": None, **NULLABLE}
    r = httpx.post(server.url + "/v1/completions", json=text, timeout=60)
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 1 and not r.json()["choices"][0]["text"].startswith("The")
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": None, "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


@pytest.mark.parametrize("path", ["/classify", "/v1/classify"])
def test_classify_on_generative_server_names_classifiers(server: Server, path: str) -> None:
    r = httpx.post(server.url + path, json={"text": "hello"})
    assert r.status_code == 400
    assert "sequence-classification" in r.json()["error"]["message"]  # not "embedding model"


@pytest.mark.parametrize(("path", "body"), [
    ("/generate", {"text": "Hi", "sampling_params": {"max_new_tokens": 2}}),
    ("/v1/chat/completions", {"messages": MSG, "max_tokens": 2}),
    ("/v1/completions", {"prompt": "Hi", "max_tokens": 2}),
])  # fmt: skip
@pytest.mark.parametrize(("field", "value"), [
    ("lora_path", "my-adapter"), ("return_hidden_states", True),
    ("image_data", "https://example.com/cat.png"),
])  # fmt: skip
def test_unserved_features_are_refused(server: Server, path: str, body: dict[str, object],
                                       field: str, value: object) -> None:  # fmt: skip
    """SGLang refuses these unless a flag enables them; a silent answer would lack them."""
    r = httpx.post(server.url + path, json={**body, field: value}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == field
    r = httpx.post(server.url + path, json={**body, field: None}, timeout=60)
    assert r.status_code == 200, r.text


def _step_errors(server: Server) -> int:
    return int(httpx.get(server.url + "/get_load").json()["num_step_errors"])


def test_top_logprobs_num_beyond_vocabulary_is_400(server: Server) -> None:
    """It reached the sampler and failed the whole batch (a 500 for every co-batched request)."""
    errors = _step_errors(server)
    body = {"text": "Hi", "return_logprob": True, "top_logprobs_num": 10**6,
            "sampling_params": {"max_new_tokens": 1}}  # fmt: skip
    r = httpx.post(server.url + "/generate", json=body, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_logprobs_num"
    assert _step_errors(server) == errors


HUGE = 2**70  # valid JSON, more than msgpack's 64-bit integers


@pytest.mark.parametrize(("path", "body"), [
    ("/generate", {"text": "Hi", "sampling_params": {"max_new_tokens": 2, "top_k": HUGE}}),
    ("/generate", {"text": "Hi", "sampling_params": {"max_new_tokens": 2,
                                                     "stream_interval": HUGE}}),
    ("/generate", {"text": "Hi", "return_logprob": True, "logprob_start_len": HUGE,
                   "sampling_params": {"max_new_tokens": 2}}),
    ("/v1/chat/completions", {"messages": MSG, "max_tokens": 2, "seed": HUGE}),
    ("/open_session", {"capacity_of_str_len": HUGE}),
])  # fmt: skip
def test_integers_beyond_64_bits_are_400(server: Server, path: str,
                                         body: dict[str, object]) -> None:  # fmt: skip
    r = httpx.post(server.url + path, json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("seed", [2**63 - 1, 2**64 - 1, -(2**63)])
def test_edge_seeds_with_n_samples(server: Server, seed: int) -> None:
    """seed + i for sample i overflowed the scheduler's int64 and failed the batch."""
    errors = _step_errors(server)
    body = {"text": "Hi", "sampling_params": {"max_new_tokens": 2, "n": 2,
                                              "sampling_seed": seed}}  # fmt: skip
    r = httpx.post(server.url + "/generate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    again = httpx.post(server.url + "/generate", json=body, timeout=60).json()
    assert [o["output_ids"] for o in again] == [o["output_ids"] for o in r.json()]  # seeded
    assert _step_errors(server) == errors


@pytest.mark.parametrize("path", ["/health", "/health_generate"])
def test_health_answers_head(server: Server, path: str) -> None:
    """Monitors and load balancers probe with HEAD; SGLang's GET routes answer it."""
    r = httpx.head(server.url + path, timeout=60)
    assert r.status_code == 200 and r.content == b""
