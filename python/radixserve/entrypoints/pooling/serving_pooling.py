"""ServingPooling: the base of every pooling route's serving class (openai/ embeddings, score,
rerank; native/ /encode and /classify): the tokenizer manager, metrics and one batched run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from radixserve.engine.io_struct import GenerateOutput
from radixserve.engine.offload import INLINE_CHARS, offload, text_size
from radixserve.entrypoints.pooling.inputs import check_truncate, prompt_ids
from radixserve.entrypoints.pooling.runner import PoolingMetrics, Timer, pooling_request, run_all

if TYPE_CHECKING:
    from radixserve.engine.tokenizer_manager import TokenizerManager

NOT_EMBEDDING = ("This server serves a generative model: /v1/embeddings needs an embedding "
                 "model (start the server with --is-embedding, or serve a BERT model).")  # fmt: skip
NOT_CLASSIFIER = ("/classify needs a sequence-classification model (e.g. "
                  "BertForSequenceClassification or LlamaForSequenceClassification).")  # fmt: skip


class ServingPooling:
    def __init__(
        self, tm: TokenizerManager, model_name: str, metrics: Optional[PoolingMetrics]
    ) -> None:
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
