"""GET /v1/models and /v1/models/{model}: the one served model as an OpenAI model card."""

from __future__ import annotations

import time

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.openai.protocol import ModelCard, ModelList
from radixserve.entrypoints.serving_common import encode


class ServingModels:
    def __init__(self, model_name: str, model_path: str, max_model_len: int) -> None:
        self.card = ModelCard(id=model_name, root=model_path, max_model_len=max_model_len,
                              created=int(time.time()))  # fmt: skip

    def list(self) -> bytes:
        return encode(ModelList(data=[self.card]))

    def retrieve(self, model: str) -> bytes:
        # Clients join "models/" and the id, so an id that is an absolute path loses its "/".
        if model.lstrip("/") != self.card.id.lstrip("/"):
            raise EngineError(f"The model {model!r} does not exist.", 404, "model")
        return encode(self.card)
