"""POST /v1/completions: prompt(s) as text or token ids -> choices (JSON or SSE)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Optional

from radixserve.engine.io_struct import EngineError, GenerateOutput, TokenLogprob
from radixserve.entrypoints.openai.protocol import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    UsageInfo,
)
from radixserve.entrypoints.openai.serving_base import MAX_TOP_LOGPROBS, ServingBase
from radixserve.entrypoints.serving_common import (
    encode,
    error_body,
    finish_reason,
    new_id,
    sse,
    sse_done,
)
from radixserve.models.tokenizer import encode_text

Prompt = tuple[Optional[str], Optional[list[int]]]


def _is_ids(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(type(t) is int for t in x)


class ServingCompletions(ServingBase):
    prompt_param = "prompt"

    def prompts(self, raw: str | list[Any]) -> list[Prompt]:
        """str | list[str] | list[int] | list[list[int]] -> (text, ids) pairs."""
        bad = EngineError("prompt must be a string, a list of strings, a list of token ids or "
                          "a list of token-id lists, and not empty.", 400, "prompt")  # fmt: skip
        if isinstance(raw, str):
            return [(raw, None)]
        if not raw:
            raise bad
        if all(isinstance(p, str) for p in raw):
            return [(p, None) for p in raw]
        if _is_ids(raw):
            return [(None, list(raw))]
        if all(_is_ids(p) for p in raw):
            return [(None, list(p)) for p in raw]
        raise bad

    def build(self, req: CompletionRequest) -> tuple[list[Any], list[str], list[int]]:
        """Requests, echoed prompt texts and the first prompt token of each choice (echo)."""
        req.refuse_unserved()
        if req.suffix:
            raise EngineError("suffix is not supported: this model has no fill-in-the-middle "
                              "mode.", 400, "suffix")  # fmt: skip
        if req.best_of is not None and req.best_of != req.n:
            raise EngineError("best_of other than n is not supported.", 400, "best_of")
        if req.logprobs is not None and not 0 <= req.logprobs <= MAX_TOP_LOGPROBS:
            raise EngineError(f"logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {req.logprobs}.",
                              400, "logprobs")  # fmt: skip
        prompts = self.prompts(req.prompt)
        params = self.sampling_params(req, req.max_tokens)
        want_lp = req.logprobs is not None
        # echo + logprobs: the prompt tokens' logprobs come first (OpenAI), from the engine's
        # input logprobs (positions 1..; the first token has none).
        reqs = self.expand(
            prompts, params, req.n, req.rid, req.stream, logprobs=want_lp,
            top_logprobs=req.logprobs or 0, logprob_start_len=0 if req.echo and want_lp else -1,
        )  # fmt: skip
        echoes: list[str] = []  # per prompt: choice i echoes prompt i // n
        firsts: list[int] = []
        if req.echo:
            for text, ids in prompts:
                echo = text if text is not None else str(self.tm.tokenizer.decode(ids))
                echoes.append(echo)
                if want_lp:
                    first = ids if ids is not None else encode_text(self.tm.tokenizer, echo)
                    firsts.append(int(first[0]) if first else 0)
        return reqs, echoes, firsts

    async def create(self, req: CompletionRequest) -> bytes | AsyncIterator[bytes]:
        await self.grammar_ready(req)
        reqs, echoes, firsts = self.build(req)
        if req.stream:
            updates = await self.primed(self.stream_all(reqs))
            return self._stream(req, updates, self.num_choices(reqs), echoes, firsts)
        finals = await self.collect(reqs)
        choices = []
        for i, out in enumerate(finals):
            reason, matched = finish_reason(out)
            text = (echoes[i // req.n] if echoes else "") + out.text
            logprobs = None
            if req.logprobs is not None:
                logprobs = self._logprobs(out, 0, len(echoes[i // req.n]) if echoes else 0)
                if echoes:
                    logprobs = self._with_prompt(out, firsts[i // req.n], logprobs)
            choices.append(CompletionChoice(index=i, text=text, logprobs=logprobs,
                                            finish_reason=reason, matched_stop=matched))  # fmt: skip
        resp = CompletionResponse(id=new_id("cmpl-"), model=self.model_name, choices=choices,
                                  usage=self.usage(finals, req.n))  # fmt: skip
        return encode(resp)

    async def _stream(
        self, req: CompletionRequest, updates: AsyncIterator[tuple[int, GenerateOutput]],
        num_choices: int, echoes: list[str], firsts: list[int],
    ) -> AsyncIterator[bytes]:  # fmt: skip
        rid, created, model = new_id("cmpl-"), int(time.time()), self.model_name
        finals: list[Optional[GenerateOutput]] = [None] * num_choices
        sent_lp = [0] * num_choices
        echoed = [not echoes] * num_choices

        def chunk(choice: CompletionChoice, usage: Optional[UsageInfo]) -> bytes:
            return sse(CompletionResponse(id=rid, created=created, model=model, choices=[choice],
                                          usage=usage))  # fmt: skip

        try:
            async for i, out in updates:
                finals[i] = out
                reason, matched = finish_reason(out) if out.finished else (None, None)
                text = out.delta_text
                echo_now = not echoed[i]
                if echo_now:
                    text, echoed[i] = echoes[i // req.n] + text, True
                if not text and reason is None:
                    continue
                logprobs = None
                if req.logprobs is not None:
                    base = (len(echoes[i // req.n]) if echoes else 0) + len(out.text) - len(out.delta_text)
                    logprobs = self._logprobs(out, sent_lp[i], base)
                    sent_lp[i] = out.completion_tokens
                    if echo_now and echoes:
                        logprobs = self._with_prompt(out, firsts[i // req.n], logprobs)
                yield chunk(CompletionChoice(index=i, text=text, logprobs=logprobs,
                                             finish_reason=reason, matched_stop=matched),
                            self.chunk_usage(req, out))  # fmt: skip
            if req.stream_options is not None and req.stream_options.include_usage:
                done = [f for f in finals if f is not None]
                yield sse(CompletionResponse(id=rid, created=created, model=model, choices=[],
                                             usage=self.usage(done, req.n)))  # fmt: skip
        except EngineError as e:
            yield sse(error_body(e.message, e.status, e.param))
        yield sse_done()

    def _with_prompt(
        self, out: GenerateOutput, first: int, gen: CompletionLogprobs
    ) -> CompletionLogprobs:
        """echo: the prompt tokens' logprobs (None for the first token), then `gen`."""
        result = CompletionLogprobs(
            tokens=[self.token_text(TokenLogprob(0.0, first))], token_logprobs=[None],
            top_logprobs=[None], text_offset=[0],
        )  # fmt: skip
        offset = len(result.tokens[0])
        tops = out.input_top_logprobs or []
        for k, lp in enumerate(out.input_token_logprobs or []):
            text = self.token_text(lp)
            result.tokens.append(text)
            result.token_logprobs.append(lp.logprob)
            top = tops[k] if k < len(tops) else None
            result.top_logprobs.append(
                None if top is None else {self.token_text(x): x.logprob for x in top}
            )
            result.text_offset.append(offset)
            offset += len(text)
        result.tokens += gen.tokens
        result.token_logprobs += gen.token_logprobs
        result.top_logprobs += gen.top_logprobs
        result.text_offset += gen.text_offset
        return result

    def _logprobs(self, out: GenerateOutput, start: int, offset: int) -> CompletionLogprobs:
        """Logprobs of the generated tokens from `start` on; with echo, offsets count the
        echoed text (the prompt's own logprobs are added by _with_prompt)."""
        result = CompletionLogprobs()
        tokens = (out.output_token_logprobs or [])[start : out.completion_tokens]
        tops = (out.output_top_logprobs or [])[start:]
        for k, lp in enumerate(tokens):
            text = self.token_text(lp)
            result.tokens.append(text)
            result.token_logprobs.append(lp.logprob)
            top = tops[k] if k < len(tops) else None
            result.top_logprobs.append(
                None if top is None else {self.token_text(x): x.logprob for x in top}
            )
            result.text_offset.append(offset)
            offset += len(text)
        return result
