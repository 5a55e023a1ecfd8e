"""What every serving module shares: JSON/SSE encoding, the error envelope, and running
GenerateRequests through the engine (fan-out over prompts, merged updates, abort on leave).

The OpenAI routes (openai/), SGLang's native routes (native/) and the pooling routes (pooling/)
all import from here; nothing here knows an API's request format.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Optional

import msgspec

from radixserve.engine.io_struct import EngineError, GenerateOutput, GenerateRequest
from radixserve.engine.sampling_params import SamplingParams
from radixserve.metrics import ServerMetrics

if TYPE_CHECKING:
    from radixserve.engine.tokenizer_manager import TokenizerManager


class ErrorInfo(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[int] = None


class ErrorResponse(msgspec.Struct, kw_only=True):
    """The OpenAI error envelope, used by every route (native ones too)."""

    error: ErrorInfo


_SSE_DONE = b"data: [DONE]\n\n"
_encoder = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def sse(obj: Any) -> bytes:
    return b"data: " + _encoder.encode(obj) + b"\n\n"


def sse_done() -> bytes:
    return _SSE_DONE


def error_body(message: str, status: int = 400, param: Optional[str] = None) -> ErrorResponse:
    kind = {
        400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
        405: "invalid_request_error", 413: "invalid_request_error", 503: "service_unavailable",
        429: "rate_limit_error", 504: "timeout_error",
    }.get(status, "server_error")  # fmt: skip
    return ErrorResponse(error=ErrorInfo(message=message, type=kind, param=param, code=status))


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def finish_reason(out: GenerateOutput) -> tuple[Optional[str], Optional[int | str]]:
    """OpenAI finish_reason and SGLang's matched_stop of an output."""
    fr = out.finish_reason
    if fr is None:
        return None, None
    return fr.type, fr.matched


def field_error(e: ValueError) -> EngineError:
    """A ValueError from SamplingParams.verify as a 400 naming its field (its first word)."""
    message = str(e)
    first = message.split(" ", 1)[0].rstrip(":")
    param = first if first in SamplingParams.__struct_fields__ else None
    return EngineError(message, 400, param)


class ServingEngine:
    """Runs GenerateRequests for a route: the engine front (TokenizerManager) and metrics."""

    def __init__(
        self, tm: TokenizerManager, model_name: str, metrics: Optional[ServerMetrics]
    ) -> None:
        self.tm = tm
        self.model_name = model_name
        self.metrics = metrics
        config = tm.model_config
        assert config is not None, "the engine is started before the routes are built"
        self.vocab_size: int = int(config.vocab_size)
        self.context_len: int = int(config.context_len)

    def check_prompt_len(self, input_ids: Sequence[int]) -> None:
        if len(input_ids) >= self.context_len:
            raise EngineError(
                f"The prompt has {len(input_ids)} tokens; this model's context length is "
                f"{self.context_len} tokens (prompt and output together).", 400, "messages",
            )  # fmt: skip
        for t in input_ids:
            if not 0 <= t < self.vocab_size:
                raise EngineError(f"Token id {t} is out of the vocabulary (size "
                                  f"{self.vocab_size}).", 400, "prompt")  # fmt: skip

    def expand(
        self,
        prompts: Sequence[tuple[Optional[str], Optional[list[int]]]],
        params: SamplingParams,
        n: int,
        rid: Optional[str | list[str]],
        stream: bool,
        logprobs: bool = False,
        top_logprobs: int = 0,
        logprob_start_len: int = -1,
    ) -> list[GenerateRequest]:
        """One GenerateRequest per (prompt, choice), prompt-major like OpenAI's choice indices."""
        rids = [rid] if isinstance(rid, str) else list(rid or [])
        if rids and len(rids) != len(prompts):
            raise EngineError(f"rid has {len(rids)} ids for {len(prompts)} prompts.", 400, "rid")
        out = []
        for p, (text, ids) in enumerate(prompts):
            base = rids[p] if rids else uuid.uuid4().hex
            for i in range(n):
                sp = params
                if n > 1 and params.sampling_seed is not None:
                    # Same seed for every choice would give n identical choices.
                    sp = msgspec.structs.replace(params, sampling_seed=params.sampling_seed + i)
                out.append(GenerateRequest(
                    rid=base if n == 1 else f"{base}-{i}", text=text, input_ids=ids,
                    sampling_params=sp, stream=stream, return_logprob=logprobs,
                    top_logprobs_num=top_logprobs, logprob_start_len=logprob_start_len,
                    return_text_in_logprobs=logprobs,
                ))  # fmt: skip
        return out

    # -- running --------------------------------------------------------------------------------

    async def run_one(self, req: GenerateRequest) -> AsyncGenerator[GenerateOutput, None]:
        """tm.generate with metrics; aborts the request if the consumer leaves early."""
        tracker = self.metrics.tracker() if self.metrics is not None else None
        last: Optional[GenerateOutput] = None
        try:
            async for out in self.tm.generate(req):
                last = out
                if tracker is not None:
                    tracker.update(out.completion_tokens)
                yield out
        finally:
            if last is None or not last.finished:
                self.tm.abort(req.rid)
            if tracker is not None and last is not None:
                reason = last.finish_reason.type if last.finish_reason else "abort"
                tracker.finish(last.prompt_tokens, last.cached_tokens, reason)

    async def stream_all(
        self, reqs: list[GenerateRequest]
    ) -> AsyncGenerator[tuple[int, GenerateOutput], None]:
        """(index, output) updates of all requests as they come; one request needs no tasks."""
        if len(reqs) == 1:
            async with contextlib.aclosing(self.run_one(reqs[0])) as it:
                async for out in it:
                    yield 0, out
            return
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

        async def pump(i: int, req: GenerateRequest) -> None:
            try:
                async with contextlib.aclosing(self.run_one(req)) as it:
                    async for out in it:
                        queue.put_nowait((i, out))
            except BaseException as e:  # noqa: B036 - handed to the consumer, which re-raises
                queue.put_nowait((i, e))
                if isinstance(e, asyncio.CancelledError):
                    raise
                return
            queue.put_nowait((i, None))

        tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(reqs)]
        try:
            pending = len(tasks)
            while pending:
                i, item = await queue.get()
                if item is None:
                    pending -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield i, item
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def collect(self, reqs: list[GenerateRequest]) -> list[GenerateOutput]:
        """The final output of every request, in order."""
        finals: list[Optional[GenerateOutput]] = [None] * len(reqs)
        async for i, out in self.stream_all(reqs):
            finals[i] = out
        missing = [i for i, f in enumerate(finals) if f is None]
        if missing:
            raise EngineError("The engine returned no output.", 500)
        return finals  # type: ignore[return-value]

    @staticmethod
    async def primed(
        it: AsyncGenerator[tuple[int, GenerateOutput], None],
    ) -> AsyncIterator[tuple[int, GenerateOutput]]:
        """Await the first update now, so a request the engine rejects becomes an HTTP error
        instead of a broken stream; returns an iterator that replays it."""
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await it.aclose()
            raise

        async def replay() -> AsyncIterator[tuple[int, GenerateOutput]]:
            try:
                if first is not None:
                    yield first
                    async for x in it:
                        yield x
            finally:
                await it.aclose()

        return replay()
