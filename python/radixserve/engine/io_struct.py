"""The internal request and output types shared by every entry point (HTTP, offline Engine).

Every OpenAI or native request becomes one or more GenerateRequest (one per prompt and per n);
the TokenizerManager yields GenerateOutput updates for it, the same objects for streaming and
non-streaming callers.
"""

from __future__ import annotations

import contextvars
from typing import Any, Optional

import msgspec

from radixserve.engine.finish_reason import FinishReason as FinishReason
from radixserve.engine.sampling_params import SamplingParams
from radixserve.engine.session_protocol import SessionParams

# Set (to True) around work that should yield to online requests, e.g. batch API lines:
# every GenerateRequest made while it is set reaches the scheduler as background work.
BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("background", default=False)


class GenerateRequest(msgspec.Struct, kw_only=True):
    """One prompt to complete. Exactly one of `text` and `input_ids` is set."""

    rid: str
    text: Optional[str] = None
    input_ids: Optional[list[int]] = None
    sampling_params: SamplingParams = msgspec.field(default_factory=SamplingParams)
    stream: bool = False
    return_logprob: bool = False
    logprob_start_len: int = -1  # -1: no input-token logprobs
    top_logprobs_num: int = 0
    return_text_in_logprobs: bool = False
    session_params: Optional[SessionParams] = None  # sessions and /extend (engine/session.py)
    # Issue #10: with a reasoning parser, the grammar applies only after the reasoning section
    # ends, i.e. after this text (e.g. "</think>") appears in the output.
    grammar_after: Optional[str] = None
    # Pooling (#8): see engine/pooling_request.py.
    pooling: bool = False
    label_token_ids: Optional[list[int]] = None
    token_type_ids: Optional[list[int]] = None


class TokenLogprob(msgspec.Struct, array_like=True):
    """(logprob, token_id, text or None), SGLang's tuple order."""

    logprob: float
    token_id: int
    text: Optional[str] = None


class GenerateOutput(msgspec.Struct, kw_only=True):
    """The state of one request after an update; `text`/`output_ids` are cumulative.

    The output lists (`output_ids`, `output_*logprobs`) may be shared with later updates of
    the same request and grow with them: this update's part is `[:completion_tokens]`.

    `delta_text`/`delta_ids` hold what this update added (streaming uses them), so a streaming
    and a non-streaming caller read the same object.
    """

    rid: str
    text: str
    output_ids: list[int]
    delta_text: str
    delta_ids: list[int]
    finished: bool
    finish_reason: Optional[FinishReason]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    e2e_latency: float = 0.0
    index: int = 0  # which of the n samples of a request (n > 1: rid is "<rid>-<index>")
    output_token_logprobs: Optional[list[TokenLogprob]] = None
    output_top_logprobs: Optional[list[list[TokenLogprob]]] = None
    input_token_logprobs: Optional[list[TokenLogprob]] = None
    input_top_logprobs: Optional[list[list[TokenLogprob]]] = None
    pooled: Optional[list[float]] = None  # pooling output / score label logprobs (#8)
    # Speculative decoding (verify steps, drafts proposed / accepted); 0 when not speculating.
    spec_verify_ct: int = 0
    spec_draft_tokens: int = 0
    spec_accepted_tokens: int = 0

    def meta_info(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": self.rid,
            "finish_reason": self.finish_reason.to_json() if self.finish_reason else None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "e2e_latency": self.e2e_latency,
        }
        if self.spec_verify_ct:
            meta["spec_verify_ct"] = self.spec_verify_ct
            meta["spec_draft_tokens"] = self.spec_draft_tokens
            meta["spec_accepted_tokens"] = self.spec_accepted_tokens
            meta["spec_accept_rate"] = self.spec_accepted_tokens / max(self.spec_draft_tokens, 1)
        for name in ("output_token_logprobs", "output_top_logprobs",
                     "input_token_logprobs", "input_top_logprobs"):
            value = getattr(self, name)
            if value is not None:
                if name.startswith("output_"):
                    value = value[: self.completion_tokens]
                meta[name] = msgspec.to_builtins(value)
        return meta


class EngineError(Exception):
    """A request could not be served; `status` is the HTTP status an entry point should use."""

    def __init__(self, message: str, status: int = 400, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
