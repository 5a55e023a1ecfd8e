"""Grammar-constrained decoding through the real server: json_schema, regex, ebnf, json_object."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema
import pytest
from tests.server.conftest import Server

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}
NESTED = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6},
                 "minItems": 1, "maxItems": 3},
        "point": {"type": "object", "properties": {"x": {"type": "integer", "maximum": 999},
                                                   "y": {"type": "boolean"}},
                  "required": ["x", "y"], "additionalProperties": False},
    },
    "required": ["city", "tags", "point"],
    "additionalProperties": False,
}  # fmt: skip
FLAGS = {
    "type": "array",
    "items": {"enum": ["red", "green", "blue"]},
    "minItems": 2,
    "maxItems": 4,
}


def chat(server: Server, content: str, **extra: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 120, **extra}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("schema", [PERSON, NESTED, FLAGS], ids=["enum", "nested", "array"])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_json_schema_outputs_validate(grammar_server: Server, schema: dict[str, Any],
                                      temperature: float) -> None:  # fmt: skip
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    out = chat(grammar_server, "Describe something as JSON.", response_format=fmt,
               temperature=temperature, seed=7, n=2)  # fmt: skip
    for choice in out["choices"]:
        assert choice["finish_reason"] == "stop", choice
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)


def test_sglang_json_schema_param_on_generate(grammar_server: Server) -> None:
    body = {"text": "Person:", "sampling_params": {"json_schema": json.dumps(PERSON),
                                                   "max_new_tokens": 100, "temperature": 0}}
    r = httpx.post(grammar_server.url + "/generate", json=body, timeout=300)
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["text"]), PERSON)


def test_json_object(grammar_server: Server) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 8}},
              "required": ["a"], "additionalProperties": False}  # fmt: skip
    # json_object alone may legally never close on a tiny model; a stop bounds it here and
    # the bounded variant below must parse.
    out = chat(grammar_server, "Give JSON.", response_format={"type": "json_object"},
               temperature=0, max_tokens=60)  # fmt: skip
    text = out["choices"][0]["message"]["content"]
    assert text.startswith("{")
    if out["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(text), dict)
    fmt = {"type": "json_schema", "json_schema": {"name": "o", "schema": schema}}
    out = chat(grammar_server, "Give JSON.", response_format=fmt, temperature=0)
    assert isinstance(json.loads(out["choices"][0]["message"]["content"]), dict)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_regex_fullmatch(grammar_server: Server, temperature: float) -> None:
    pattern = r"(yes|no), [0-9]{2,4} (cats|dogs)\."
    out = chat(grammar_server, "Answer.", regex=pattern, temperature=temperature, n=3, seed=1)
    for choice in out["choices"]:
        assert re.fullmatch(pattern, choice["message"]["content"]), choice


def test_ebnf_parses(grammar_server: Server) -> None:
    grammar = 'root ::= expr "=" num\nexpr ::= num (("+" | "-") num){0,3}\nnum ::= [1-9] [0-9]?'
    body = {"text": "Arithmetic:", "sampling_params": {"ebnf": grammar, "max_new_tokens": 40,
                                                       "temperature": 0.8, "n": 2}}
    r = httpx.post(grammar_server.url + "/generate", json=body, timeout=300)
    assert r.status_code == 200, r.text
    for item in r.json():
        assert re.fullmatch(r"[1-9][0-9]?([+-][1-9][0-9]?){0,3}=[1-9][0-9]?", item["text"]), item


def test_streaming_json_schema(grammar_server: Server) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    body = {"messages": [{"role": "user", "content": "JSON please"}], "max_tokens": 100,
            "response_format": fmt, "stream": True, "temperature": 0}  # fmt: skip
    text = ""
    with httpx.stream("POST", grammar_server.url + "/v1/chat/completions", json=body,
                      timeout=300) as r:  # fmt: skip
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for c in json.loads(line[6:])["choices"]:
                    text += c["delta"].get("content") or ""
    jsonschema.validate(json.loads(text), PERSON)
    full = chat(grammar_server, "JSON please", response_format=fmt, temperature=0, max_tokens=100)
    assert full["choices"][0]["message"]["content"] == text


def test_logprobs_and_stop_with_grammar(grammar_server: Server) -> None:
    out = chat(grammar_server, "Answer.", regex=r"(ab|cd)+x", temperature=0, max_tokens=30,
               logprobs=True, top_logprobs=2, stop=["cd"])  # fmt: skip
    choice = out["choices"][0]
    assert choice["logprobs"]["content"]
    assert re.fullmatch(r"(ab|cd)*(ab|cd|x)?x?", choice["message"]["content"] or "")


def test_free_requests_unchanged_by_constrained_neighbours(grammar_server: Server) -> None:
    """A batch mixing constrained and free requests gives the free ones their solo tokens.

    The free requests decode greedily: a step's batch size picks the quantized linear's kernel
    (integer mat-vec up to a few rows, tiled GEMM beyond), so logits move in the last bits with
    the batch's make-up, and a seeded draw at temperature > 0 can land on the other side of a
    boundary (seen under load). Greedy tokens only move on a near tie; a leaked mask moves them."""
    import concurrent.futures

    prompt = {"text": "The capital of France is", "sampling_params": {
        "max_new_tokens": 16, "temperature": 0}}  # fmt: skip
    url = grammar_server.url + "/generate"
    alone = httpx.post(url, json=prompt, timeout=300).json()["output_ids"]
    constrained = {"text": "JSON:", "sampling_params": {
        "json_schema": json.dumps(PERSON), "max_new_tokens": 60, "temperature": 0.8}}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(httpx.post, url, json=constrained, timeout=600) for _ in range(2)]
        futs += [pool.submit(httpx.post, url, json=prompt, timeout=600) for _ in range(2)]
        results = [f.result() for f in futs]
    assert all(r.status_code == 200 for r in results)
    for r in results[2:]:
        assert r.json()["output_ids"] == alone
    for r in results[:2]:
        jsonschema.validate(json.loads(r.json()["text"]), PERSON)


@pytest.mark.parametrize("field,value", [
    ("json_schema", '{"type": "nonsense"}'),
    ("json_schema", "{not json"),
    ("regex", "a(b"),
    ("ebnf", "root ::= undefined_rule"),
])  # fmt: skip
def test_bad_constraints_are_400(grammar_server: Server, field: str, value: str) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], field: value}
    r = httpx.post(grammar_server.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field
    r = httpx.post(grammar_server.url + "/generate",
                   json={"text": "x", "sampling_params": {field: value}}, timeout=60)  # fmt: skip
    assert r.status_code == 400, r.text
    bad_fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 3}}}
    r = httpx.post(grammar_server.url + "/v1/chat/completions", timeout=60,
                   json={"messages": [{"role": "user", "content": "x"}],
                         "response_format": bad_fmt})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format", r.text
    assert httpx.get(grammar_server.url + "/health", timeout=30).status_code == 200


LONG_KEYS = {
    "type": "object",
    "properties": {
        "customer_account_identifier": {"type": "integer", "minimum": 0, "maximum": 9999},
        "preferred_contact_channel": {"enum": ["electronic_mail", "telephone_call"]},
        "has_outstanding_support_tickets": {"type": "boolean"},
    },
    "required": ["customer_account_identifier", "preferred_contact_channel",
                 "has_outstanding_support_tickets"],
    "additionalProperties": False,
}  # fmt: skip


def _jumped(server: Server) -> int:
    return int(httpx.get(server.url + "/get_load", timeout=30).json()["num_jump_forward_tokens"])


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_jump_forward_validates_and_streams_alike(grammar_server: Server,
                                                  temperature: float) -> None:  # fmt: skip
    """Jump-forward is on by default: forced key names arrive several tokens per step, the
    output validates, and the stream reassembles to the non-streamed text and token ids."""
    params = {"json_schema": json.dumps(LONG_KEYS), "max_new_tokens": 120,
              "temperature": temperature, "sampling_seed": 5}  # fmt: skip
    body = {"text": "Customer record:", "sampling_params": params}
    before = _jumped(grammar_server)
    r = httpx.post(grammar_server.url + "/generate", json=body, timeout=300)
    assert r.status_code == 200, r.text
    full = r.json()
    jsonschema.validate(json.loads(full["text"]), LONG_KEYS)
    assert full["meta_info"]["finish_reason"]["type"] == "stop"
    assert _jumped(grammar_server) > before
    chunks = []
    with httpx.stream("POST", grammar_server.url + "/generate", json={**body, "stream": True},
                      timeout=300) as s:  # fmt: skip
        for line in s.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    assert chunks[-1]["text"] == full["text"]
    assert chunks[-1]["output_ids"] == full["output_ids"]
    counts = [c["meta_info"]["completion_tokens"] for c in chunks]
    assert max(b - a for a, b in zip(counts, counts[1:], strict=False)) > 1  # a jump in one chunk


@pytest.mark.slow
def test_jump_forward_off_still_validates(tmp_path: Any) -> None:
    from tests.server.spawn import spawn_server

    with spawn_server(tmp_path, ["--no-grammar-jump-forward"]) as srv:
        body = {"text": "Customer record:", "sampling_params": {
            "json_schema": json.dumps(LONG_KEYS), "max_new_tokens": 120, "temperature": 0}}
        r = httpx.post(srv.url + "/generate", json=body, timeout=300)
        assert r.status_code == 200, r.text
        jsonschema.validate(json.loads(r.json()["text"]), LONG_KEYS)
        assert _jumped(srv) == 0
