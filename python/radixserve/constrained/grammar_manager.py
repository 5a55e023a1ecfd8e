"""The scheduler's side of constrained decoding: compile, mask, accept.

- add(req): a constrained request waits here (not in the batch) while its grammar compiles on
  the cache's thread; ready() hands it to the waiting queue with a fresh matcher.
- apply(batch, info): for the constrained rows only, fill the bitmask and turn it into -inf
  entries of the batch's logit_bias, which the sampler adds after the penalties and before
  temperature / top-k / top-p. A batch without constrained rows is left untouched.
- accept(req, token): advance the matcher after sampling; the stop token is allowed only where
  the grammar can end, and a terminated grammar finishes the request.

Retraction needs nothing: a retracted request keeps its output tokens (it is recomputed from
prompt + output), so its matcher is already at the right place.
"""

from __future__ import annotations

import concurrent.futures
import logging
from concurrent.futures import Future
from typing import Any, Optional

import torch

from radixserve.constrained.base import GrammarBackend, constraint_key
from radixserve.constrained.grammar_cache import GrammarCache
from radixserve.engine.finish_reason import FinishReason
from radixserve.layers.sampling_info import SamplingBatchInfo

logger = logging.getLogger("radixserve.grammar")


def make_backend(name: str, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> Optional[GrammarBackend]:
    if name == "none":
        return None
    if name == "xgrammar":
        from radixserve.constrained.xgrammar_backend import XGrammarBackend

        return XGrammarBackend(tokenizer, vocab_size, stop_ids)
    raise ValueError(f"unknown grammar backend {name!r}")


class GrammarManager:
    def __init__(self, backend: GrammarBackend, cache_size: int) -> None:
        self.backend = backend
        self.cache = GrammarCache(backend, cache_size)
        self.pending: list[tuple[Any, Future[Any]]] = []  # (Req, compile future)

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
        bitmask = self.backend.allocate_bitmask(len(batch))
        for i in rows:
            batch[i].grammar.fill_bitmask(bitmask, i)
        if info.logit_bias is None:
            info.logit_bias = torch.zeros(len(batch), vocab_size, dtype=torch.float32)
        self.backend.apply_bitmask(info.logit_bias, bitmask, rows)

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
