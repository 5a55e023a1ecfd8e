"""TokenizerManager: the engine's front in the caller's process (asyncio).

It tokenizes and validates requests, sends them to the scheduler process over ZMQ, and turns
the scheduler's batched token updates into GenerateOutput objects (incremental text, stop
trimming) on one asyncio queue per request. It never runs the model.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any, Optional

import zmq
import zmq.asyncio

from radixserve import __version__
from radixserve.args import ServerArgs
from radixserve.constrained.base import constraint_key
from radixserve.constrained.xgrammar_backend import load_off_loop
from radixserve.engine import ipc
from radixserve.engine.io_struct import EngineError, GenerateOutput, GenerateRequest
from radixserve.engine.limits import Deadline, check_queue
from radixserve.engine.offload import INLINE_CHARS, offload
from radixserve.engine.request_state import ModelConfigView, ReqState, prepare_request
from radixserve.engine.session_protocol import SessionCtlReq, rejected
from radixserve.models.tokenizer import encode_text

logger = logging.getLogger("radixserve.tokenizer_manager")

_QUERY_TIMEOUT = 10.0


def _scheduler_main(server_args: ServerArgs, in_addr: str, out_addr: str) -> None:
    """The scheduler process's entry point. The scheduler module (torch, the model code) is
    imported here, in the spawned process only: the HTTP process never loads torch."""
    from radixserve.engine.scheduler import run_scheduler_process

    run_scheduler_process(server_args, in_addr, out_addr)


class TokenizerManager:
    def __init__(self, server_args: ServerArgs) -> None:
        """Spawns the scheduler process first, so that it loads the model while this process
        loads the tokenizer (and the caller builds its app): the two start-ups overlap."""
        from radixserve.models.default_model import default_model_path
        from radixserve.models.tokenizer import load_tokenizer

        self.server_args = server_args
        if server_args.model_path is None:
            server_args.model_path = str(default_model_path())
        self.model_path: str = server_args.model_path
        self.model_config: Optional[ModelConfigView] = None
        self.info: dict[str, Any] = {}
        self.states: dict[str, ReqState] = {}
        self.proc: Optional[Any] = None
        self.dead_message: Optional[str] = None
        self.last_load: dict[str, Any] = {}
        self._queries: dict[int, asyncio.Future[Any]] = {}
        self._query_ids = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()  # set by the receive loop when a (re)started scheduler is up
        self.num_restarts = 0
        # Bound before the spawn: a scheduler that fails at once still finds its reader. The
        # asyncio sockets attach to the event loop that first awaits them (start()).
        self._tmpdir: Optional[str]
        self._tmpdir, in_addr, out_addr = ipc.new_ipc_addresses()
        self._ctx: Optional[zmq.asyncio.Context] = zmq.asyncio.Context()
        self._send: Any = ipc.make_socket(self._ctx, zmq.PUSH, in_addr, bind=True)
        self._recv: Any = ipc.make_socket(self._ctx, zmq.PULL, out_addr, bind=True)
        self._addrs: tuple[str, str] = (in_addr, out_addr)
        self._spawn()
        try:
            self.tokenizer: Any = load_tokenizer(self.model_path, server_args.tokenizer_path)
        except BaseException:
            self.shutdown()
            raise

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Wait until the scheduler process (spawned by __init__) has loaded its model."""
        proc = self.proc
        if proc is None or self._recv is None:
            raise RuntimeError("the engine was shut down before it started")
        timeout = max(60.0, self.server_args.watchdog_timeout)
        start = time.monotonic()
        next_log = start + 10.0
        while True:
            if await self._recv.poll(200):
                msg = ipc.from_scheduler_decoder.decode(await self._recv.recv())
                if isinstance(msg, ipc.Ready):
                    break
                if isinstance(msg, ipc.SchedulerFailed):
                    self.shutdown()
                    raise RuntimeError(f"scheduler failed to start: {msg.message}")
            if not proc.is_alive():
                self.shutdown()
                raise RuntimeError(f"scheduler process exited (code {proc.exitcode}) while loading")
            now = time.monotonic()
            if now - start > timeout:
                self.shutdown()
                raise RuntimeError(f"scheduler not ready after {timeout:.0f} s")
            if now > next_log:
                logger.info("waiting for the scheduler to load the model (%.0f s)", now - start)
                next_log = now + 10.0
        self.info = msg.info
        self.model_config = ModelConfigView(msg.info)
        logger.info("scheduler ready %.1f s after start() was called", time.monotonic() - start)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._recv_loop()), loop.create_task(self._watchdog())]

    def _spawn(self) -> Any:
        # OpenMP keeps its own wait policy (workers spin, then sleep): fastest on a quiet host,
        # while with more busy threads than cores OMP_WAIT_POLICY=passive holds up better (29-33
        # vs 33-65 ms TPOT with 4 busy processes on 2 cores; the fused step's own barriers sleep
        # after 50 us either way). benchmarks/results/decode_default_model.md; README "Shared hosts".
        proc = mp.get_context("spawn").Process(
            target=_scheduler_main,
            args=(self.server_args, *self._addrs),
            name="radixserve-scheduler",
            daemon=True,
        )
        proc.start()
        self.proc = proc
        return proc

    def shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)
        self._send = self._recv = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)  # closes every socket; never blocks on pending messages
            self._ctx = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._fail_all("the engine was shut down")

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive() and self.dead_message is None

    async def health(self) -> bool:
        if not self.is_alive():
            return False
        try:
            await self._query(ipc.GetLoadReq(0), timeout=5.0)
        except EngineError:
            return False
        return True

    # -- requests -------------------------------------------------------------------------
    async def generate(self, req: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        """Updates of one request (n > 1: of its n samples, `index` tells them apart)."""
        self._check_alive()
        assert self.model_config is not None
        args = (req, self.tokenizer, self.model_config, self.server_args)
        if constraint_key(req.sampling_params) is not None:  # validated in prepare_request
            await load_off_loop()
        if req.text is not None and len(req.text) > INLINE_CHARS:
            msgs = await offload(prepare_request, *args)  # tokenizing a long prompt
        else:
            msgs = prepare_request(*args)
        check_queue(len(self.states), len(msgs), self.server_args)
        deadline = Deadline(self.server_args.request_timeout)
        rids = [m.rid for m in msgs]
        for rid in rids:
            if rid in self.states:
                raise EngineError(f"Duplicate request id {rid!r}.", 400, param="rid")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for i, m in enumerate(msgs):
            self.states[m.rid] = ReqState(m, req, i, queue, self.tokenizer)
        pending = set(rids)
        try:
            # One message: the n copies of a request reach the scheduler in the same drain, so
            # they prefill in one step and share its KV (greedy copies stay identical).
            await self._send.send_multipart([ipc.encode(m) for m in msgs])
            while pending:
                item = await deadline.get(queue)
                if isinstance(item, EngineError):
                    raise item
                if item.finished:
                    pending.discard(item.rid)
                yield item
        finally:
            for rid in rids:
                self.states.pop(rid, None)
            for rid in pending:  # the caller went away (or failed): stop the work
                self._abort_one(rid)

    def abort(self, rid: str) -> None:
        """Abort a request (or all n samples of it); unknown ids are ignored."""
        for key in [k for k, s in self.states.items() if k == rid or s.parent_rid == rid]:
            self._abort_one(key)

    def abort_all(self) -> None:
        for key in list(self.states):
            self._abort_one(key)

    async def update_weights_from_disk(
        self, model_path: str, load_format: Optional[str] = None
    ) -> tuple[bool, str]:
        """Swap the model's weights (same architecture), only while no request runs."""
        if load_format not in (None, "auto"):
            return False, f"load_format {load_format!r} is not supported (use auto)"
        success, message = await self._query(ipc.UpdateWeightsReq(0, model_path), timeout=600.0)
        return bool(success), str(message)

    def _abort_one(self, rid: str) -> None:
        if self._send is not None and self.is_alive():
            self._send.send(ipc.encode(ipc.AbortReq(rid)))

    async def pause_generation(self, paused: bool) -> None:
        """Stop (or restart) the scheduler's steps; answered once the scheduler has it."""
        await self._query(ipc.PauseGenerationReq(0, paused))

    async def profile(self, req: ipc.ProfileReq) -> tuple[bool, str]:
        """Start or stop the scheduler's profiler: (ok, message)."""
        ok, message = await self._query(req)
        return bool(ok), str(message)

    async def flush_cache(self) -> bool:
        return bool(await self._query(ipc.FlushCacheReq(0)))

    async def session_control(
        self, op: str, session_id: Optional[str] = None, capacity: int = 0
    ) -> tuple[int, Any]:
        """open / close / list sessions in the scheduler: (HTTP status, id, message or ids)."""
        msg = SessionCtlReq(query_id=0, op=op, session_id=session_id, capacity=capacity)
        status, result = await self._query(msg)
        return int(status), result

    async def get_load(self) -> dict[str, Any]:
        """Running/waiting requests, KV usage, cache hit rate, token counts (for /metrics)."""
        if not self.is_alive():
            return dict(self.last_load)
        self.last_load = dict(await self._query(ipc.GetLoadReq(0)))
        self.last_load["num_scheduler_restarts"] = self.num_restarts
        return dict(self.last_load)

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        **chat_template_kwargs: Any,
    ) -> list[int]:
        template = self._template()
        if template is not None:
            chat_template_kwargs.setdefault("chat_template", template)
        try:
            text = self.tokenizer.apply_chat_template(
                messages,
                tokenize=False,
                add_generation_prompt=add_generation_prompt and not continue_final_message,
                continue_final_message=continue_final_message,
                **chat_template_kwargs,
            )
        except Exception as e:  # jinja errors, bad roles, no template
            raise EngineError(f"Could not apply the chat template: {e}", 400, "messages") from e
        return encode_text(self.tokenizer, text, add_special_tokens=False)

    @functools.cache  # noqa: B019 - one per manager, read once: the file is not re-read per request
    def _template(self) -> Optional[str]:
        """--chat-template: a file's contents, or the template text itself."""
        template = self.server_args.chat_template
        if template is not None and os.path.isfile(template):
            with open(template, encoding="utf-8") as f:
                template = f.read()
        return template

    def model_info(self) -> dict[str, Any]:
        cfg = self.info.get("model_config", {})
        return {
            "model_path": self.model_path,
            "tokenizer_path": self.server_args.tokenizer_path or self.model_path,
            "is_generation": bool(cfg.get("is_generation", True)),
            "preferred_sampling_params": None,
            "weight_version": "default",
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": cfg.get("model_type"),
            "architectures": cfg.get("architectures"),
        }

    def server_info(self) -> dict[str, Any]:
        return {
            **self.server_args.to_dict(),
            "version": __version__,
            "max_total_tokens": self.info.get("max_total_tokens"),
            "kv_pool_size": self.info.get("max_total_tokens"),
            "context_len": self.info.get("context_len"),
            "max_req_input_len": (self.info.get("context_len") or 1) - 1,
            "vocab_size": self.info.get("vocab_size"),
            "scheduler_pid": self.info.get("pid"),
        }

    # -- background -----------------------------------------------------------------------
    def _check_alive(self) -> None:
        if self.dead_message is not None:
            raise EngineError(self.dead_message, 503)
        if self.proc is None or self._send is None:
            raise EngineError("the engine is not started", 503)

    async def _query(self, msg: Any, timeout: float = _QUERY_TIMEOUT) -> Any:
        self._check_alive()
        qid = next(self._query_ids)
        msg.query_id = qid
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queries[qid] = fut
        try:
            await self._send.send(ipc.encode(msg))
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise EngineError("the scheduler did not answer in time", 503) from None
        finally:
            self._queries.pop(qid, None)

    async def _recv_loop(self) -> None:
        while True:
            msg = ipc.from_scheduler_decoder.decode(await self._recv.recv())
            if isinstance(msg, ipc.BatchOut):
                for up in msg.updates:
                    state = self.states.get(up.rid)
                    if state is None:
                        continue
                    if up.error_status:  # the engine failed this request (see step_guard)
                        reason = up.finish_reason.message if up.finish_reason else None
                        state.queue.put_nowait(EngineError(reason or "internal error",
                                                           up.error_status))  # fmt: skip
                        continue
                    refused = rejected(up.finish_reason)  # e.g. an unknown session
                    state.queue.put_nowait(EngineError(*refused) if refused else state.apply(up))
            elif isinstance(msg, ipc.QueryResult):
                fut = self._queries.get(msg.query_id)
                if fut is not None and not fut.done():
                    fut.set_result(msg.result)
            elif isinstance(msg, ipc.Ready):  # a restarted scheduler finished loading
                self.info = msg.info
                self.dead_message = None
                self._ready.set()
            elif isinstance(msg, ipc.SchedulerFailed):
                logger.error("the restarted scheduler failed to start: %s", msg.message)

    async def _watchdog(self) -> None:
        """Within 0.2 s of the scheduler's death: fail every caller, then (unless
        --no-restart-on-crash) start a new scheduler, backing off while restarts keep failing."""
        failures = 0
        while True:
            await asyncio.sleep(0.2)
            if self.proc is None or self.proc.is_alive():
                continue
            code = self.proc.exitcode
            restart = self.server_args.restart_on_crash
            logger.error("the scheduler process died (exit code %s)%s", code,
                         "; restarting it" if restart else "")  # fmt: skip
            self._fail_all(f"the scheduler process died (exit code {code})"
                           + ("; it is being restarted, retry shortly" if restart else ""))  # fmt: skip
            if not restart:
                return
            await asyncio.sleep(min(30.0, 0.5 * (2**failures - 1)))
            self._ready.clear()
            proc = self._spawn()
            self.num_restarts += 1
            while not self._ready.is_set() and proc.is_alive():
                await asyncio.sleep(0.2)
            if self._ready.is_set():
                failures = 0
                logger.info("the scheduler was restarted (pid %s)", self.info.get("pid"))
            else:
                failures += 1

    def _fail_all(self, message: str) -> None:
        self.dead_message = message
        err = EngineError(message, 503)
        for state in list(self.states.values()):
            state.queue.put_nowait(err)
        for fut in self._queries.values():
            if not fut.done():
                fut.set_exception(err)
