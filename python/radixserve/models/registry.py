"""Architecture name (config.json `architectures`) -> model class."""

from __future__ import annotations

from torch import nn

from radixserve.models.bert import BertForSequenceClassification, BertModel
from radixserve.models.llama import (
    LlamaForCausalLM,
    MistralForCausalLM,
    Qwen2ForCausalLM,
    Qwen3ForCausalLM,
)
from radixserve.models.llama_pooling import LlamaEmbeddingModel, LlamaForSequenceClassification

MODEL_REGISTRY: dict[str, type[nn.Module]] = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": MistralForCausalLM,
    "Qwen2ForCausalLM": Qwen2ForCausalLM,
    "Qwen3ForCausalLM": Qwen3ForCausalLM,
    # Pooling models (#8): embeddings, cross-encoders, reward/classification heads.
    "BertModel": BertModel,
    "BertForSequenceClassification": BertForSequenceClassification,
    "LlamaForSequenceClassification": LlamaForSequenceClassification,
}


def resolve_model_class(architectures: list[str], is_embedding: bool = False) -> type[nn.Module]:
    """The class for `architectures`; with is_embedding a causal LM becomes its last-token
    embedding model (LlamaEmbeddingModel)."""
    for name in architectures:
        cls = MODEL_REGISTRY.get(name)
        if cls is not None:
            if is_embedding and issubclass(cls, LlamaForCausalLM) and not getattr(
                cls, "is_pooling", False
            ):
                return LlamaEmbeddingModel
            return cls
    raise ValueError(
        f"unsupported model architecture {architectures or '(none given)'}; supported: "
        f"{', '.join(sorted(MODEL_REGISTRY))}"
    )
