"""/encode (any pooling model) and /classify (classifiers), SGLang's native pooling routes:
`text` or `input_ids`, single or batch -> {embedding, meta_info} (a list for a batch)."""

from __future__ import annotations

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.pooling.inputs import as_prompt_list
from radixserve.entrypoints.pooling.protocol import EncodeReqInput
from radixserve.entrypoints.pooling.runner import Timer
from radixserve.entrypoints.pooling.serving_pooling import (
    NOT_CLASSIFIER,
    NOT_EMBEDDING,
    ServingPooling,
)
from radixserve.entrypoints.serving_common import encode


class ServingEncode(ServingPooling):
    async def encode(self, req: EncodeReqInput, route: str) -> bytes:
        """/encode (any pooling model) and /classify (classifiers): {embedding, meta_info}."""
        timer = Timer()
        if route == "/classify" and not self._flag("is_classifier", False):
            raise EngineError(NOT_CLASSIFIER, 400, "model")  # also on a generative server
        if self._flag("is_generation", True):
            raise EngineError(NOT_EMBEDDING.replace("/v1/embeddings", route), 400, "model")
        if (req.text is None) == (req.input_ids is None):
            raise EngineError("Exactly one of text and input_ids must be given.", 400, "text")
        if req.text is not None:
            if not isinstance(req.text, (str, list)) or (
                isinstance(req.text, list) and not all(isinstance(t, str) for t in req.text)
            ):
                raise EngineError("'text' must be a string or a list of strings.", 400, "text")
            param, value = "text", req.text
        else:
            if not isinstance(req.input_ids, list) or not req.input_ids or isinstance(
                req.input_ids[0], str
            ):
                raise EngineError("'input_ids' must be a list of token ids or of token-id "
                                  "lists.", 400, "input_ids")  # fmt: skip
            param, value = "input_ids", req.input_ids
        prompts, batched = as_prompt_list(value, param)
        outs = await self._run(prompts, param, req.truncate_prompt_tokens)
        results = [{"embedding": o.pooled or [], "meta_info": o.meta_info()} for o in outs]
        self._observe(route, outs, timer)
        return encode(results if batched else results[0])
