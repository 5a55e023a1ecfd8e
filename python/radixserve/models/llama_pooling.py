"""Llama-family pooling models: last-token embeddings (`--is-embedding`) and
LlamaForSequenceClassification (a `score` head on the last token: reward models, /classify).

The decoder runs as for generation (causal attention, prefix cache allowed); the base
forward already returns the final-normed hidden state of each request's last new token,
which is the last prompt token once the prompt is complete.
"""

from __future__ import annotations

import torch

from radixserve.forward_batch import ForwardBatch
from radixserve.layers.linear import Linear
from radixserve.layers.pooler import normalize
from radixserve.models.config import ModelConfig
from radixserve.models.llama import LlamaForCausalLM


class LlamaEmbeddingModel(LlamaForCausalLM):
    """A causal LM served for embeddings: last-token hidden state, L2-normalised. The LM head
    is kept (the checkpoint holds it) but never run."""

    is_pooling = True

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        h = super().forward(batch).float()
        return normalize(h) if self.config.normalize_embeddings else h

    def expected_weights(self) -> set[str]:
        # Embedding checkpoints may ship without an LM head; it is loaded when present.
        return super().expected_weights() - {"lm_head.weight"}


class LlamaForSequenceClassification(LlamaForCausalLM):
    """logits [bs, num_labels] = score(last-token hidden); no LM head in the checkpoint."""

    is_pooling = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.score = Linear(config.hidden_size, max(config.num_labels, 1))
        del self.lm_head, self.logits_processor

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        return self.score(super().forward(batch)).float()
