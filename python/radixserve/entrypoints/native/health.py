"""Health, info, load and metrics routes: /health, /health_generate, /get_model_info,
/get_server_info, /get_load, /get_weight_version, /metrics."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from litestar import Request, Response, get, route

import radixserve
from radixserve.engine.io_struct import EngineError, GenerateRequest
from radixserve.engine.sampling_params import SamplingParams
from radixserve.entrypoints.serving_common import encode
from radixserve.entrypoints.state import get_state, json_response
from radixserve.metrics import CONTENT_TYPE

HEALTH_TIMEOUT = 20.0
MODEL_INFO_KEYS = (
    "model_path", "is_generation", "tokenizer_path", "preferred_sampling_params",
    "weight_version", "has_image_understanding", "has_audio_understanding", "model_type",
    "architectures",
)  # fmt: skip


async def _load(request: Request[Any, Any, Any]) -> dict[str, Any]:
    try:
        return dict(await asyncio.wait_for(get_state(request).tm.get_load(), HEALTH_TIMEOUT))
    except (asyncio.TimeoutError, ConnectionError, RuntimeError, EngineError) as e:
        reason = e.message if isinstance(e, EngineError) else (str(e) or "timeout")
        raise EngineError(f"The engine is not responding: {reason}", 503) from None


# HEAD too, as SGLang's (Starlette) GET routes answer it: uptime monitors and load balancers
# probe with HEAD.
@route("/health", http_method=["GET", "HEAD"])
async def health(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Liveness plus the scheduler's load and prefix-cache figures (SGLang's /health is only
    liveness; the figures save a monitor a second call to /get_load)."""
    alive = getattr(get_state(request).tm, "is_alive", None)
    if alive is not None and not alive():
        raise EngineError("The engine is not running (the scheduler process is gone).", 503)
    load = await _load(request)
    body = {
        "status": "healthy",
        "model_loaded": True,
        "radix_cache_ready": not get_state(request).server_args.disable_radix_cache,
        "radix_cache_usage_perc": load.get("token_usage", 0.0),
        "cache_hit_rate": load.get("cache_hit_rate", 0.0),
        "num_requests_running": load.get("num_running_reqs", 0),
        "num_requests_waiting": load.get("num_waiting_reqs", 0),
        "speculative_decoding_enabled": False,
    }
    return json_response(encode(body))


@route("/health_generate", http_method=["GET", "HEAD"])
async def health_generate(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Runs one token through the engine (scheduler, model, sampler) within a timeout."""
    state = get_state(request)
    req = GenerateRequest(
        rid=f"HEALTH_CHECK_{uuid.uuid4().hex}", input_ids=[0],
        sampling_params=SamplingParams(max_new_tokens=1, temperature=0.0),
    )  # fmt: skip

    async def run() -> int:
        n = 0
        async for out in state.tm.generate(req):
            n = out.completion_tokens
        return n

    try:
        generated = await asyncio.wait_for(run(), HEALTH_TIMEOUT)
    except asyncio.TimeoutError:
        state.tm.abort(req.rid)
        raise EngineError("The engine did not generate a token in time.", 503) from None
    if generated < 1:
        raise EngineError("The engine generated no token.", 503)
    return json_response(encode({"status": "healthy"}))


@get("/get_model_info")
async def get_model_info(request: Request[Any, Any, Any]) -> Response[bytes]:
    info = get_state(request).tm.model_info()
    return json_response(encode({k: info.get(k) for k in MODEL_INFO_KEYS}))


@get("/get_weight_version")
async def get_weight_version(request: Request[Any, Any, Any]) -> Response[bytes]:
    """SGLang's route: the version tag of the loaded weights (as in /get_model_info)."""
    info = get_state(request).tm.model_info()
    return json_response(encode({"weight_version": info.get("weight_version")}))


@get("/get_server_info")
async def get_server_info(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = get_state(request)
    info = {**state.server_args.to_dict(), **state.tm.server_info()}
    info["version"] = getattr(radixserve, "__version__", "0.1.0")
    return json_response(encode(info))


@get("/get_load")
async def get_load(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(encode(await _load(request)))


@get("/metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = get_state(request)
    if state.metrics is None:
        raise EngineError("Metrics are disabled (--enable-metrics is off).", 404)
    state.metrics.refresh_load(await _load(request))
    return Response(content=state.metrics.render(), media_type=CONTENT_TYPE)


HANDLERS = [health, health_generate, get_model_info, get_weight_version, get_server_info, get_load,
            metrics]  # fmt: skip
