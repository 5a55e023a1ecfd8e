"""The scheduler's side of constrained decoding: compile, mask, accept.

- add(req): a constrained request waits here (not in the batch) while its grammar compiles on
  the cache's thread; ready() hands it to the waiting queue with a fresh matcher.
- apply(batch, info): fill the packed token bitmasks of all constrained rows in one backend
  call into a reused buffer (other rows allow everything) and hand it to the sampler as
  info.token_bitmask; the native sampler masks only the constrained rows, after the penalties
  and the bias and before temperature / top-k / top-p. A batch without constrained rows gets
  no bitmask at all.
- accept(req, token): advance the matcher after sampling; the stop token is allowed only where
  the grammar can end, and a terminated grammar finishes the request.
- after_sample(req, tokenizer): jump-forward (constrained/jump_forward.py) when enabled.

Retraction needs nothing: a retracted request keeps its output tokens (it is recomputed from
prompt + output), so its matcher is already at the right place.
"""

from __future__ import annotations

import concurrent.futures
import logging
from concurrent.futures import Future
from typing import Any, Optional

import torch

from radixserve.constrained.base import GrammarBackend, LazyGrammarBackend, constraint_key
from radixserve.constrained.grammar_cache import GrammarCache
from radixserve.constrained.jump_forward import jump_forward
from radixserve.engine.finish_reason import FinishReason
from radixserve.layers.sampling_info import SamplingBatchInfo

logger = logging.getLogger("radixserve.grammar")


def make_backend(name: str, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> Optional[GrammarBackend]:
    if name == "none":
        return None
    if name == "xgrammar":
        from radixserve.constrained.xgrammar_backend import XGrammarBackend

        return LazyGrammarBackend(
            name, lambda: XGrammarBackend(tokenizer, vocab_size, stop_ids)
        )
    raise ValueError(f"unknown grammar backend {name!r}")


class GrammarManager:
    def __init__(self, backend: GrammarBackend, cache_size: int, jump_forward: bool = False) -> None:
        self.backend = backend
        self.cache = GrammarCache(backend, cache_size)
        self.pending: list[tuple[Any, Future[Any]]] = []  # (Req, compile future)
        self.jump_forward = jump_forward
        self._bitmask = torch.empty(0, dtype=torch.int32)  # grown on demand, reused each step

    @staticmethod
    def is_constrained(req: Any) -> bool:
        return constraint_key(req.params) is not None

    def add(self, req: Any) -> None:
        key = constraint_key(req.params)
        assert key is not None
        self.pending.append((req, self.cache.get(key)))

    def remove(self, rid: str) -> Optional[Any]:
        for i, (req, _) in enumerate(self.pending):
            if req.rid == rid:
                del self.pending[i]
                return req
        return None

    def ready(self, block: bool) -> tuple[list[Any], list[tuple[Any, str]]]:
        """(requests whose matcher is ready, (request, error) for failed compiles). With block,
        wait a little for the first compile to finish (the scheduler has nothing else to do)."""
        if block and self.pending:
            concurrent.futures.wait(
                [f for _, f in self.pending], timeout=0.05,
                return_when=concurrent.futures.FIRST_COMPLETED,
            )  # fmt: skip
        ok, failed, still = [], [], []
        for req, fut in self.pending:
            if not fut.done():
                still.append((req, fut))
                continue
            err = fut.exception()
            if err is not None:
                failed.append((req, str(err)))
                continue
            req.grammar = self.backend.matcher(fut.result())
            ok.append(req)
        self.pending = still
        return ok, failed

    def apply(self, batch: list[Any], info: SamplingBatchInfo, vocab_size: int) -> None:
        rows = [i for i, r in enumerate(batch) if r.grammar is not None
                and r.grammar_after is None and not r.grammar.is_terminated()]  # fmt: skip
        if not rows:
            return
        words = (vocab_size + 31) // 32
        if self._bitmask.shape[0] < len(batch) or self._bitmask.shape[1] != words:
            self._bitmask = torch.empty(max(len(batch), 2 * self._bitmask.shape[0]), words,
                                        dtype=torch.int32)  # fmt: skip
        bitmask = self._bitmask[: len(batch)]
        bitmask.fill_(-1)  # free rows allow every token (the sampler skips them)
        self.backend.fill_bitmasks([batch[i].grammar for i in rows], bitmask, rows)
        info.token_bitmask = bitmask

    def after_sample(self, req: Any, tokenizer: Any) -> int:
        """Once a sampled token is accepted and checked: jump over forced text (when enabled;
        not with logprobs, which forced tokens would not have). Returns the tokens gained."""
        m = req.grammar
        if (self.jump_forward and m is not None and req.grammar_after is None
                and not req.finished and not req.return_logprob and not m.is_terminated()):
            return jump_forward(req, tokenizer)  # fmt: skip
        return 0

    @staticmethod
    def accept(req: Any, token: int, tokenizer: Any) -> None:
        m = req.grammar
        if m is None or m.is_terminated():
            return
        if req.grammar_after is not None:
            # Still reasoning: free tokens until the end marker has been written.
            window = len(req.grammar_after.encode()) + 2
            if req.grammar_after in tokenizer.decode(req.output_ids[-window:]):
                req.grammar_after = None
            return
        if not m.accept_token(token):
            # Cannot happen with the mask applied; kept as a guard against backend drift.
            logger.warning("grammar rejected token %d of %s", token, req.rid)
            req.finish_reason = FinishReason(type="abort", message="the grammar rejected a token")
        elif m.is_terminated() and req.finish_reason is None:
            req.finish_reason = FinishReason(type="stop", matched=token)
