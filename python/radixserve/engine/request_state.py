"""TokenizerManager helpers: request validation and the per-request output state.

`prepare_request` turns a GenerateRequest into the scheduler messages (n of them for n > 1),
raising EngineError(400) with a clear message for bad input. `ReqState.apply` turns the
scheduler's token updates into cumulative GenerateOutput objects: incremental text, text held
back while it may be the start of a stop string, trimmed at the matched stop string.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from radixserve.args import ServerArgs
from radixserve.constrained.base import constraint_key
from radixserve.engine import ipc
from radixserve.engine.detokenizer import IncrementalDetokenizer, held_back_for_stop
from radixserve.engine.io_struct import (
    BACKGROUND,
    EngineError,
    GenerateOutput,
    GenerateRequest,
    TokenLogprob,
)
from radixserve.engine.pooling_request import prepare_pooling_request
from radixserve.engine.sampling_params import SamplingParams
from radixserve.models.tokenizer import encode_text


class ModelConfigView:
    """What the caller's process knows of the model (sent by the scheduler when ready)."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.raw: dict[str, Any] = dict(info.get("model_config", {}))
        self.vocab_size: int = int(info["vocab_size"])
        self.context_len: int = int(info["context_len"])
        self.eos_token_ids: list[int] = list(info.get("eos_token_ids", []))
        self.max_total_tokens: int = int(info["max_total_tokens"])
        self.generation_config: dict[str, Any] | None = None  # no preferred sampling defaults

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["raw"][name]
        except KeyError:
            raise AttributeError(name) from None


def field_error(e: ValueError) -> EngineError:
    """A ValueError from SamplingParams.verify as a 400 naming its field (its first word)."""
    message = str(e)
    first = message.split(" ", 1)[0].rstrip(":")
    param = first if first in SamplingParams.__struct_fields__ else "sampling_params"
    return EngineError(message, 400, param)


def _low64_signed(value: int) -> int:
    """The int64 with the same low 64 bits (two's complement)."""
    return ((value + 2**63) % 2**64) - 2**63


def prepare_request(
    req: GenerateRequest, tokenizer: Any, cfg: ModelConfigView, args: ServerArgs
) -> list[ipc.TokenizedGenerateReq]:
    if (req.text is None) == (req.input_ids is None):
        raise EngineError("Exactly one of text and input_ids must be given.", 400, "text")
    if req.input_ids is not None:
        ids = [int(t) for t in req.input_ids]
        bad = [t for t in ids if not 0 <= t < cfg.vocab_size]
        if bad:
            raise EngineError(
                f"input_ids: {bad[0]} is not a token id (vocabulary size {cfg.vocab_size}).",
                400,
                "input_ids",
            )
    else:
        assert req.text is not None
        ids = encode_text(tokenizer, req.text)
    if not ids:
        raise EngineError("The prompt is empty.", 400, "prompt")
    if req.pooling or not getattr(cfg, "is_generation", True):
        return [prepare_pooling_request(req, ids, cfg)]  # #8
    params = req.sampling_params
    try:
        params.verify(cfg.vocab_size)
    except ValueError as e:
        raise field_error(e) from None
    if args.grammar_backend == "none" and constraint_key(params) is not None:
        kind = constraint_key(params)[0]  # type: ignore[index]
        raise EngineError(f"{kind}: constrained decoding is disabled (--grammar-backend none).",
                          400, kind)  # fmt: skip
    n_prompt = len(ids)
    if n_prompt >= cfg.context_len:
        raise EngineError(
            f"The input ({n_prompt} tokens) is longer than the model's context length "
            f"({cfg.context_len} tokens).",
            400,
            "prompt",
        )
    max_new = params.max_new_tokens
    if max_new is None:
        max_new = cfg.context_len - n_prompt
    elif n_prompt + max_new > cfg.context_len:
        raise EngineError(
            f"Requested {n_prompt + max_new} tokens ({n_prompt} in the prompt, {max_new} to "
            f"generate), more than the model's context length ({cfg.context_len} tokens).",
            400,
            "max_tokens",
        )
    if n_prompt + 1 > cfg.max_total_tokens:
        raise EngineError(
            f"The input ({n_prompt} tokens) does not fit in the KV cache "
            f"({cfg.max_total_tokens} tokens).",
            400,
            "prompt",
        )
    if req.logprob_start_len < -1:
        raise EngineError(
            f"logprob_start_len must be -1 (no input logprobs) or at least 0, got "
            f"{req.logprob_start_len}.",
            400,
            "logprob_start_len",
        )
    if not 0 <= req.top_logprobs_num <= cfg.vocab_size:
        raise EngineError(f"top_logprobs_num must be in [0, {cfg.vocab_size}] (the vocabulary "
                          f"size), got {req.top_logprobs_num}.", 400, "top_logprobs_num")  # fmt: skip
    if req.session_params is not None and params.n != 1:
        raise EngineError("n must be 1 for a request that continues a session.", 400, "n")
    interval = params.stream_interval or args.stream_interval
    base_seed = params.sampling_seed if params.sampling_seed is not None else None
    msgs = []
    for i in range(params.n):
        rid = req.rid if params.n == 1 else f"{req.rid}-{i}"
        # The sampler draws from the seed's low 64 bits; the scheduler keeps it in an int64.
        seed = _low64_signed(base_seed + i) if base_seed is not None else random.getrandbits(62)
        msgs.append(
            ipc.TokenizedGenerateReq(
                rid=rid,
                input_ids=ids,
                sampling_params=params,
                max_new_tokens=max_new,
                seed=seed,
                stream=req.stream,
                stream_interval=interval,
                return_logprob=req.return_logprob,
                top_logprobs_num=req.top_logprobs_num if req.return_logprob else 0,
                logprob_start_len=req.logprob_start_len if req.return_logprob else -1,
                background=BACKGROUND.get(),
                session_params=req.session_params,
                grammar_after=req.grammar_after,
                label_token_ids=req.label_token_ids,
            )
        )
    return msgs


class ReqState:
    """Output state of one scheduler request in the caller's process."""

    def __init__(
        self,
        msg: ipc.TokenizedGenerateReq,
        req: GenerateRequest,
        index: int,
        queue: asyncio.Queue[Any],
        tokenizer: Any,
    ) -> None:
        self.rid = msg.rid
        self.parent_rid = req.rid
        self.index = index
        self.queue = queue
        self.tokenizer = tokenizer
        self.params = msg.sampling_params
        self.stops = self.params.stop_strings()
        self.text_in_logprobs = req.return_text_in_logprobs
        self.detok = IncrementalDetokenizer(
            tokenizer,
            msg.input_ids,
            self.params.skip_special_tokens,
            self.params.spaces_between_special_tokens,
        )
        self.emitted = ""
        self.start = time.perf_counter()
        self.logprobs: list[TokenLogprob] | None = [] if msg.return_logprob else None
        self.top: list[list[TokenLogprob]] | None = (
            [] if msg.return_logprob and msg.top_logprobs_num > 0 else None
        )
        # Input logprobs cover prompt positions max(logprob_start_len, 1).. (position 0 has none).
        wants_input = msg.return_logprob and msg.logprob_start_len >= 0
        self.input_ids = msg.input_ids
        self.input_from = max(msg.logprob_start_len, 1)
        self.in_lps: list[TokenLogprob] | None = [] if wants_input else None
        self.in_top: list[list[TokenLogprob]] | None = (
            [] if wants_input and msg.top_logprobs_num > 0 else None
        )

    def _lp(self, value: float, token: int) -> TokenLogprob:
        text = self.tokenizer.decode([token]) if self.text_in_logprobs else None
        return TokenLogprob(value, token, text)

    def apply(self, up: ipc.ReqUpdate) -> GenerateOutput:
        self.detok.add(up.new_ids)
        reason = up.finish_reason
        if up.finished:
            self.detok.flush()
        full = self.detok.text
        if reason is not None and isinstance(reason.matched, str) and not self.params.no_stop_trim:
            cut = full.find(reason.matched)
            if cut >= 0:
                full = full[:cut]
        visible = full
        if not up.finished and self.stops:
            visible = full[: len(full) - held_back_for_stop(full, self.stops)]
        delta = visible[len(self.emitted) :] if visible.startswith(self.emitted) else ""
        if len(visible) >= len(self.emitted):
            self.emitted = visible
        if self.logprobs is not None and up.logprobs is not None:
            self.logprobs.extend(
                self._lp(v, t) for v, t in zip(up.logprobs, up.new_ids, strict=False)
            )
        if self.top is not None and up.top_ids is not None and up.top_logprobs is not None:
            for ids, vals in zip(up.top_ids, up.top_logprobs, strict=False):
                self.top.append([self._lp(v, t) for v, t in zip(vals, ids, strict=False)])
        if self.in_lps is not None and up.input_logprobs is not None:
            ids = self.input_ids[self.input_from :]
            self.in_lps.extend(self._lp(v, t) for v, t in zip(up.input_logprobs, ids, strict=False))
        if self.in_top is not None and up.input_top_ids is not None and up.input_top_logprobs:
            for ids, vals in zip(up.input_top_ids, up.input_top_logprobs, strict=False):
                self.in_top.append([self._lp(v, t) for v, t in zip(vals, ids, strict=False)])
        # Lists are passed live, not copied (a copy per update is quadratic over a long
        # generation): they only grow, and an output's own prefix is [:completion_tokens].
        out_ids = self.detok.output_ids
        return GenerateOutput(
            rid=self.rid,
            index=self.index,
            text=self.emitted if not up.finished else full,
            output_ids=out_ids,
            delta_text=delta,
            delta_ids=list(up.new_ids),
            finished=up.finished,
            finish_reason=reason,
            prompt_tokens=up.prompt_tokens,
            completion_tokens=len(out_ids),
            cached_tokens=up.cached_tokens,
            e2e_latency=time.perf_counter() - self.start,
            output_token_logprobs=self.logprobs,
            output_top_logprobs=self.top,
            input_token_logprobs=self.in_lps,
            input_top_logprobs=self.in_top,
            pooled=up.pooled,
            spec_verify_ct=up.spec_verify_ct,
            spec_draft_tokens=up.spec_draft_tokens,
            spec_accepted_tokens=up.spec_accepted_tokens,
        )
