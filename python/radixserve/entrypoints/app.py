"""The Litestar app factory: lifespan (engine start/stop), error envelope, API key, metrics.

Every error, on /v1 and native routes alike, is `{"error": {"message", "type", "param",
"code"}}` with a 4xx status for client mistakes (never 422, never 500 for client input).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Optional

from litestar import Litestar, Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints import pooling_routes
from radixserve.entrypoints.access import access_guards
from radixserve.entrypoints.native import batch, control, health, parsing, routes, sessions
from radixserve.entrypoints.native.generate import ServingGenerate
from radixserve.entrypoints.openai import durable
from radixserve.entrypoints.openai import routes as openai_routes
from radixserve.entrypoints.openai.serving_chat import ServingChat
from radixserve.entrypoints.openai.serving_completions import ServingCompletions
from radixserve.entrypoints.openai.serving_models import ServingModels
from radixserve.entrypoints.openapi import openapi_config
from radixserve.entrypoints.serving_common import encode, error_body
from radixserve.entrypoints.serving_tokenize import ServingTokenize
from radixserve.entrypoints.state import JSON, ServerState
from radixserve.metrics import ServerMetrics
from radixserve.models.default_model import DEFAULT_MODEL_FILE, DEFAULT_MODEL_NAME

logger = logging.getLogger("radixserve.http")
_COUNTED = "radixserve.counted"


def model_name_of(tm: Any, server_args: Any) -> str:
    if server_args.served_model_name:
        return str(server_args.served_model_name)
    path = str(tm.model_info().get("model_path") or server_args.model_path or "default")
    # The bundled default model has a name clients know, not an absolute file path.
    return DEFAULT_MODEL_NAME if os.path.basename(path) == DEFAULT_MODEL_FILE else path


def build_state(tm: Any, server_args: Any) -> ServerState:
    name = model_name_of(tm, server_args)
    metrics = ServerMetrics(name) if server_args.enable_metrics else None
    cfg = tm.model_config
    path = str(tm.model_info().get("model_path") or name)
    return ServerState(
        tm=tm, server_args=server_args, model_name=name, metrics=metrics,
        chat=ServingChat(tm, name, metrics),
        completions=ServingCompletions(tm, name, metrics),
        generate=ServingGenerate(tm, name, metrics),
        models=ServingModels(name, path, int(cfg.context_len)),
        tokenize=ServingTokenize(tm.tokenizer, int(cfg.vocab_size), int(cfg.context_len)),
    )  # fmt: skip


def _route(scope: Scope) -> str:
    return str(scope.get("path_template") or "unmatched")


def _count(request: Request[Any, Any, Any], status: int) -> None:
    if request.scope.get(_COUNTED):  # the metrics middleware sees this response
        return
    state: Optional[ServerState] = getattr(request.app.state, "server", None)
    if state is not None and state.metrics is not None:
        state.metrics.count_request(_route(request.scope), status)


def _error(request: Request[Any, Any, Any], status: int, message: str,
           param: Optional[str] = None, headers: Optional[dict[str, str]] = None,
           ) -> Response[bytes]:  # fmt: skip
    _count(request, status)
    body = encode(error_body(message, status, param))
    return Response(content=body, status_code=status, media_type=JSON, headers=headers)


def _engine_error(request: Request[Any, Any, Any], exc: EngineError) -> Response[bytes]:
    if exc.status >= 500:
        logger.error("request to %s failed: %s", request.url.path, exc.message)
    return _error(request, exc.status, exc.message, exc.param, getattr(exc, "headers", None))


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status == 422:  # Litestar's validation status; the OpenAI API says 400
        status = 400
    message = str(exc.detail)
    if status == 404:
        message = f"Not found: {request.method} {request.url.path}"
    return _error(request, status, message)


def _value_error(request: Request[Any, Any, Any], exc: ValueError) -> Response[bytes]:
    return _error(request, 400, str(exc))


def _server_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    logger.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return _error(request, 500, f"Internal server error: {type(exc).__name__}: {exc}")


def _metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Counts responses of matched routes by route template and status, and times each from
    its arrival here to its last body message sent; errors raised before a route's middleware
    runs (404, 405) are counted by the exception handlers."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        scope[_COUNTED] = True  # type: ignore[literal-required]
        arrival = time.perf_counter()

        async def counting_send(message: Message) -> None:
            state = scope["app"].state.server
            if message["type"] == "http.response.start" and state.metrics is not None:
                state.metrics.count_request(_route(scope), message["status"])
            await send(message)
            done = message["type"] == "http.response.body" and not message.get("more_body")
            if done and state.metrics is not None:
                state.metrics.observe_duration(_route(scope), time.perf_counter() - arrival)

        await app(scope, receive, counting_send)

    return middleware


def create_app(tm: Any, server_args: Any, start_engine: bool = True) -> Litestar:
    """The HTTP app over a TokenizerManager; its lifespan starts and stops the engine."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if start_engine:
            await tm.start()
        try:
            app.state.server = build_state(tm, server_args)
            app.state.durable = durable.start_durable(app.state.server)  # files/batches/responses
            logger.info("serving model %s", app.state.server.model_name)
            yield
        finally:
            await durable.stop_durable(getattr(app.state, "durable", None))
            if start_engine:
                tm.shutdown()

    guards = access_guards(server_args)
    return Litestar(
        route_handlers=[
            *openai_routes.HANDLERS,
            *durable.HANDLERS,
            *routes.HANDLERS,
            *health.HANDLERS,
            *control.HANDLERS,
            *parsing.HANDLERS,  # /parse_function_call, /separate_reasoning
            *sessions.HANDLERS, *batch.HANDLERS,  # sessions, /extend, /batch
            *pooling_routes.HANDLERS,  # #8: embeddings, encode, classify, score, rerank
        ],  # fmt: skip
        lifespan=[lifespan],
        guards=guards,
        middleware=[_metrics_middleware],
        exception_handlers={
            EngineError: _engine_error,
            HTTPException: _http_error,
            ValueError: _value_error,
            Exception: _server_error,
        },
        request_max_body_size=server_args.max_payload_size,
        openapi_config=openapi_config(),
        debug=False,
    )
