"""Validation of pooling requests (#8) in the caller's process: one scheduler message that
runs the prompt once (max_new_tokens 0) and returns the model's pooled output."""

from __future__ import annotations

import random
from typing import Any

from radixserve.engine import ipc
from radixserve.engine.io_struct import EngineError, GenerateRequest

EMBEDDING_SERVER = (
    "This server serves an embedding/classification model: generation is not available; use "
    "/v1/embeddings, /encode, /classify or /v1/rerank."
)
GENERATIVE_SERVER = (
    "This server serves a generative model: embeddings need an embedding model (start the "
    "server with --is-embedding, or with a BERT / *ForSequenceClassification model)."
)


def prepare_pooling_request(
    req: GenerateRequest, ids: list[int], cfg: Any
) -> ipc.TokenizedGenerateReq:
    if getattr(cfg, "is_generation", True):
        raise EngineError(GENERATIVE_SERVER, 400, "model")
    if not req.pooling:
        raise EngineError(EMBEDDING_SERVER, 400, "model")
    # No token is generated, so a prompt may fill the whole context (BERT: 512 positions).
    if len(ids) > cfg.context_len:
        raise EngineError(
            f"The input ({len(ids)} tokens) is longer than the model's context length "
            f"({cfg.context_len} tokens); set truncate_prompt_tokens to truncate it.",
            400,
            "input",
        )
    if len(ids) > cfg.max_total_tokens:
        raise EngineError(
            f"The input ({len(ids)} tokens) does not fit in the KV cache "
            f"({cfg.max_total_tokens} tokens).",
            400,
            "input",
        )
    types = req.token_type_ids
    if types is not None and len(types) != len(ids):
        raise EngineError("token_type_ids must have one entry per input token.", 400, "input")
    return ipc.TokenizedGenerateReq(
        rid=req.rid,
        input_ids=ids,
        sampling_params=req.sampling_params,
        max_new_tokens=0,
        seed=random.getrandbits(62),
        pooling=True,
        token_type_ids=types,
    )
