"""/v1/classify: SGLang's OpenAI-style classification route (vLLM's format). `input` (a string,
strings, token ids or lists of token ids) -> {id, object: "list", created, model, data: [{index,
label, probs, num_classes}], usage}: probs is the softmax of the model's logits, label the
id2label name of the most probable class. The native /classify answers raw logits."""

from __future__ import annotations

import math
import time

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.pooling.inputs import as_prompt_list
from radixserve.entrypoints.pooling.protocol import ClassifyRequest
from radixserve.entrypoints.pooling.runner import Timer
from radixserve.entrypoints.pooling.serving_pooling import NOT_CLASSIFIER, ServingPooling
from radixserve.entrypoints.serving_common import encode, new_id


def softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


class ServingClassify(ServingPooling):
    async def classify(self, req: ClassifyRequest) -> bytes:
        timer = Timer()
        if not self._flag("is_classifier", False):
            raise EngineError(NOT_CLASSIFIER.replace("/classify", "/v1/classify"), 400, "model")
        if req.input is None:
            raise EngineError("'input' is required.", 400, "input")
        prompts, _ = as_prompt_list(req.input, "input")
        outs = await self._run(prompts, "input", req.truncate_prompt_tokens)
        labels: list[str] = self._flag("labels", [])
        data = []
        for i, out in enumerate(outs):
            probs = softmax(out.pooled or [0.0])
            best = max(range(len(probs)), key=probs.__getitem__)
            label = labels[best] if best < len(labels) else f"LABEL_{best}"
            data.append({"index": i, "label": label, "probs": probs, "num_classes": len(probs)})
        tokens = sum(o.prompt_tokens for o in outs)
        self._observe("/v1/classify", outs, timer)
        return encode({
            "id": new_id("classify-"), "object": "list", "created": int(time.time()),
            "model": self.model_name, "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                      "prompt_tokens_details": None},
        })  # fmt: skip
