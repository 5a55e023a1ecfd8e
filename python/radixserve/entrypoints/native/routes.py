"""POST/PUT /generate and the native spellings of tokenize/detokenize."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post, route

from radixserve.entrypoints.native.generate import GenerateReqInput
from radixserve.entrypoints.openapi import with_body
from radixserve.entrypoints.serving_tokenize import DetokenizeRequest, TokenizeRequest
from radixserve.entrypoints.state import (
    decode,
    get_state,
    json_response,
    respond,
    unless_disconnected,
)


@route("/generate", http_method=["POST", "PUT"], status_code=200,
       operation_class=with_body(GenerateReqInput))
async def generate(request: Request[Any, Any, Any]) -> Response[Any]:
    req = decode(await request.body(), GenerateReqInput)
    return respond(await unless_disconnected(request, get_state(request).generate.create(req)))


@post(["/tokenize", "/v1/tokenize"], status_code=200, operation_class=with_body(TokenizeRequest))
async def tokenize(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), TokenizeRequest)
    return json_response(get_state(request).tokenize.tokenize(req))


@post(["/detokenize", "/v1/detokenize"], status_code=200,
      operation_class=with_body(DetokenizeRequest))
async def detokenize(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), DetokenizeRequest)
    return json_response(get_state(request).tokenize.detokenize(req))


HANDLERS = [generate, tokenize, detokenize]
