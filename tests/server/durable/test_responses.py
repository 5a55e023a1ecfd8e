"""The Responses API through a real server with the openai SDK."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from .conftest import WAIT, Holder


def test_create_retrieve_chain_input_items_delete(client: openai.OpenAI) -> None:
    r = client.responses.create(input="Hello there", max_output_tokens=4, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status in ("completed", "incomplete") and r.output_text
    assert r.usage is not None and r.usage.output_tokens <= 4
    if r.status == "incomplete":
        assert r.incomplete_details is not None
        assert r.incomplete_details.reason == "max_output_tokens"
    assert client.responses.retrieve(r.id).output_text == r.output_text
    items = [{"role": "user", "content": [{"type": "input_text", "text": "And then?"}]}]
    r2 = client.responses.create(input=items, previous_response_id=r.id,  # type: ignore[arg-type]
                                 instructions="Answer briefly.", max_output_tokens=4)  # fmt: skip
    assert r2.previous_response_id == r.id and r2.instructions == "Answer briefly."
    # The chain (first input + first output + this input) is in the prompt.
    assert r2.usage is not None and r.usage is not None
    assert r2.usage.input_tokens > r.usage.input_tokens
    listed = client.responses.input_items.list(r2.id)
    assert [i.type for i in listed.data] == ["message"]
    assert listed.data[0].content[0].text == "And then?"  # type: ignore[union-attr]
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


def test_stream_events(client: openai.OpenAI) -> None:
    events = list(client.responses.create(input="Count: one, two", max_output_tokens=6,
                                          stream=True))  # fmt: skip
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == deltas
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert client.responses.retrieve(final.id).output_text == deltas


def test_store_false_and_background(client: openai.OpenAI) -> None:
    r = client.responses.create(input="hi", max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    bg = client.responses.create(input="hi", max_output_tokens=4, background=True)
    assert bg.status == "queued" and bg.background
    deadline = time.monotonic() + WAIT
    while (got := client.responses.retrieve(bg.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert got.status in ("completed", "incomplete") and got.output_text
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(bg.id)  # already finished
    long = client.responses.create(input="Write a long story.", max_output_tokens=512,
                                   background=True)  # fmt: skip
    cancelled = client.responses.cancel(long.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(long.id).status == "cancelled"


def test_bad_input(client: openai.OpenAI, holder: Holder) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(input="hi", tools=[{"type": "function", "name": "f",
                                "parameters": {}, "strict": False}])  # fmt: skip
    assert e.value.body["param"] == "tools"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(input="hi", previous_response_id="resp_missing")
    r = client.responses.create(input="hi", max_output_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(r.id)  # not a background response
    for bad in ({"input": ""} | {"input": []}, {"input": "x", "max_output_tokens": 0},
                {"input": [{"role": "robot", "content": "x"}]},
                {"input": [{"type": "function_call_output", "output": "x"}]},
                {"input": "x", "background": True, "store": False}, {"input": 5}, {}):
        resp = httpx.post(holder.server.url + "/v1/responses", json=bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["error"]["type"] == "invalid_request_error"
    for path in ("/v1/responses/resp_missing", "/v1/responses/resp_missing/input_items"):
        assert httpx.get(holder.server.url + path).status_code == 404
    assert httpx.post(holder.server.url + "/v1/responses/resp_missing/cancel").status_code == 404


def test_text_format_constrains_the_output(client: openai.OpenAI) -> None:
    """text.format is the Responses API's response_format (it was accepted and ignored)."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
              "additionalProperties": False}  # fmt: skip
    r = client.responses.create(
        input="Give a number.", max_output_tokens=40, temperature=0,
        text={"format": {"type": "json_schema", "name": "num", "schema": schema,
                         "strict": True}},
    )  # fmt: skip
    assert r.status == "completed", r.output_text
    value = json.loads(r.output_text)
    assert set(value) == {"a"} and isinstance(value["a"], int)
    assert r.text is not None and r.text.format.type == "json_schema"
    r = client.responses.create(input="Give JSON.", max_output_tokens=40, temperature=0,
                                text={"format": {"type": "json_object"}})  # fmt: skip
    assert r.output_text.startswith("{")  # a JSON object (it may not close in 40 tokens)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(input="x", max_output_tokens=4,
                                text={"format": {"type": "json_schema", "name": "x"}})  # fmt: skip
    assert e.value.status_code == 400 and "text.format" in str(e.value)
