"""Tool calling and reasoning separation through the real server (hermes + qwen3 parsers)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from tests.server.conftest import Server

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"tz": {"enum": ["UTC", "CET"]}},
    "required": ["tz"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time",
                                      "parameters": TIME}},
]  # fmt: skip
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def post(server: Server, **body: Any) -> httpx.Response:
    body.setdefault("max_tokens", 80)
    return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=300)


def stream(server: Server, **body: Any) -> list[dict[str, Any]]:
    body.update(stream=True)
    body.setdefault("max_tokens", 80)
    chunks = []
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=300) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    return chunks


def reassemble(chunks: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], str, str, str]:
    """(calls, content, reasoning, finish_reason) of choice 0 from the deltas."""
    names: list[str] = []
    args: list[str] = []
    content = reasoning = finish = ""
    for ch in chunks:
        for c in ch["choices"]:
            d = c["delta"]
            content += d.get("content") or ""
            reasoning += d.get("reasoning_content") or ""
            for tc in d.get("tool_calls") or []:
                if "name" in tc["function"]:
                    assert tc["index"] == len(names) and tc["id"].startswith("call_")
                    names.append(tc["function"]["name"])
                    args.append("")
                args[tc["index"]] += tc["function"].get("arguments", "")
            finish = c.get("finish_reason") or finish
    return list(zip(names, args, strict=True)), content, reasoning, finish


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_named_tool_choice_has_valid_arguments(grammar_server: Server, temperature: float) -> None:
    # One call per choice: with parallel calls a sampled array may run past max_tokens.
    r = post(grammar_server, messages=ASK, tools=TOOLS, temperature=temperature, n=2, seed=5,
             parallel_tool_calls=False,
             tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert r.status_code == 200, r.text
    for choice in r.json()["choices"]:
        assert choice["finish_reason"] == "tool_calls"
        calls = choice["message"]["tool_calls"]
        assert calls and all(c["function"]["name"] == "get_weather" for c in calls)
        for c in calls:
            jsonschema.validate(json.loads(c["function"]["arguments"]), WEATHER)


def test_required_tool_choice_one_call(grammar_server: Server) -> None:
    r = post(grammar_server, messages=ASK, tools=TOOLS, tool_choice="required",
             parallel_tool_calls=False, temperature=0.8, seed=11)  # fmt: skip
    assert r.status_code == 200, r.text
    (call,) = r.json()["choices"][0]["message"]["tool_calls"]
    name = call["function"]["name"]
    jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[name])


def test_streamed_tool_call_equals_non_streamed(grammar_server: Server) -> None:
    body = dict(messages=ASK, tools=TOOLS, temperature=0, parallel_tool_calls=False,
                tool_choice={"type": "function", "function": {"name": "get_weather"}})
    full = post(grammar_server, **body).json()["choices"][0]
    calls, content, _, finish = reassemble(stream(grammar_server, **body))
    expected = [(c["function"]["name"], c["function"]["arguments"])
                for c in full["message"]["tool_calls"]]  # fmt: skip
    assert calls == expected and finish == "tool_calls" and content == ""


def test_auto_parses_what_the_model_wrote(grammar_server: Server) -> None:
    # A regex makes the tiny model write a hermes call, so the auto path parses a real output.
    regex = (r'I will check\.<tool_call>\n\{"name": "get_weather", "arguments": '
             r'\{"city": "(Paris|Oslo)", "unit": "(c|f)"\}\}\n</tool_call>')
    body = dict(messages=ASK, tools=TOOLS, tool_choice="auto", regex=regex, temperature=0)
    choice = post(grammar_server, **body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I will check."
    (call,) = choice["message"]["tool_calls"]
    jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER)
    calls, content, _, finish = reassemble(stream(grammar_server, **body))
    assert calls == [("get_weather", call["function"]["arguments"])]
    assert content == "I will check." and finish == "tool_calls"


def test_history_with_tool_calls_and_results(grammar_server: Server) -> None:
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]  # fmt: skip
    r = post(grammar_server, messages=history, tools=TOOLS, max_tokens=8, temperature=0)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("body,param", [
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"parameters": WEATHER}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]},
     "tools"),
])  # fmt: skip
def test_bad_tool_requests_are_400(grammar_server: Server, body: dict[str, Any], param: str) -> None:
    r = post(grammar_server, messages=ASK, **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert httpx.get(grammar_server.url + "/health", timeout=30).status_code == 200


THINK = r"<think>[a-z ]{1,20}</think>[A-Za-z ]{1,20}"


def test_reasoning_is_separated(grammar_server: Server) -> None:
    body = dict(messages=ASK, regex=THINK, temperature=0, max_tokens=60)
    msg = post(grammar_server, **body).json()["choices"][0]["message"]
    assert msg["reasoning_content"] and "<think>" not in (msg["content"] or "")
    _, content, reasoning, _ = reassemble(stream(grammar_server, **body))
    assert (reasoning, content) == (msg["reasoning_content"], msg["content"])
    whole = post(grammar_server, separate_reasoning=False, **body).json()["choices"][0]["message"]
    assert whole["content"].startswith("<think>") and whole["reasoning_content"] is None
    off = post(grammar_server, chat_template_kwargs={"enable_thinking": False}, **body)
    assert off.json()["choices"][0]["message"]["reasoning_content"] is None
