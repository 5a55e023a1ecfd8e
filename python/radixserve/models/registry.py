"""Architecture name (config.json `architectures`) -> model class."""

from __future__ import annotations

from torch import nn

from radixserve.models.llama import (
    LlamaForCausalLM,
    MistralForCausalLM,
    Qwen2ForCausalLM,
    Qwen3ForCausalLM,
)

MODEL_REGISTRY: dict[str, type[nn.Module]] = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": MistralForCausalLM,
    "Qwen2ForCausalLM": Qwen2ForCausalLM,
    "Qwen3ForCausalLM": Qwen3ForCausalLM,
}


def resolve_model_class(architectures: list[str]) -> type[LlamaForCausalLM]:
    for name in architectures:
        cls = MODEL_REGISTRY.get(name)
        if cls is not None:
            assert issubclass(cls, LlamaForCausalLM)
            return cls
    raise ValueError(
        f"unsupported model architecture {architectures or '(none given)'}; supported: "
        f"{', '.join(sorted(MODEL_REGISTRY))}"
    )
