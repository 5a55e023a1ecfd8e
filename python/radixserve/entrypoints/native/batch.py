"""POST /batch (the seed's batch endpoint): several generation requests in one call.

Every entry is its own engine request and all run concurrently through the scheduler (which
batches them). An entry that is invalid or fails gets its own `{"error": ...}` entry; the call
itself fails only when the body is not a batch (400) or holds too many entries (413).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

import msgspec
from litestar import Request, Response, post

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.native.generate import GenerateReqInput, ServingGenerate
from radixserve.entrypoints.native.sessions import seed_meta
from radixserve.entrypoints.openapi import with_body
from radixserve.entrypoints.serving_common import encode, error_body
from radixserve.entrypoints.state import decode, get_state, json_response, unless_disconnected

MAX_BATCH_REQUESTS = 256  # more is a 413: one call must not flood the waiting queue


class BatchReqInput(msgspec.Struct, kw_only=True):
    requests: list[Any]  # entries are checked one by one, so one bad entry fails alone


class BatchEntry(msgspec.Struct, kw_only=True):
    text: Optional[str] = None
    input_ids: Optional[list[int]] = None
    sampling_params: Optional[dict[str, Any]] = None
    rid: Optional[str] = None


def _entry_error(e: EngineError) -> dict[str, Any]:
    return msgspec.to_builtins(error_body(e.message, e.status, e.param))  # type: ignore[no-any-return]


async def run_entry(serving: ServingGenerate, tokenizer: Any, raw: Any) -> dict[str, Any]:
    """One entry's `{text, meta}` (the seed echoes the prompt before the completion)."""
    start = time.perf_counter()
    try:
        try:
            entry = msgspec.convert(raw, BatchEntry)
        except msgspec.ValidationError as e:
            raise EngineError(f"Invalid batch entry: {e}", 400) from None
        if entry.input_ids is not None and not entry.input_ids:
            raise EngineError("input_ids must be a non-empty list of token ids.", 400,
                              "input_ids")  # fmt: skip
        greq = GenerateReqInput(text=entry.text, input_ids=entry.input_ids,
                                sampling_params=entry.sampling_params, rid=entry.rid)  # fmt: skip
        reqs, _ = serving.build(greq)
        if serving.num_choices(reqs) != 1:
            raise EngineError("n must be 1 in a /batch entry.", 400, "n")
        out = (await serving.collect(reqs))[0]
    except EngineError as e:
        return _entry_error(e)
    except ValueError as e:  # a bad value the checks above did not name
        return _entry_error(EngineError(str(e), 400))
    prompt = entry.text if entry.text is not None else tokenizer.decode(entry.input_ids or [])
    return {"text": prompt + out.text, "meta": seed_meta(out, time.perf_counter() - start)}


@post("/batch", status_code=200, operation_class=with_body(BatchReqInput))
async def batch(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), BatchReqInput)
    if not req.requests:
        raise EngineError("requests must hold at least one request.", 400, "requests")
    if len(req.requests) > MAX_BATCH_REQUESTS:
        raise EngineError(f"A batch holds at most {MAX_BATCH_REQUESTS} requests, got "
                          f"{len(req.requests)}.", 413, "requests")  # fmt: skip
    state = get_state(request)
    start = time.perf_counter()
    work = asyncio.gather(*(run_entry(state.generate, state.tm.tokenizer, raw)
                            for raw in req.requests))  # fmt: skip
    responses = await unless_disconnected(request, work)
    good = [r["meta"] for r in responses if "meta" in r]
    rates = [m["cached_tokens"] / m["input_tokens"] for m in good if m["input_tokens"]]
    batch_meta = {
        "total_requests": len(responses),
        "successful": len(good),
        "total_time_ms": round((time.perf_counter() - start) * 1000.0, 3),
        "avg_radix_cache_hit_rate": sum(rates) / len(rates) if rates else 0.0,
    }
    return json_response(encode({"responses": responses, "batch_meta": batch_meta}))


HANDLERS = [batch]
