"""/v1/embeddings (OpenAI) on ServingPooling (entrypoints/pooling/serving_pooling.py).

`dimensions` (Matryoshka-style): allowed when 1 <= dimensions <= the embedding size; the vector
is truncated to its first `dimensions` values and L2-normalised again (when the model
normalises). Whether a model was trained for truncation is not known here: the caller decides.
`encoding_format: base64` is the little-endian float32 bytes of each vector, as OpenAI sends.
"""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.pooling.inputs import as_prompt_list
from radixserve.entrypoints.pooling.protocol import EmbeddingRequest
from radixserve.entrypoints.pooling.runner import Timer
from radixserve.entrypoints.pooling.serving_pooling import NOT_EMBEDDING, ServingPooling
from radixserve.entrypoints.serving_common import encode

if TYPE_CHECKING:
    pass

CLASSIFIER_ONLY = ("This server serves a classification model: use /classify or /v1/rerank "
                   "for its logits (/encode also works).")  # fmt: skip


def _resize(vec: list[float], dims: int, renormalize: bool) -> list[float]:
    vec = vec[:dims]
    if renormalize:
        norm = sum(v * v for v in vec) ** 0.5
        if norm > 0:
            vec = [v / norm for v in vec]
    return vec


def _b64(vec: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()


class ServingEmbedding(ServingPooling):
    async def embeddings(self, req: EmbeddingRequest) -> bytes:
        timer = Timer()
        if self._flag("is_generation", True):
            raise EngineError(NOT_EMBEDDING, 400, "model")
        if self._flag("is_classifier", False):
            raise EngineError(CLASSIFIER_ONLY, 400, "model")
        if req.encoding_format not in ("float", "base64"):
            raise EngineError("encoding_format must be 'float' or 'base64'.", 400,
                              "encoding_format")  # fmt: skip
        hidden = int(self._flag("hidden_size", 0))
        if req.dimensions is not None and not 1 <= req.dimensions <= hidden:
            raise EngineError(f"dimensions must be between 1 and the embedding size ({hidden}), "
                              f"got {req.dimensions}.", 400, "dimensions")  # fmt: skip
        prompts, _ = as_prompt_list(req.input, "input")
        outs = await self._run(prompts, "input", req.truncate_prompt_tokens)
        renorm = bool(self._flag("normalize_embeddings", True))
        data = []
        for i, out in enumerate(outs):
            vec = out.pooled or []
            if req.dimensions is not None:
                vec = _resize(vec, req.dimensions, renorm)
            emb: Any = _b64(vec) if req.encoding_format == "base64" else vec
            data.append({"object": "embedding", "embedding": emb, "index": i})
        tokens = sum(o.prompt_tokens for o in outs)
        self._observe("/v1/embeddings", outs, timer)
        return encode({"object": "list", "data": data, "model": self.model_name,
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip
