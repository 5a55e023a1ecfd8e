"""/v1/embeddings (OpenAI), and ServingPooling, the base of every pooling route's serving class
(the native /encode and /classify: entrypoints/native/serving_encode.py).

`dimensions` (Matryoshka-style): allowed when 1 <= dimensions <= the embedding size; the vector
is truncated to its first `dimensions` values and L2-normalised again (when the model
normalises). Whether a model was trained for truncation is not known here: the caller decides.
`encoding_format: base64` is the little-endian float32 bytes of each vector, as OpenAI sends.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Optional

from radixserve.engine.io_struct import EngineError, GenerateOutput
from radixserve.engine.offload import INLINE_CHARS, offload, text_size
from radixserve.entrypoints.openai.serving_base import encode
from radixserve.entrypoints.pooling.inputs import as_prompt_list, check_truncate, prompt_ids
from radixserve.entrypoints.pooling.protocol import EmbeddingRequest
from radixserve.entrypoints.pooling.runner import PoolingMetrics, Timer, pooling_request, run_all

NOT_EMBEDDING = ("This server serves a generative model: /v1/embeddings needs an embedding "
                 "model (start the server with --is-embedding, or serve a BERT model).")  # fmt: skip
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


class ServingPooling:
    def __init__(self, tm: Any, model_name: str, metrics: Optional[PoolingMetrics]) -> None:
        self.tm = tm
        self.model_name = model_name
        self.metrics = metrics

    @property
    def cfg(self) -> Any:
        return self.tm.model_config

    def _flag(self, name: str, default: Any) -> Any:
        return getattr(self.cfg, name, default)

    async def _run(self, prompts: list[str | list[int]], param: str,
                   truncate: Optional[int]) -> list[GenerateOutput]:  # fmt: skip
        check_truncate(truncate)
        tok = self.tm.tokenizer

        def all_ids() -> list[list[int]]:
            return [prompt_ids(tok, self.cfg, p, param, truncate) for p in prompts]

        # Long texts are tokenized on the tokenizer thread, so the loop keeps serving others.
        ids = await offload(all_ids) if text_size(prompts) >= INLINE_CHARS else all_ids()
        return await run_all(self.tm, [pooling_request(x) for x in ids])

    def _observe(self, route: str, outs: list[GenerateOutput], timer: Timer) -> None:
        if self.metrics is not None:
            self.metrics.observe(route, sum(o.prompt_tokens for o in outs), timer.elapsed())

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
