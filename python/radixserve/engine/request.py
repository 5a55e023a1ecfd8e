"""Req: the scheduler's state of one request (tokens, KV ownership, finish checks)."""

from __future__ import annotations

import time
from typing import Any, Optional

from radixserve.engine.finish_reason import FinishReason
from radixserve.engine.ipc import TokenizedGenerateReq
from radixserve.engine.speculative.policy import AcceptanceEstimate


class Req:
    """One request inside the scheduler.

    KV bookkeeping: the request's row in req_to_token holds `kv_len` slots for
    `fill_ids[:kv_len]`. The first `prefix_len` of them belong to the radix tree (the node
    `last_node` is locked while the request runs); the rest were allocated for this request.
    Each step feeds `fill_ids[kv_len : kv_len + extend_len]`; a decode is an extend of one.
    """

    def __init__(self, msg: TokenizedGenerateReq, eos_token_ids: list[int], context_len: int):
        self.rid = msg.rid
        self.origin_input_ids = list(msg.input_ids)
        self.output_ids: list[int] = []
        self.params = msg.sampling_params
        self.max_new_tokens = msg.max_new_tokens
        self.min_new_tokens = msg.sampling_params.min_new_tokens
        self.seed = msg.seed
        self.background = msg.background
        self.stream = msg.stream
        self.stream_interval = max(1, msg.stream_interval)
        self.return_logprob = msg.return_logprob
        self.top_logprobs_num = msg.top_logprobs_num
        # Input logprobs: prompt positions input_lp_from.. get the logprob of their token given
        # the tokens before (position 0 has none); None when not requested.
        self.input_lp_from: Optional[int] = (
            max(msg.logprob_start_len, 1)
            if msg.return_logprob and msg.logprob_start_len >= 0
            else None
        )
        self.input_logprobs: list[float] = []
        self.input_top_ids: list[list[int]] = []
        self.input_top_logprobs: list[list[float]] = []
        self.input_lp_sent = False
        self.context_len = context_len
        stop_ids = set(msg.sampling_params.stop_token_ids or [])
        if not msg.sampling_params.ignore_eos:
            stop_ids.update(eos_token_ids)
        self.stop_token_ids = stop_ids
        self.stop_strs = msg.sampling_params.stop_strings()
        # Enough tokens to hold the longest stop string even at one byte per token.
        self.stop_window = max((len(s.encode()) for s in self.stop_strs), default=0) + 2

        # KV state (see the class docstring).
        self.req_pool_idx: Optional[int] = None
        self.kv_len = 0
        self.prefix_len = 0
        self.last_node: Any = None
        self.extend_len = 0  # tokens fed in the current step
        self.cached_tokens = 0  # prefix-cache hit of the first admission (reported)
        self.admitted_once = False
        self.num_retractions = 0
        # Speculative decoding (engine/speculative/): this step's draft tokens, and totals.
        self.draft_ids: list[int] = []
        self.spec_verify_ct = 0
        self.spec_draft_tokens = 0
        self.spec_accepted_tokens = 0
        self.spec_estimate: Optional[AcceptanceEstimate] = None  # adaptive drafting's rate

        self.grammar: Any = None  # constrained/: the GrammarMatcher of a constrained request
        self.grammar_after = msg.grammar_after  # the grammar waits for this text (reasoning end)
        self.finish_reason: Optional[FinishReason] = None
        self.sent_len = 0  # output tokens already sent to the TokenizerManager
        self.logprobs: list[float] = []
        self.top_ids: list[list[int]] = []
        self.top_logprobs: list[list[float]] = []
        self.arrival = time.monotonic()
        # Pooling (#8): see engine/pooling_step.py.
        self.pooling = msg.pooling
        self.label_token_ids = msg.label_token_ids
        self.token_type_ids = msg.token_type_ids
        self.pooled: Optional[list[float]] = None

    @property
    def fill_ids(self) -> list[int]:
        return self.origin_input_ids + self.output_ids

    def tokens(self, start: int, n: int) -> list[int]:
        """fill_ids[start : start + n] without building fill_ids (a decode reads one token)."""
        p = len(self.origin_input_ids)
        if start >= p:
            out = self.output_ids[start - p : start - p + n]
        else:
            out = (self.origin_input_ids[start : start + n] + self.output_ids)[:n]
        if len(out) < n and self.draft_ids:  # a speculative step feeds its drafts after them
            out = out + self.draft_ids[: n - len(out)]
        return out

    def input_lp_positions(self) -> tuple[int, int]:
        """[lo, hi): the positions whose logits the input logprobs still need in this step's
        tokens fill_ids[kv_len : kv_len + extend_len] (logits at p score prompt token p + 1)."""
        nxt = self.next_input_lp_position()
        if nxt is None:
            return 0, 0
        lo = max(self.kv_len, nxt)
        hi = min(self.kv_len + self.extend_len, len(self.origin_input_ids) - 1)
        return lo, max(lo, hi)

    def next_input_lp_position(self) -> Optional[int]:
        """The first position whose logits are still missing for the input logprobs (None when
        none are wanted or all are collected). The KV of this position and of everything after
        it must be computed, not taken from the prefix cache."""
        if self.input_lp_from is None:
            return None
        nxt = self.input_lp_from - 1 + len(self.input_logprobs)
        return nxt if nxt < len(self.origin_input_ids) - 1 else None

    @property
    def seq_len(self) -> int:
        return len(self.origin_input_ids) + len(self.output_ids)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def remaining_new_tokens(self) -> int:
        return max(0, self.max_new_tokens - len(self.output_ids))

    def check_finished(self, tokenizer: Any) -> None:
        """Set finish_reason after a token was appended (eos/stop ids, stop strings, lengths)."""
        if self.finished:
            return
        n = len(self.output_ids)
        last = self.output_ids[-1]
        if n >= self.min_new_tokens:
            if last in self.stop_token_ids:
                self.finish_reason = FinishReason(type="stop", matched=last)
                return
            if self.stop_strs:
                tail = tokenizer.decode(
                    self.output_ids[-self.stop_window :],
                    skip_special_tokens=self.params.skip_special_tokens,
                )
                for s in self.stop_strs:
                    if s in tail:
                        self.finish_reason = FinishReason(type="stop", matched=s)
                        return
        if n >= self.max_new_tokens:
            self.finish_reason = FinishReason(type="length", length=n)
        elif self.seq_len >= self.context_len:
            self.finish_reason = FinishReason(type="length", length=n)

    def reset_for_retract(self) -> None:
        """Forget KV state; the request is recomputed later from prompt + output so far."""
        self.req_pool_idx = None
        self.kv_len = 0
        self.prefix_len = 0
        self.last_node = None
        self.extend_len = 0
        self.num_retractions += 1
