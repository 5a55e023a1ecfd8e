"""Cache and request control: /flush_cache, /abort_request, /update_weights_from_disk,
/pause_generation, /continue_generation, /configure_logging, /start_profile, /stop_profile."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Literal, Optional

import msgspec
from litestar import Request, Response, post

from radixserve.engine import ipc
from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.openapi import with_body
from radixserve.entrypoints.serving_common import encode
from radixserve.entrypoints.state import decode, get_state, json_response


class AbortReq(msgspec.Struct, kw_only=True):
    rid: str = ""
    abort_all: bool = False


class PauseGenerationReq(msgspec.Struct, kw_only=True):
    # SGLang's modes: abort (its default) ends every request first; in_place keeps them, with
    # their KV, to go on after /continue_generation. retract (requeue without KV) is not served.
    mode: Literal["abort", "in_place", "retract"] = "abort"


class ConfigureLoggingReq(msgspec.Struct, kw_only=True):
    log_requests: Optional[bool] = None
    # SGLang's other fields, for features this server does not have: refused when given.
    log_requests_level: Optional[int] = None
    dump_requests_folder: Optional[str] = None
    dump_requests_threshold: Optional[int] = None
    crash_dump_folder: Optional[str] = None


ACCESS_LOGGER = "uvicorn.access"


def set_request_logging(on: bool) -> None:
    """--log-requests, switchable while serving: uvicorn always has its access log on
    (serve.uvicorn_config) and this logger decides; at INFO, whatever --log-level says."""
    access = logging.getLogger(ACCESS_LOGGER)
    access.disabled = not on
    if on:
        access.setLevel(logging.INFO)


class StartProfileReq(msgspec.Struct, kw_only=True):
    output_dir: Optional[str] = None  # default: $SGLANG_TORCH_PROFILER_DIR, else /tmp
    num_steps: Optional[int] = None  # stop by itself after this many scheduler steps
    activities: Optional[list[str]] = None  # CPU, GPU; default: CPU (+ GPU on a CUDA server)
    with_stack: Optional[bool] = None
    record_shapes: Optional[bool] = None


class UpdateWeightsReq(msgspec.Struct, kw_only=True):
    model_path: str
    load_format: Optional[str] = None


@post("/flush_cache", status_code=200)
async def flush_cache(request: Request[Any, Any, Any]) -> Response[bytes]:
    """SGLang answers in plain text; flushing fails while requests are running."""
    tm = get_state(request).tm
    ok = await tm.flush_cache()
    if ok:
        return Response(content=b"Cache flushed.\n", media_type="text/plain")
    open_ids = (await tm.session_control("list"))[1] if hasattr(tm, "session_control") else []
    if open_ids:  # open sessions hold locked KV that their next turns rely on
        text = f"Cache not flushed: sessions are open ({', '.join(open_ids)}); close them first.\n"
        return Response(content=text.encode(), status_code=400, media_type="text/plain")
    return Response(content=b"Cache not flushed: requests are running; retry when idle.\n",
                    status_code=400, media_type="text/plain")  # fmt: skip


@post("/abort_request", status_code=200, operation_class=with_body(AbortReq))
async def abort_request(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), AbortReq)
    tm = get_state(request).tm
    if req.abort_all:
        if not hasattr(tm, "abort_all"):
            raise EngineError("abort_all is not supported by this engine.", 400, "abort_all")
        tm.abort_all()
    elif not req.rid:
        raise EngineError("rid must be given (or abort_all true).", 400, "rid")
    else:
        tm.abort(req.rid)
    return json_response(encode({"success": True}))


@post("/update_weights_from_disk", status_code=200,
      operation_class=with_body(UpdateWeightsReq))
async def update_weights_from_disk(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), UpdateWeightsReq)
    tm = get_state(request).tm
    update = getattr(tm, "update_weights_from_disk", None)
    if update is None:
        body = {"success": False, "message": "Updating weights is not supported by this engine."}
        return json_response(encode(body), 400)
    result = update(req.model_path, req.load_format)
    if asyncio.iscoroutine(result):
        result = await result
    success, message = result if isinstance(result, tuple) else (bool(result), "")
    body = {
        "success": bool(success),
        "message": message or ("Succeeded to update model weights." if success else ""),
    }
    return json_response(encode(body), 200 if success else 400)


def _pauser(request: Request[Any, Any, Any]) -> Any:
    tm = get_state(request).tm
    if not hasattr(tm, "pause_generation"):
        raise EngineError("Pausing generation is not supported by this engine.", 400)
    return tm


@post("/pause_generation", status_code=200, operation_class=with_body(PauseGenerationReq))
async def pause_generation(request: Request[Any, Any, Any]) -> Response[bytes]:
    """No scheduler step runs until /continue_generation (e.g. around a weight update); new
    requests are accepted and wait."""
    body = await request.body()
    req = decode(body, PauseGenerationReq) if body.strip() else PauseGenerationReq()
    if req.mode == "retract":
        raise EngineError("mode 'retract' is not supported: use 'in_place' (requests keep their "
                          "KV) or 'abort'.", 400, "mode")  # fmt: skip
    tm = _pauser(request)
    if req.mode == "abort":
        tm.abort_all()  # sent before the pause: the scheduler ends them first
    await tm.pause_generation(True)
    return json_response(encode({"success": True, "message": f"Generation paused ({req.mode})."}))


@post("/continue_generation", status_code=200)
async def continue_generation(request: Request[Any, Any, Any]) -> Response[bytes]:
    await _pauser(request).pause_generation(False)
    return json_response(encode({"success": True, "message": "Generation continued."}))


@post("/configure_logging", status_code=200, operation_class=with_body(ConfigureLoggingReq))
async def configure_logging(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = decode(await request.body(), ConfigureLoggingReq)
    for name in ("log_requests_level", "dump_requests_folder", "dump_requests_threshold",
                 "crash_dump_folder"):  # fmt: skip
        if getattr(req, name) is not None:
            raise EngineError(f"{name} is not supported by this server (log_requests is).", 400,
                              name)  # fmt: skip
    args = get_state(request).server_args
    if req.log_requests is not None:
        set_request_logging(req.log_requests)
        args.log_requests = req.log_requests
    return json_response(encode({"success": True, "log_requests": args.log_requests}))


async def _profile(request: Request[Any, Any, Any], req: ipc.ProfileReq) -> Response[bytes]:
    tm = get_state(request).tm
    if not hasattr(tm, "profile"):
        raise EngineError("Profiling is not supported by this engine.", 400)
    ok, message = await tm.profile(req)
    if not ok:
        raise EngineError(message, 400)
    return json_response(encode({"success": True, "message": message}))


@post("/start_profile", status_code=200, operation_class=with_body(StartProfileReq))
async def start_profile(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A torch profiler over the scheduler's steps until /stop_profile or num_steps."""
    body = await request.body()
    req = decode(body, StartProfileReq) if body.strip() else StartProfileReq()
    return await _profile(request, ipc.ProfileReq(
        query_id=0, start=True,
        output_dir=req.output_dir or os.environ.get("SGLANG_TORCH_PROFILER_DIR", "/tmp"),
        num_steps=req.num_steps,
        activities=req.activities,
        with_stack=bool(req.with_stack), record_shapes=bool(req.record_shapes),
    ))  # fmt: skip


@post("/stop_profile", status_code=200)
async def stop_profile(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ends the profile and writes its Chrome trace (the message names the file)."""
    return await _profile(request, ipc.ProfileReq(query_id=0, start=False))


HANDLERS = [flush_cache, abort_request, update_weights_from_disk, pause_generation,
            continue_generation, configure_logging, start_profile, stop_profile]  # fmt: skip
