"""/v1/score (SGLang): for each item, the probabilities of `label_token_ids` as the next token
after query + item (item + query with item_first), from a generative model.

Sequences are query ids + item ids (the item tokenised without special tokens), so every item
shares the query's tokens exactly. The first item runs alone and its sequence enters the radix
cache; the others then run together and reuse the cached query: N items cost about one query
prefill plus N item prefills. apply_softmax: softmax over the label logits; otherwise each
label's probability under the full next-token distribution.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.pooling.inputs import as_prompt_list, check_ids, tokenize
from radixserve.entrypoints.pooling.protocol import ScoreRequest
from radixserve.entrypoints.pooling.runner import Timer, run_all, score_request
from radixserve.entrypoints.pooling.serving_pooling import ServingPooling
from radixserve.entrypoints.serving_common import encode

NOT_GENERATIVE = ("/v1/score reads a generative model's next-token distribution; this server "
                  "serves an embedding/classification model.")  # fmt: skip


def label_probs(logprobs: list[float], apply_softmax: bool) -> list[float]:
    if not apply_softmax:
        return [math.exp(v) for v in logprobs]
    top = max(logprobs)
    exps = [math.exp(v - top) for v in logprobs]
    total = sum(exps)
    return [e / total for e in exps]


class ServingScore(ServingPooling):
    def _ids(self, value: str | list[int], param: str, special: bool) -> list[int]:
        vocab = int(self.cfg.vocab_size)
        if isinstance(value, str):
            value = tokenize(self.tm.tokenizer, value, param, add_special_tokens=special)
        return check_ids(value, vocab, 1 << 62, param)  # the total is checked below

    def _query_ids(self, query: Any, item_first: bool) -> list[int]:
        if isinstance(query, str):
            return self._ids(query, "query", not item_first)
        if isinstance(query, list) and query and all(
            isinstance(t, int) and not isinstance(t, bool) for t in query
        ):
            return self._ids(list(query), "query", False)
        raise EngineError("'query' must be a non-empty string or list of token ids.", 400,
                          "query")  # fmt: skip

    def _labels(self, labels: Optional[list[int]]) -> list[int]:
        if not labels:
            raise EngineError("'label_token_ids' must be a non-empty list of token ids.", 400,
                              "label_token_ids")  # fmt: skip
        vocab = int(self.cfg.vocab_size)
        bad = next((t for t in labels if not 0 <= t < vocab), None)
        if bad is not None:
            raise EngineError(f"label_token_ids: {bad} is not a token id (vocabulary size "
                              f"{vocab}).", 400, "label_token_ids")  # fmt: skip
        return list(labels)

    async def score(self, req: ScoreRequest) -> bytes:
        timer = Timer()
        if not self._flag("is_generation", True):
            raise EngineError(NOT_GENERATIVE, 400, "model")
        labels = self._labels(req.label_token_ids)
        query = self._query_ids(req.query, req.item_first)
        items, _ = as_prompt_list(req.items, "items")
        ctx = int(self.cfg.context_len)
        seqs = []
        for item in items:
            ids = self._ids(item, "items", req.item_first and isinstance(item, str))
            seq = ids + query if req.item_first else query + ids
            if len(seq) >= ctx:
                raise EngineError(f"query + item has {len(seq)} tokens; the model's context "
                                  f"length is {ctx}.", 400, "items")  # fmt: skip
            seqs.append(seq)
        reqs = [score_request(s, labels) for s in seqs]
        # The first item alone puts the shared query into the prefix cache for the rest.
        first = await run_all(self.tm, reqs[:1])
        outs = first + (await run_all(self.tm, reqs[1:]) if len(reqs) > 1 else [])
        scores = [label_probs(o.pooled or [], req.apply_softmax) for o in outs]
        prompt = sum(o.prompt_tokens for o in outs)
        cached = sum(o.cached_tokens for o in outs)
        self._observe("/v1/score", outs, timer)
        usage = {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt,
                 "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip
        return encode({"object": "scoring", "model": self.model_name, "scores": scores,
                       "usage": usage})  # fmt: skip
