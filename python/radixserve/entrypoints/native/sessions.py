"""POST /open_session, /close_session (SGLang) and /extend (the seed's conversation extension).

Sessions and conversations live in the scheduler's memory (engine/session.py): a restart
forgets them, /flush_cache refuses while a session is open and otherwise forgets every
conversation too.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Optional

import msgspec
from litestar import Request, Response, post

from radixserve.engine.io_struct import EngineError, GenerateOutput, GenerateRequest
from radixserve.engine.session_protocol import SessionParams
from radixserve.entrypoints.openapi import with_body
from radixserve.entrypoints.serving_common import encode
from radixserve.entrypoints.state import decode, get_state, json_response, unless_disconnected
from radixserve.models.tokenizer import added_bos, encode_text


class OpenSessionReqInput(msgspec.Struct, kw_only=True):
    capacity_of_str_len: int  # tokens (prompt + output) any request of the session may reach
    session_id: Optional[str] = None


class CloseSessionReqInput(msgspec.Struct, kw_only=True):
    session_id: str


class ExtendReqInput(msgspec.Struct, kw_only=True):
    rid: str  # the conversation: the rid of its first request
    text: Optional[str] = None
    input_ids: Optional[list[int]] = None
    sampling_params: Optional[dict[str, Any]] = None


def new_tokens(tokenizer: Any, text: str) -> list[int]:
    """The tokens a continuation adds: no added BOS in the middle of a conversation."""
    ids = encode_text(tokenizer, text)
    bos = added_bos(tokenizer)
    return ids[1:] if len(ids) > 1 and bos is not None and ids[0] == bos else ids


def seed_meta(out: GenerateOutput, elapsed: float) -> dict[str, Any]:
    """The seed's meta: SGLang's counts under the seed's names, plus cached_tokens."""
    return {
        "id": out.rid,
        "finish_reason": out.finish_reason.type if out.finish_reason else None,
        "input_tokens": out.prompt_tokens,
        "output_tokens": out.completion_tokens,
        "completion_time_ms": round(elapsed * 1000.0, 3),
        "radix_cache_hit": out.cached_tokens > 0,
        "cached_tokens": out.cached_tokens,
    }


@post("/open_session", status_code=200, operation_class=with_body(OpenSessionReqInput))
async def open_session(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Answers the session id as a JSON string, as SGLang does."""
    req = decode(await request.body(), OpenSessionReqInput)
    if req.capacity_of_str_len < 1:
        raise EngineError("capacity_of_str_len must be at least 1.", 400, "capacity_of_str_len")
    if req.session_id is not None and not req.session_id:
        raise EngineError("session_id must not be empty.", 400, "session_id")
    status, result = await get_state(request).tm.session_control(
        "open", req.session_id, req.capacity_of_str_len
    )
    if status != 200:
        raise EngineError(str(result), status, "session_id")
    return json_response(encode(result))


@post("/close_session", status_code=200, operation_class=with_body(CloseSessionReqInput))
async def close_session(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Unlocks the session's KV (evictable from now on); an unknown id is a 404."""
    req = decode(await request.body(), CloseSessionReqInput)
    status, result = await get_state(request).tm.session_control("close", req.session_id)
    if status != 200:
        raise EngineError(str(result), status, "session_id")
    return json_response(b"", 200)


@post("/extend", status_code=200, operation_class=with_body(ExtendReqInput))
async def extend(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), ExtendReqInput)
    state = get_state(request)
    serving = state.generate
    if not req.rid:
        raise EngineError("rid must name the conversation to extend.", 400, "rid")
    if (req.text is None) == (req.input_ids is None):
        raise EngineError("Exactly one of text and input_ids must be given.", 400, "text")
    if req.text is not None:
        ids = new_tokens(state.tm.tokenizer, req.text)
        if not ids:
            raise EngineError("text must not be empty.", 400, "text")
    else:
        ids = list(req.input_ids or [])
        if not ids:
            raise EngineError("input_ids must not be empty.", 400, "input_ids")
    params = serving._params(req.sampling_params)  # n = 1 and the length: the engine checks
    greq = GenerateRequest(rid=f"extend-{uuid.uuid4().hex}", input_ids=ids,
                           sampling_params=params,
                           session_params=SessionParams(rid=req.rid))  # fmt: skip
    start = time.perf_counter()
    out = (await unless_disconnected(request, serving.collect([greq])))[0]
    meta = seed_meta(out, time.perf_counter() - start)
    # input_tokens: what this turn added; prompt_tokens: the whole prompt the model read.
    meta.update(rid=req.rid, input_tokens=len(ids), prompt_tokens=out.prompt_tokens,
                context_length=out.prompt_tokens + out.completion_tokens)  # fmt: skip
    echoed = req.text if req.text is not None else state.tm.tokenizer.decode(ids)
    return json_response(encode({"text": echoed + out.text, "meta": meta}))


HANDLERS = [open_session, close_session, extend]
