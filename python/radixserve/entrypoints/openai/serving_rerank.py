"""/v1/rerank: a cross-encoder (sequence-classification model) scores each (query, document)
pair, tokenised as a pair (BERT segment ids included). Score: sigmoid of the logit for a
one-label model (the usual cross-encoder), else the softmax probability of the last label."""

from __future__ import annotations

import math
from typing import Any

from radixserve.engine.io_struct import EngineError, GenerateRequest
from radixserve.engine.offload import INLINE_CHARS, offload, text_size
from radixserve.entrypoints.openai.serving_classify import softmax
from radixserve.entrypoints.pooling.inputs import check_ids
from radixserve.entrypoints.pooling.protocol import RerankRequest
from radixserve.entrypoints.pooling.runner import Timer, pooling_request, run_all
from radixserve.entrypoints.pooling.serving_pooling import ServingPooling
from radixserve.entrypoints.serving_common import encode

NOT_RERANKER = ("/v1/rerank needs a cross-encoder (a sequence-classification model such as "
                "BertForSequenceClassification); this server's model cannot rerank.")  # fmt: skip


def relevance(logits: list[float]) -> float:
    if len(logits) == 1:
        return 1.0 / (1.0 + math.exp(-logits[0]))
    return softmax(logits)[-1]


class ServingRerank(ServingPooling):
    async def rerank(self, req: RerankRequest) -> bytes:
        timer = Timer()
        if self._flag("is_generation", True) or not self._flag("is_classifier", False):
            raise EngineError(NOT_RERANKER, 400, "model")
        if not req.query:
            raise EngineError("'query' must be a non-empty string.", 400, "query")
        if not req.documents:
            raise EngineError("'documents' must be a non-empty list of strings.", 400,
                              "documents")  # fmt: skip
        if any(not d for d in req.documents):
            raise EngineError("'documents' contains an empty string.", 400, "documents")
        if req.top_n is not None and req.top_n < 1:
            raise EngineError("top_n must be >= 1.", 400, "top_n")
        tok, cfg, query, docs = self.tm.tokenizer, self.cfg, req.query, req.documents

        def pair_requests() -> list[GenerateRequest]:
            reqs = []
            for doc in docs:
                enc = tok(query, doc)
                ids = check_ids(list(enc["input_ids"]), int(cfg.vocab_size),
                                int(cfg.context_len), "documents")  # fmt: skip
                types = enc.get("token_type_ids") if self._flag("is_encoder", False) else None
                reqs.append(pooling_request(ids, list(types) if types is not None else None))
            return reqs

        # Long inputs are tokenized on the tokenizer thread, so the loop keeps serving others.
        big = len(query) * len(docs) + text_size(docs) >= INLINE_CHARS
        outs = await run_all(self.tm, await offload(pair_requests) if big else pair_requests())
        results: list[dict[str, Any]] = []
        for i, out in enumerate(outs):
            item: dict[str, Any] = {"score": relevance(out.pooled or [0.0]), "index": i}
            if req.return_documents:
                item["document"] = req.documents[i]
            item["meta_info"] = out.meta_info()
            results.append(item)
        results.sort(key=lambda r: -r["score"])
        if req.top_n is not None:
            results = results[: req.top_n]
        self._observe("/v1/rerank", outs, timer)
        return encode(results)
