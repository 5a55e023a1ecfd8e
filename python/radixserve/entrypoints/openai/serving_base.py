"""What chat and completions share: request -> SamplingParams -> GenerateRequest(s) -> outputs.

The one place where OpenAI fields become SGLang SamplingParams: the request's value, else the
model's generation_config default, else the OpenAI default. Each prompt and each of `n` choices
is its own GenerateRequest; their outputs are merged here, with metrics observed on the way and
an abort sent for every request whose consumer goes away before it finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Optional

import msgspec

from radixserve.constrained.base import InvalidGrammarError
from radixserve.constrained.xgrammar_backend import build_grammar
from radixserve.engine.io_struct import EngineError, GenerateOutput, GenerateRequest, TokenLogprob
from radixserve.engine.sampling_params import SamplingParams
from radixserve.entrypoints.openai.protocol import (
    ErrorInfo,
    ErrorResponse,
    PromptTokensDetails,
    SamplingFields,
    UsageInfo,
)
from radixserve.metrics import ServerMetrics

MAX_N = 128
MAX_TOP_LOGPROBS = 20
# Sampling values a model's generation_config may set, and OpenAI's defaults for them.
_DEFAULTS: dict[str, float] = {
    "temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0,
}  # fmt: skip
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


class ServingBase:
    def __init__(self, tm: Any, model_name: str, metrics: Optional[ServerMetrics]) -> None:
        self.tm = tm
        self.model_name = model_name
        self.metrics = metrics
        config = tm.model_config
        self.vocab_size: int = int(config.vocab_size)
        self.context_len: int = int(config.context_len)
        gen = getattr(config, "generation_config", None) or {}
        if not isinstance(gen, dict):
            gen = {k: getattr(gen, k) for k in _DEFAULTS if getattr(gen, k, None) is not None}
        self.defaults = {k: gen.get(k, v) for k, v in _DEFAULTS.items()}

    # -- request -> internal ------------------------------------------------------------------

    def sampling_params(self, req: SamplingFields, max_tokens: Optional[int]) -> SamplingParams:
        def pick(name: str) -> Any:
            value = getattr(req, name)
            return self.defaults[name] if value is None else value

        constraint = req.json_schema
        fmt = req.response_format
        if fmt is not None and fmt.type != "text":
            if fmt.type == "json_object":
                constraint = '{"type": "object"}'
            elif fmt.type == "json_schema":
                if not fmt.json_schema or not isinstance(fmt.json_schema.get("schema"), dict):
                    raise EngineError("response_format.json_schema.schema must be a JSON "
                                      "schema object.", 400, "response_format")  # fmt: skip
                constraint = msgspec.json.encode(fmt.json_schema["schema"]).decode()
                try:
                    build_grammar(("json_schema", constraint))
                except InvalidGrammarError as e:
                    raise EngineError(f"response_format: {e}", 400, "response_format") from None
            else:
                raise EngineError(f"response_format.type {fmt.type!r} is not supported.", 400,
                                  "response_format")  # fmt: skip
        if not 1 <= req.n <= MAX_N:
            raise EngineError(f"n must be in [1, {MAX_N}], got {req.n}.", 400, "n")
        if max_tokens is not None and max_tokens < 1:
            raise EngineError(
                f"max_tokens must be at least 1, got {max_tokens}.", 400, "max_tokens"
            )
        params = SamplingParams(
            max_new_tokens=max_tokens,
            min_new_tokens=req.min_tokens,
            stop=req.stop or None,
            stop_token_ids=req.stop_token_ids,
            temperature=pick("temperature"),
            top_p=pick("top_p"),
            top_k=pick("top_k"),
            min_p=pick("min_p"),
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            repetition_penalty=pick("repetition_penalty"),
            ignore_eos=req.ignore_eos,
            skip_special_tokens=req.skip_special_tokens,
            spaces_between_special_tokens=req.spaces_between_special_tokens,
            no_stop_trim=req.no_stop_trim,
            json_schema=constraint,
            regex=req.regex,
            ebnf=req.ebnf,
            logit_bias=req.logit_bias,
            sampling_seed=req.seed,
        )
        try:
            params.verify(self.vocab_size)
        except ValueError as e:
            raise field_error(e) from None
        return params

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

    # -- response pieces ------------------------------------------------------------------------

    @staticmethod
    def usage(finals: Sequence[GenerateOutput], n: int) -> UsageInfo:
        """The prompt counts once per prompt (not per choice), as OpenAI does."""
        prompt = sum(o.prompt_tokens for o in finals[::n])
        cached = sum(o.cached_tokens for o in finals[::n])
        completion = sum(o.completion_tokens for o in finals)
        return UsageInfo(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        )  # fmt: skip

    def token_text(self, lp: TokenLogprob) -> str:
        if lp.text is not None:
            return lp.text
        return str(self.tm.tokenizer.decode([lp.token_id]))
