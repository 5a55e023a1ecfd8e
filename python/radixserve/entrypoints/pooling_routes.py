"""Pooling route handlers (#8): the OpenAI-style routes are served by
entrypoints/openai/serving_{embedding,score,rerank,classify}.py, /encode and /classify by
entrypoints/native/serving_encode.py. Their serving objects are built on first use from the
server state (engine, model name, metrics), so app.py only lists HANDLERS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from litestar import Request, Response, post

from radixserve.entrypoints.native.serving_encode import ServingEncode
from radixserve.entrypoints.openai.serving_classify import ServingClassify
from radixserve.entrypoints.openai.serving_embedding import ServingEmbedding
from radixserve.entrypoints.openai.serving_rerank import ServingRerank
from radixserve.entrypoints.openai.serving_score import ServingScore
from radixserve.entrypoints.openapi import with_body
from radixserve.entrypoints.pooling.protocol import (
    ClassifyRequest,
    EmbeddingRequest,
    EncodeReqInput,
    RerankRequest,
    ScoreRequest,
)
from radixserve.entrypoints.pooling.runner import PoolingMetrics
from radixserve.entrypoints.state import decode, get_state, json_response, unless_disconnected


@dataclass
class PoolingServing:
    embedding: ServingEmbedding
    encode: ServingEncode
    score: ServingScore
    rerank: ServingRerank
    classify: ServingClassify


def serving(request: Request[Any, Any, Any]) -> PoolingServing:
    app_state = request.app.state
    found: Optional[PoolingServing] = getattr(app_state, "pooling_serving", None)
    if found is None:
        s = get_state(request)
        metrics = PoolingMetrics(s.metrics) if s.metrics is not None else None
        args = (s.tm, s.model_name, metrics)
        found = PoolingServing(
            ServingEmbedding(*args), ServingEncode(*args), ServingScore(*args), ServingRerank(*args),
            ServingClassify(*args),
        )  # fmt: skip
        app_state.pooling_serving = found
    return found


@post("/v1/embeddings", status_code=200, operation_class=with_body(EmbeddingRequest))
async def embeddings(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), EmbeddingRequest)
    return json_response(await unless_disconnected(request, serving(request).embedding.embeddings(req)))


@post("/encode", status_code=200, operation_class=with_body(EncodeReqInput))
async def encode_route(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), EncodeReqInput)
    work = serving(request).encode.encode(req, "/encode")
    return json_response(await unless_disconnected(request, work))


@post("/classify", status_code=200, operation_class=with_body(EncodeReqInput))
async def classify(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), EncodeReqInput)
    work = serving(request).encode.encode(req, "/classify")
    return json_response(await unless_disconnected(request, work))


@post("/v1/classify", status_code=200, operation_class=with_body(ClassifyRequest))
async def classify_v1(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), ClassifyRequest)
    return json_response(await unless_disconnected(request, serving(request).classify.classify(req)))


@post("/v1/score", status_code=200, operation_class=with_body(ScoreRequest))
async def score(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), ScoreRequest)
    return json_response(await unless_disconnected(request, serving(request).score.score(req)))


@post("/v1/rerank", status_code=200, operation_class=with_body(RerankRequest))
async def rerank(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), RerankRequest)
    return json_response(await unless_disconnected(request, serving(request).rerank.rerank(req)))


HANDLERS = [embeddings, encode_route, classify, classify_v1, score, rerank]
