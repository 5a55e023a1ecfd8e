"""The Batch API: create, retrieve, list, cancel; batch_runner.py does the running.

Each line runs through the online endpoint's own serving object (same validation, same
defaults); a body it rejects becomes that line's error response, never a failed batch.
"""

from __future__ import annotations

import re
import time
from typing import Any, Optional

import msgspec
from litestar import Request, Response, get, post

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.openai import protocol
from radixserve.entrypoints.openai.batch_runner import FINISHED, live_counts
from radixserve.entrypoints.openai.serving_files import get_file
from radixserve.entrypoints.openai.store_services import (
    get_services,
    list_page,
    not_found,
    page_args,
)
from radixserve.entrypoints.openapi import with_body
from radixserve.entrypoints.serving_common import encode, error_body, new_id
from radixserve.entrypoints.state import (
    ServerState,
    convert_request,
    decode,
    get_state,
    json_response,
)
from radixserve.store import StoreFullError

_WINDOW = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_METADATA = 16


class CreateBatchRequest(msgspec.Struct, kw_only=True):
    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: Optional[dict[str, str]] = None


def _embedding(state: ServerState) -> tuple[Any, Any]:
    """The embedding serving object and its request type, where this server has them."""
    handler = getattr(state, "embedding", None) or getattr(state, "embeddings", None)
    kind = getattr(protocol, "EmbeddingRequest", None)
    return (handler, kind) if handler is not None and kind is not None else (None, None)


def endpoints(state: ServerState) -> dict[str, tuple[Any, Any]]:
    """url -> (serving object, request type) of every endpoint a batch may target."""
    served = {
        "/v1/chat/completions": (state.chat, protocol.ChatCompletionRequest),
        "/v1/completions": (state.completions, protocol.CompletionRequest),
    }
    handler, kind = _embedding(state)
    if handler is not None:
        served["/v1/embeddings"] = (handler, kind)
    return served


def line_executor(state: ServerState) -> Any:
    async def execute(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
        serving, kind = endpoints(state)[url]
        try:
            if body.get("stream"):
                raise EngineError("stream is not supported in a batch.", 400, "stream")
            req = convert_request(body, kind)
            result = await serving.create(req)
            if not isinstance(result, bytes):
                raise EngineError("stream is not supported in a batch.", 400, "stream")
            return 200, result
        except EngineError as e:
            return e.status, encode(error_body(e.message, e.status, e.param))
        except ValueError as e:  # the same mapping as the online routes' handler
            return 400, encode(error_body(str(e), 400))

    return execute


def window_seconds(window: str) -> int:
    m = _WINDOW.match(window)
    if m is None or int(m.group(1)) < 1:
        raise EngineError(f"completion_window must look like '24h' (a number then s, m, h or "
                          f"d), got {window!r}.", 400, "completion_window")  # fmt: skip
    return int(m.group(1)) * _UNIT[m.group(2)]


@post("/v1/batches", status_code=200, operation_class=with_body(CreateBatchRequest))
async def create_batch(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = get_services(request)
    req = decode(await request.body(), CreateBatchRequest)
    served = endpoints(get_state(request))
    if req.endpoint not in served:
        raise EngineError(f"endpoint must be one of {', '.join(served)}; got {req.endpoint!r}.",
                          400, "endpoint")  # fmt: skip
    window = window_seconds(req.completion_window)
    if req.metadata is not None and len(req.metadata) > MAX_METADATA:
        raise EngineError(f"metadata holds at most {MAX_METADATA} pairs.", 400, "metadata")
    file = get_file(services, req.input_file_id, "input_file_id")
    if file["purpose"] != "batch":
        raise EngineError(f"File {req.input_file_id} has purpose {file['purpose']!r}; a batch "
                          "input file needs purpose 'batch'.", 400, "input_file_id")  # fmt: skip
    now = int(time.time())
    record: dict[str, Any] = {
        "id": new_id("batch_"), "object": "batch", "endpoint": req.endpoint, "errors": None,
        "input_file_id": req.input_file_id, "completion_window": req.completion_window,
        "status": "validating", "output_file_id": None, "error_file_id": None,
        "created_at": now, "in_progress_at": None, "expires_at": now + window,
        "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None,
        "cancelling_at": None, "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": req.metadata,
    }  # fmt: skip
    try:
        services.store.put("batch", record)
    except StoreFullError as e:
        raise EngineError(str(e), 507) from None
    services.batches.submit(record["id"])
    return json_response(encode(record))


def _get_batch(request: Request[Any, Any, Any], batch_id: str) -> dict[str, Any]:
    services = get_services(request)
    record = services.store.get("batch", batch_id)
    if record is None:
        raise not_found("batch", batch_id, "batch_id")
    return live_counts(services.store, record)


@get("/v1/batches/{batch_id:str}")
async def retrieve_batch(request: Request[Any, Any, Any], batch_id: str) -> Response[bytes]:
    return json_response(encode(_get_batch(request, batch_id)))


@get("/v1/batches")
async def list_batches(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = get_services(request)
    limit, after, order = page_args(request, 20)
    if order != "desc":
        raise EngineError("batches are listed newest first; order is not supported.", 400,
                          "order")  # fmt: skip
    records, more = services.store.page("batch", limit=min(limit, 100), after=after)
    records = [live_counts(services.store, r) for r in records]
    return json_response(encode(list_page(records, more)))


@post("/v1/batches/{batch_id:str}/cancel", status_code=200)
async def cancel_batch(request: Request[Any, Any, Any], batch_id: str) -> Response[bytes]:
    record = _get_batch(request, batch_id)
    if record["status"] in FINISHED:
        raise EngineError(f"Batch {batch_id} is already {record['status']} and cannot be "
                          "cancelled.", 400, "batch_id")  # fmt: skip
    return json_response(encode(await get_services(request).batches.cancel(batch_id)))


HANDLERS = [create_batch, retrieve_batch, list_batches, cancel_batch]
