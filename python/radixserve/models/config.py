"""ModelConfig: the facts about a model that the runner, the layers and the scheduler need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch


@dataclass
class ModelConfig:
    path: str
    architectures: list[str]
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_len: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # HF-style rope parameters beyond theta ({"rope_type": "llama3", "factor": 8.0, ...}) or None.
    rope_scaling: Optional[dict[str, Any]] = None
    eos_token_ids: list[int] = field(default_factory=list)
    bos_token_id: Optional[int] = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over each head of q and k before rope
    # Per-layer sliding window (-1 = full attention), length num_layers.
    layer_sliding_windows: list[int] = field(default_factory=list)
    dtype: torch.dtype = torch.float32
    # GGUF Q4_0/Q4_1/Q8_0 weights stay quantized (--dtype auto on the native backend).
    keep_quantized: bool = False
    is_generation: bool = True
    chat_template: Optional[str] = None
    gguf_file: Optional[str] = None  # set when the weights come from a GGUF file
    # Pooling models (#8: embeddings, classifiers; filled by models/pooling_config.py).
    is_encoder: bool = False  # bidirectional (BERT): no prefix cache, never chunked
    is_classifier: bool = False  # outputs num_labels logits instead of an embedding
    num_labels: int = 0
    labels: list[str] = field(default_factory=list)  # id2label in index order (classifiers)
    pooling_method: str = "last"  # mean | cls | last (layers/pooler.py)
    normalize_embeddings: bool = True
    layer_norm_eps: float = 1e-12
    type_vocab_size: int = 0
    hidden_act: str = "silu"
    # Encoder linears (models/bert.py): auto | float32 | int16 (--encoder-linear-format).
    encoder_linear_format: str = "auto"
    # The encoder forward in one native call (models/bert.py; --disable-encoder-stack: off), and
    # up to how many tokens a batch runs it on one thread (--encoder-serial-max-tokens).
    encoder_fused_stack: bool = True
    encoder_serial_max_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.layer_sliding_windows:
            self.layer_sliding_windows = [-1] * self.num_layers
        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_kv_heads})"
            )

    @property
    def architecture(self) -> str:
        return self.architectures[0]

    @property
    def sliding_window(self) -> Optional[int]:
        """The window of the windowed layers (None if every layer attends fully)."""
        windows = [w for w in self.layer_sliding_windows if w > 0]
        return windows[0] if windows else None

    def kv_bytes_per_token(self, dtype: Optional[torch.dtype] = None) -> int:
        itemsize = torch.empty(0, dtype=dtype or self.dtype).element_size()
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * itemsize


def rope_from_hf(hf: Any) -> tuple[float, Optional[dict[str, Any]]]:
    """(theta, scaling or None) from a transformers config (v5 `rope_parameters` or v4 fields)."""
    params = getattr(hf, "rope_parameters", None)
    if isinstance(params, dict) and params:
        params = dict(params)
        theta = float(params.pop("rope_theta", getattr(hf, "rope_theta", 10000.0)))
        kind = params.get("rope_type", params.get("type", "default"))
        return theta, (None if kind == "default" else params)
    theta = float(getattr(hf, "rope_theta", 10000.0))
    scaling = getattr(hf, "rope_scaling", None)
    if isinstance(scaling, dict):
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        return theta, (None if kind == "default" else dict(scaling))
    return theta, None


def sliding_windows_from_hf(hf: Any, num_layers: int) -> list[int]:
    window = getattr(hf, "sliding_window", None)
    if getattr(hf, "use_sliding_window", True) is False or not window:
        return [-1] * num_layers
    layer_types = getattr(hf, "layer_types", None)
    if layer_types:
        return [int(window) if t == "sliding_attention" else -1 for t in layer_types]
    return [int(window)] * num_layers


def eos_ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def model_config_from_hf(hf: Any, path: str, extra_eos: Optional[list[int]] = None) -> ModelConfig:
    """Build a ModelConfig from a transformers PretrainedConfig."""
    num_heads = int(hf.num_attention_heads)
    hidden = int(hf.hidden_size)
    num_layers = int(hf.num_hidden_layers)
    theta, scaling = rope_from_hf(hf)
    eos = eos_ids(getattr(hf, "eos_token_id", None))
    for e in extra_eos or []:
        if e not in eos:
            eos.append(e)
    model_type = str(getattr(hf, "model_type", ""))
    return ModelConfig(
        path=path,
        architectures=list(getattr(hf, "architectures", None) or []),
        model_type=model_type,
        vocab_size=int(hf.vocab_size),
        hidden_size=hidden,
        intermediate_size=int(hf.intermediate_size),
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=int(getattr(hf, "num_key_value_heads", None) or num_heads),
        head_dim=int(getattr(hf, "head_dim", None) or hidden // num_heads),
        context_len=int(getattr(hf, "max_position_embeddings", 2048)),
        rms_norm_eps=float(getattr(hf, "rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        eos_token_ids=eos,
        bos_token_id=getattr(hf, "bos_token_id", None),
        tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
        # Qwen2 always has q/k/v biases; others say so in attention_bias.
        attention_bias=model_type == "qwen2" or bool(getattr(hf, "attention_bias", False)),
        qk_norm=model_type == "qwen3",
        layer_sliding_windows=sliding_windows_from_hf(hf, num_layers),
    )
