"""Timestamps of one embedding request's path through a radixserve server, per process.

Put this folder first on PYTHONPATH and set RS_TRACE=<output folder> when starting the server:
each process (HTTP, scheduler) appends `name start_ns end_ns` lines (time.perf_counter_ns, one
monotonic clock for all processes) to <folder>/ev.<pid>.txt; breakdown.py turns them into a
per-piece table. Wraps (monkeypatches) functions of radixserve, uvicorn and the IPC codec; for
measurements only, never imported by radixserve itself.

    RS_TRACE=/tmp/trace PYTHONPATH=benchmarks/serving/short_request_trace:python \\
        python -m radixserve.serve --model-path <all-MiniLM-L6-v2> ...
    (send short /v1/embeddings requests one after another)
    python benchmarks/serving/short_request_trace/breakdown.py /tmp/trace 200
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from typing import Any, Optional, TextIO

_out: Optional[TextIO] = None


def ev(name: str, start: int, end: int = 0) -> None:
    global _out
    if _out is None:
        _out = open(os.path.join(os.environ["RS_TRACE"], f"ev.{os.getpid()}.txt"), "a", buffering=1)
    _out.write(f"{name} {start} {end}\n")


def wrap(owner: Any, attr: str, name: str) -> None:
    """owner.attr records its start and end as event `name` (sync or async)."""
    fn = getattr(owner, attr)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*a: Any, **k: Any) -> Any:
            t = time.perf_counter_ns()
            try:
                return await fn(*a, **k)
            finally:
                ev(name, t, time.perf_counter_ns())

        setattr(owner, attr, timed_async)
        return

    @functools.wraps(fn)
    def timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter_ns()
        try:
            return fn(*a, **k)
        finally:
            ev(name, t, time.perf_counter_ns())

    setattr(owner, attr, timed)


class _TimedDecoder:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def decode(self, data: bytes) -> Any:
        t = time.perf_counter_ns()
        out = self.inner.decode(data)
        ev("http_decode_out", t, time.perf_counter_ns())
        return out


def install() -> None:
    from uvicorn.protocols.http import httptools_impl

    from radixserve.engine import ipc, model_runner, pausing, scheduler
    from radixserve.entrypoints.openai import serving_embedding
    from radixserve.entrypoints.pooling import serving_pooling

    encode = ipc.encode

    def timed_encode(msg: Any) -> Any:  # the two IPC sends of a pooling request
        kind = type(msg).__name__
        if kind in ("BatchOut", "TokenizedGenerateReq"):
            ev("sched_send_batchout" if kind == "BatchOut" else "http_encode_req",
               time.perf_counter_ns())  # fmt: skip
        return encode(msg)

    ipc.encode = timed_encode  # type: ignore[assignment]
    ipc.from_scheduler_decoder = _TimedDecoder(ipc.from_scheduler_decoder)  # type: ignore[assignment]
    wrap(pausing.Inbox, "recv", "sched_recv")
    wrap(scheduler.Scheduler, "add_request", "sched_add")
    wrap(scheduler.Scheduler, "step", "sched_step")
    wrap(model_runner.ModelRunner, "forward", "forward")
    wrap(scheduler, "trim_heap", "trim_heap")
    wrap(scheduler, "build_forward_batch", "build_fb")
    wrap(serving_pooling, "prompt_ids", "tokenize")
    wrap(serving_embedding.ServingEmbedding, "embeddings", "handler")
    wrap(httptools_impl.RequestResponseCycle, "run_asgi", "asgi")
    send = httptools_impl.RequestResponseCycle.send

    async def timed_send(self: Any, message: Any) -> None:
        if message.get("type") == "http.response.body":
            ev("asgi_body_send", time.perf_counter_ns())
        await send(self, message)

    httptools_impl.RequestResponseCycle.send = timed_send  # type: ignore[method-assign]
    on_url = httptools_impl.HttpToolsProtocol.on_url

    def timed_on_url(self: Any, url: bytes) -> None:  # the request's first parse callback
        ev("http_on_url", time.perf_counter_ns())
        on_url(self, url)

    httptools_impl.HttpToolsProtocol.on_url = timed_on_url  # type: ignore[method-assign]


if os.environ.get("RS_TRACE"):
    install()
