"""The OpenAI-compatible routes: thin handlers over the serving_* classes."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from radixserve.entrypoints.openai.protocol import ChatCompletionRequest, CompletionRequest
from radixserve.entrypoints.openapi import with_body
from radixserve.entrypoints.state import (
    decode,
    get_state,
    json_response,
    respond,
    unless_disconnected,
)


@post("/v1/chat/completions", status_code=200, operation_class=with_body(ChatCompletionRequest))
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    req = decode(await request.body(), ChatCompletionRequest)
    return respond(await unless_disconnected(request, get_state(request).chat.create(req)))


@post("/v1/completions", status_code=200, operation_class=with_body(CompletionRequest))
async def completions(request: Request[Any, Any, Any]) -> Response[Any]:
    req = decode(await request.body(), CompletionRequest)
    return respond(await unless_disconnected(request, get_state(request).completions.create(req)))


@get("/v1/models")
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(get_state(request).models.list())


@get("/v1/models/{model:path}")
async def retrieve_model(request: Request[Any, Any, Any]) -> Response[bytes]:
    # Model ids may contain "/" (org/name), hence a path parameter; it keeps its leading "/".
    model = str(request.path_params["model"]).lstrip("/")
    return json_response(get_state(request).models.retrieve(model))


HANDLERS = [chat_completions, completions, list_models, retrieve_model]
