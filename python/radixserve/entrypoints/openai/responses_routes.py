"""Routes of the Responses API: thin handlers over ServingResponses."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.openai.responses_objects import CreateResponseRequest, public
from radixserve.entrypoints.openai.serving_responses import ServingResponses
from radixserve.entrypoints.openai.store_services import get_services, list_page, page_args
from radixserve.entrypoints.openapi import with_body
from radixserve.entrypoints.serving_common import encode
from radixserve.entrypoints.state import decode, json_response, respond, unless_disconnected


def _responses(request: Request[Any, Any, Any]) -> ServingResponses:
    return get_services(request).responses  # type: ignore[no-any-return]


@post("/v1/responses", status_code=200, operation_class=with_body(CreateResponseRequest))
async def create_response(request: Request[Any, Any, Any]) -> Response[Any]:
    req = decode(await request.body(), CreateResponseRequest)
    serving = _responses(request)
    if req.background:  # runs on after this request returns, whatever the client does
        return respond(await serving.create(req))
    return respond(await unless_disconnected(request, serving.create(req)))


@get("/v1/responses/{response_id:str}")
async def retrieve_response(request: Request[Any, Any, Any], response_id: str) -> Response[bytes]:
    return json_response(encode(public(_responses(request).get(response_id))))


@delete("/v1/responses/{response_id:str}", status_code=200)
async def delete_response(request: Request[Any, Any, Any], response_id: str) -> Response[bytes]:
    return json_response(encode(await _responses(request).delete(response_id)))


@post("/v1/responses/{response_id:str}/cancel", status_code=200)
async def cancel_response(request: Request[Any, Any, Any], response_id: str) -> Response[bytes]:
    return json_response(encode(await _responses(request).cancel(response_id)))


@get("/v1/responses/{response_id:str}/input_items")
async def list_input_items(request: Request[Any, Any, Any], response_id: str) -> Response[bytes]:
    items: list[dict[str, Any]] = _responses(request).get(response_id)["_input_items"]
    limit, after, order = page_args(request, 20)
    if limit > 100:
        raise EngineError("limit must be at most 100.", 400, "limit")
    ordered = items if order == "asc" else items[::-1]
    if after is not None:
        ids = [it["id"] for it in ordered]
        if after not in ids:
            raise EngineError(f"No input item {after!r} in this response.", 400, "after")
        ordered = ordered[ids.index(after) + 1:]
    return json_response(encode(list_page(ordered[:limit], len(ordered) > limit)))


HANDLERS = [create_response, retrieve_response, delete_response, cancel_response,
            list_input_items]  # fmt: skip
