"""SGLang's native POST/PUT /generate: text or input_ids, single or batch, JSON or SSE.

Responses are `{"text", "output_ids", "meta_info"}` (a list for batched input or n > 1); a
stream sends the cumulative state of each request as SGLang does (`index` added for batches).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Optional, Union

from radixserve.engine.io_struct import EngineError, GenerateOutput, GenerateRequest
from radixserve.engine.sampling_params import SamplingParams, parse_sampling_params
from radixserve.engine.session_protocol import SessionParams
from radixserve.entrypoints.serving_common import (
    ServingEngine,
    UnservedFields,
    checked_session,
    encode,
    error_body,
    sse,
    sse_done,
)


class GenerateReqInput(UnservedFields, kw_only=True):
    text: Optional[Union[str, list[str]]] = None
    input_ids: Optional[list[Any]] = None  # list[int] or list[list[int]]
    sampling_params: Optional[Union[dict[str, Any], list[dict[str, Any]]]] = None
    stream: bool = False
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    return_text_in_logprobs: bool = False
    rid: Optional[Union[str, list[str]]] = None
    session_params: Optional[SessionParams] = None  # continue a session (engine/session.py)


def session_params(req: GenerateReqInput, num_prompts: int, n: int) -> Optional[SessionParams]:
    """The checked session_params of a /generate request (one prompt, an open session)."""
    sp = checked_session(req.session_params, num_prompts, n)
    if sp is not None and req.return_logprob and req.logprob_start_len >= 0:
        raise EngineError("Input logprobs are not supported with session_params.", 400,
                          "logprob_start_len")  # fmt: skip
    return sp


def _output(out: GenerateOutput, index: Optional[int] = None) -> dict[str, Any]:
    d: dict[str, Any] = {"text": out.text, "output_ids": out.output_ids[: out.completion_tokens],
                         "meta_info": out.meta_info()}  # fmt: skip
    if index is not None:
        d["index"] = index
    return d


class ServingGenerate(ServingEngine):
    def build(self, req: GenerateReqInput) -> tuple[list[GenerateRequest], bool]:
        """Internal requests (prompt-major, n per prompt) and whether the answer is a list."""
        req.refuse_unserved()
        if (req.text is None) == (req.input_ids is None):
            raise EngineError("Exactly one of text and input_ids must be given.", 400, "text")
        prompts: list[tuple[Optional[str], Optional[list[int]]]]
        if req.text is not None:
            batched = isinstance(req.text, list)
            texts = req.text if isinstance(req.text, list) else [req.text]
            prompts = [(t, None) for t in texts]
        else:
            raw_ids = req.input_ids or []
            batched = bool(raw_ids) and all(isinstance(x, list) for x in raw_ids)
            lists = raw_ids if batched else [raw_ids]
            for p in lists:
                if not p or not all(type(t) is int for t in p):
                    raise EngineError("input_ids must be a non-empty list of token ids or a "
                                      "list of such lists.", 400, "input_ids")  # fmt: skip
            prompts = [(None, list(p)) for p in lists]
        if not prompts:
            raise EngineError("The batch is empty.", 400, "text")
        raw = req.sampling_params
        raw_list = raw if isinstance(raw, list) else [raw] * len(prompts)
        if len(raw_list) != len(prompts):
            raise EngineError(f"sampling_params has {len(raw_list)} entries for "
                              f"{len(prompts)} prompts.", 400, "sampling_params")  # fmt: skip
        rids = [req.rid] if isinstance(req.rid, str) else list(req.rid or [])
        if rids and len(rids) != len(prompts):
            raise EngineError(f"rid has {len(rids)} ids for {len(prompts)} prompts.", 400, "rid")
        out: list[GenerateRequest] = []
        for p, ((text, ids), sp_raw) in enumerate(zip(prompts, raw_list, strict=True)):
            params = self._params(sp_raw)
            reqs = self.expand([(text, ids)], params, params.n,
                               rids[p] if rids else None, req.stream)  # fmt: skip
            for r in reqs:
                r.return_logprob = req.return_logprob
                r.logprob_start_len = req.logprob_start_len
                r.top_logprobs_num = req.top_logprobs_num
                r.return_text_in_logprobs = req.return_text_in_logprobs
                r.session_params = session_params(req, len(prompts), params.n)
            out.extend(reqs)
        return out, batched or self.num_choices(out) > 1

    def _params(self, raw: Optional[dict[str, Any]]) -> SamplingParams:
        """Parsed, not checked: the engine checks them (request_state.prepare_request)."""
        try:
            return parse_sampling_params(raw)
        except ValueError as e:
            raise EngineError(str(e), 400, "sampling_params") from None

    async def create(self, req: GenerateReqInput) -> bytes | AsyncIterator[bytes]:
        reqs, batched = self.build(req)
        if req.stream:
            updates = await self.primed(self.stream_all(reqs))
            return self._stream(updates, batched)
        finals = await self.collect(reqs)
        if batched:
            return encode([_output(o) for o in finals])
        return encode(_output(finals[0]))

    async def _stream(
        self, updates: AsyncIterator[tuple[int, GenerateOutput]], batched: bool
    ) -> AsyncIterator[bytes]:
        try:
            async for i, out in updates:
                yield sse(_output(out, i if batched else None))
        except EngineError as e:
            yield sse(error_body(e.message, e.status, e.param))
        yield sse_done()
