"""Request bodies of the pooling routes. Inputs that may be text or token ids are typed Any
and checked by inputs.py, so a wrong shape gets a 400 that names the field."""

from __future__ import annotations

from typing import Any, Optional

import msgspec


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """OpenAI /v1/embeddings: input is a string, strings, token ids or lists of token ids."""

    input: Any
    model: Optional[str] = None
    encoding_format: str = "float"  # float | base64 (little-endian float32)
    dimensions: Optional[int] = None
    user: Optional[str] = None
    truncate_prompt_tokens: Optional[int] = None


class EncodeReqInput(msgspec.Struct, kw_only=True):
    """SGLang native /encode and /classify: text or input_ids, single or batch."""

    text: Any = None
    input_ids: Any = None
    rid: Optional[str] = None
    truncate_prompt_tokens: Optional[int] = None


class ClassifyRequest(msgspec.Struct, kw_only=True):
    """SGLang's /v1/classify (vLLM's format): input is a string, strings, token ids or lists of
    token ids."""

    input: Any = None
    model: Optional[str] = None
    user: Optional[str] = None
    rid: Optional[str] = None
    truncate_prompt_tokens: Optional[int] = None


class ScoreRequest(msgspec.Struct, kw_only=True):
    """SGLang /v1/score: probabilities of label tokens after query + item (or item + query)."""

    query: Any = None
    items: Any = None
    label_token_ids: Optional[list[int]] = None
    apply_softmax: bool = False
    item_first: bool = False
    model: Optional[str] = None


class RerankRequest(msgspec.Struct, kw_only=True):
    """SGLang /v1/rerank: a cross-encoder scores each (query, document) pair."""

    query: Optional[str] = None
    documents: Optional[list[str]] = None
    top_n: Optional[int] = None
    return_documents: bool = True
    model: Optional[str] = None
