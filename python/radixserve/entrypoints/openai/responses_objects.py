"""The Responses API's request and the JSON objects it answers with (response, items, events).

Input items become chat messages for the model's template; the items themselves (with ids)
are kept for GET /v1/responses/{id}/input_items.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Union

import msgspec

from radixserve.engine.io_struct import EngineError, GenerateOutput
from radixserve.entrypoints.openai.protocol import ResponseFormat
from radixserve.entrypoints.serving_common import new_id

_ROLES = ("user", "system", "developer", "assistant")


class CreateResponseRequest(msgspec.Struct, kw_only=True):
    input: Union[str, list[dict[str, Any]]]
    model: Optional[str] = None
    instructions: Optional[str] = None
    max_output_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    store: bool = True
    previous_response_id: Optional[str] = None
    background: bool = False
    stream: bool = False
    tools: Optional[list[Any]] = None
    tool_choice: Optional[Any] = None
    metadata: Optional[dict[str, str]] = None
    user: Optional[str] = None
    parallel_tool_calls: Optional[bool] = None
    truncation: Optional[str] = None
    text: Optional[dict[str, Any]] = None  # {"format": text | json_object | json_schema}


def text_format(req: CreateResponseRequest) -> dict[str, Any]:
    """The request's text.format, checked ({"type": "text"} when not given)."""
    fmt = (req.text or {}).get("format") or {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise EngineError("text.format.type must be text, json_object or json_schema.", 400,
                          "text")  # fmt: skip
    if fmt["type"] == "json_schema" and not isinstance(fmt.get("schema"), dict):
        raise EngineError("text.format.schema must be a JSON schema object.", 400, "text")
    return fmt


def response_format(fmt: dict[str, Any]) -> Optional[ResponseFormat]:
    """text.format as chat's response_format: the Responses API puts json_schema's name,
    schema and strict in the format itself, chat nests them under json_schema."""
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return ResponseFormat(type="json_object")
    schema: dict[str, Any] = {k: fmt[k] for k in ("name", "schema", "strict") if k in fmt}
    return ResponseFormat(type="json_schema", json_schema=schema)


def _text_of(content: Any, k: int) -> str:
    """Item content (a string or input_text/output_text parts) as plain text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise EngineError(f"input[{k}].content must be a string or a list of parts.", 400,
                          "input")  # fmt: skip
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text") or not isinstance(part.get("text"),
                                                                                str):  # fmt: skip
            raise EngineError(f"input[{k}]: content parts of type {kind!r} are not supported by "
                              "this text-only model.", 400, "input")  # fmt: skip
        texts.append(part["text"])
    return "\n".join(texts)


def input_items(raw: Union[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The request's input as stored message items: {id, type, role, content: [parts]}."""
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not raw:
        raise EngineError("input must not be empty.", 400, "input")
    items = []
    for k, item in enumerate(raw):
        kind = item.get("type", "message")
        if kind != "message":
            raise EngineError(f"input[{k}] has type {kind!r}; only message items are supported "
                              "(no tools yet).", 400, "input")  # fmt: skip
        role = item.get("role")
        if role not in _ROLES:
            raise EngineError(f"input[{k}].role must be one of {', '.join(_ROLES)}, got "
                              f"{role!r}.", 400, "input")  # fmt: skip
        text = _text_of(item.get("content"), k)
        part = "output_text" if role == "assistant" else "input_text"
        items.append({"id": new_id("msg_"), "type": "message", "role": role, "status": "completed",
                      "content": [{"type": part, "text": text}]})  # fmt: skip
    return items


def item_messages(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Stored message items (input or output) -> chat messages."""
    return [{"role": "system" if it["role"] == "developer" else it["role"],
             "content": "\n".join(p["text"] for p in it["content"])} for it in items]  # fmt: skip


def output_message(text: str, status: str = "completed", item_id: str = "") -> dict[str, Any]:
    return {
        "id": item_id or new_id("msg_"), "type": "message", "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }  # fmt: skip


def usage(out: Optional[GenerateOutput]) -> Optional[dict[str, Any]]:
    if out is None:
        return None
    return {
        "input_tokens": out.prompt_tokens,
        "input_tokens_details": {"cached_tokens": out.cached_tokens},
        "output_tokens": out.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": out.prompt_tokens + out.completion_tokens,
    }


def response_object(resp_id: str, req: CreateResponseRequest, model: str, status: str
                    ) -> dict[str, Any]:  # fmt: skip
    """A response with no output yet; finish() fills output, usage and the final status."""
    return {
        "id": resp_id, "object": "response", "created_at": int(time.time()), "status": status,
        "background": req.background, "error": None, "incomplete_details": None,
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
        "model": model, "output": [], "parallel_tool_calls": True,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": None, "summary": None}, "store": req.store,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": {"format": text_format(req)}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0 if req.top_p is None else req.top_p, "truncation": "disabled",
        "usage": None, "user": req.user, "metadata": req.metadata or {},
    }  # fmt: skip


def finish(resp: dict[str, Any], out: GenerateOutput, item_id: str = "") -> dict[str, Any]:
    incomplete = out.finish_reason is not None and out.finish_reason.type == "length"
    status = "incomplete" if incomplete else "completed"
    return {
        **resp, "status": status,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": [output_message(out.text, status, item_id)], "usage": usage(out),
    }  # fmt: skip


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record without its private fields (conversation, input items)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}
