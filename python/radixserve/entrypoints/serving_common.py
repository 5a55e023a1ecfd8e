"""What every serving module shares: JSON/SSE encoding, the error envelope, and running
GenerateRequests through the engine (fan-out over prompts, merged updates, abort on leave).

The OpenAI routes (openai/), SGLang's native routes (native/) and the pooling routes (pooling/)
all import from here; nothing here knows an API's request format.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Optional

import msgspec

from radixserve.engine.io_struct import EngineError, GenerateOutput, GenerateRequest
from radixserve.engine.sampling_params import SamplingParams
from radixserve.engine.session_protocol import SessionParams
from radixserve.metrics import RequestTracker, ServerMetrics

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


class UnservedFields(msgspec.Struct, kw_only=True):
    """SGLang request fields of features this server does not have. SGLang refuses them
    unless a flag enables the feature; ignoring them would answer without what was asked (a
    base-model reply for a LoRA adapter, no hidden states, a reply that never saw the image)."""

    lora_path: Optional[Any] = None
    return_hidden_states: bool = False
    image_data: Optional[Any] = None
    audio_data: Optional[Any] = None
    video_data: Optional[Any] = None

    def refuse_unserved(self) -> None:
        for name, feature in (("lora_path", "LoRA adapters"),
                              ("return_hidden_states", "returning hidden states"),
                              ("image_data", "image inputs"), ("audio_data", "audio inputs"),
                              ("video_data", "video inputs")):  # fmt: skip
            if getattr(self, name):
                raise EngineError(f"{name}: {feature} are not supported by this server.", 400,
                                  name)  # fmt: skip


def checked_session(sp: Optional[SessionParams], prompts: int, n: int) -> Optional[SessionParams]:
    """A request's session_params (/generate, chat), checked: an open session's id, one prompt,
    one sample (a session continues one line of conversation)."""
    if sp is None:
        return None
    if not sp.id:
        raise EngineError("session_params.id must name an open session.", 400, "session_params")
    if prompts != 1 or n != 1:
        raise EngineError("session_params needs a single prompt and n = 1.", 400,
                          "session_params")  # fmt: skip
    return sp


_SSE_DONE = b"data: [DONE]\n\n"
_ENGINE_PROMPT_PARAMS = ("prompt", "input_ids")
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


class ServingEngine:
    """Runs GenerateRequests for a route: the engine front (TokenizerManager) and metrics.

    The engine checks every request (sampling params, prompt length, token ids) on its input
    path; a route only maps the engine's name for the prompt to its own field (`prompt_param`).
    """

    prompt_param: Optional[str] = None  # the route's name for the engine's "prompt"/"input_ids"

    def __init__(
        self, tm: TokenizerManager, model_name: str, metrics: Optional[ServerMetrics]
    ) -> None:
        self.tm = tm
        self.model_name = model_name
        self.metrics = metrics

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
        """One GenerateRequest per prompt, each asking for n samples: the engine's
        TokenizerManager is the one place that fans a request out into its n samples."""
        rids = [rid] if isinstance(rid, str) else list(rid or [])
        if rids and len(rids) != len(prompts):
            raise EngineError(f"rid has {len(rids)} ids for {len(prompts)} prompts.", 400, "rid")
        sp = params if params.n == n else msgspec.structs.replace(params, n=n)
        return [
            GenerateRequest(
                rid=rids[p] if rids else uuid.uuid4().hex, text=text, input_ids=ids,
                sampling_params=sp, stream=stream, return_logprob=logprobs,
                top_logprobs_num=top_logprobs, logprob_start_len=logprob_start_len,
                return_text_in_logprobs=logprobs,
            )
            for p, (text, ids) in enumerate(prompts)
        ]  # fmt: skip

    @staticmethod
    def num_choices(reqs: Sequence[GenerateRequest]) -> int:
        """Choices of a fan-out: n per request, prompt-major like OpenAI's choice indices."""
        return sum(r.sampling_params.n for r in reqs)

    # -- running --------------------------------------------------------------------------------

    async def run_one(self, req: GenerateRequest) -> AsyncGenerator[GenerateOutput, None]:
        """tm.generate (updates of the request's n samples) with metrics per sample; aborts the
        request if the consumer leaves before every sample finished."""
        n = req.sampling_params.n
        # Per sample, created as outputs arrive (`n` is checked by the engine, not before this).
        start = time.perf_counter()
        trackers: dict[int, RequestTracker] = {}
        last: dict[int, GenerateOutput] = {}
        try:
            async for out in self.tm.generate(req):
                last[out.index] = out
                if self.metrics is not None:
                    if out.index not in trackers:
                        trackers[out.index] = self.metrics.tracker(start)
                    trackers[out.index].update(out.completion_tokens)
                yield out
        except EngineError as e:
            if self.prompt_param is None or e.param not in _ENGINE_PROMPT_PARAMS:
                raise
            raise EngineError(e.message, e.status, self.prompt_param) from None
        finally:
            if len(last) < n or not all(o.finished for o in last.values()):
                self.tm.abort(req.rid)
            for index, tracker in trackers.items():
                final = last[index]
                reason = final.finish_reason.type if final.finish_reason else "abort"
                tracker.finish(final.prompt_tokens, final.cached_tokens, reason)

    async def stream_all(
        self, reqs: list[GenerateRequest]
    ) -> AsyncGenerator[tuple[int, GenerateOutput], None]:
        """(choice index, output) updates of all requests as they come; the choices of request
        i are numbered from the n of the requests before it. One request needs no tasks."""
        if len(reqs) == 1:
            async with contextlib.aclosing(self.run_one(reqs[0])) as it:
                async for out in it:
                    yield out.index, out
            return
        first_choice = [0]
        for r in reqs[:-1]:
            first_choice.append(first_choice[-1] + r.sampling_params.n)
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

        async def pump(i: int, req: GenerateRequest) -> None:
            try:
                async with contextlib.aclosing(self.run_one(req)) as it:
                    async for out in it:
                        queue.put_nowait((first_choice[i] + out.index, out))
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
        """The final output of every choice, in order."""
        # Filled as outputs arrive: `n` is checked by the engine, not before this runs.
        finals: dict[int, GenerateOutput] = {}
        async for i, out in self.stream_all(reqs):
            finals[i] = out
        if len(finals) != self.num_choices(reqs):
            raise EngineError("The engine returned no output.", 500)
        return [finals[i] for i in range(len(finals))]

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
