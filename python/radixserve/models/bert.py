"""BERT encoders: BertModel (embeddings) and BertForSequenceClassification (cross-encoders,
rerankers), on the engine's packed ForwardBatch.

Bidirectional attention over each sequence, post-LayerNorm blocks, GELU MLP, absolute position
and token-type embeddings. LayerNorm (fused with the residual add) and GELU are native kernels
(layers/encoder_ops.py); projections are the packed native Linear. Attention is the native
bidirectional varlen kernel over the packed batch (`encoder_attention`, torch SDPA per sequence
as the reference): the decoder's extend-attention kernel is causal-only and reads keys through
the KV pool, which an encoder never needs (no KV is kept after the forward).
The encoder's linears run in int16 integers by default for float32 models
(`encoder_linear_format`, layers/linear.py): it measured 1.4-1.5x the fp32 GEMM on AVX2 and keeps
all-MiniLM-L6-v2 within cosine 0.9999 of sentence-transformers (benchmarks/results/embeddings.md).
Sequences are always whole (the scheduler never chunks an encoder prompt), so position j of a
request is token j and `batch.positions` are the absolute position ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional, cast

import torch
from torch import nn

from radixserve.forward_batch import ForwardBatch
from radixserve.layers.backend import native_ops, use_native
from radixserve.layers.encoder_ops import LayerNorm, encoder_attention, gelu
from radixserve.layers.linear import WEIGHT_FORMATS, Linear
from radixserve.layers.pooler import normalize, pool
from radixserve.models.config import ModelConfig


def encoder_linear_format(cfg: ModelConfig) -> str:
    """The encoder linears' weight format: auto = int16 for float32 models (the int16 kernel
    is CPU-native; other backends and dtypes keep the loaded weights, see Linear.post_load)."""
    fmt = cfg.encoder_linear_format
    if fmt == "auto":
        return "int16" if cfg.dtype == torch.float32 else "float32"
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"encoder linear format must be auto or one of {WEIGHT_FORMATS}, got {fmt!r}")
    return fmt


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.hidden = cfg.hidden_size
        self.qkv_proj = Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=True)
        self.out_proj = Linear(cfg.hidden_size, cfg.hidden_size, bias=True)
        self.out_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.scale = self.head_dim**-0.5

    def forward(self, h: torch.Tensor, lens: list[int], cu_seqlens: torch.Tensor) -> torch.Tensor:
        t = h.shape[0]
        q, k, v = self.qkv_proj(h).view(t, 3, self.num_heads, self.head_dim).unbind(1)
        out = encoder_attention(q, k, v, lens, cu_seqlens, self.scale)
        return self.out_norm(self.out_proj(out), h)


class BertLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attention = BertSelfAttention(cfg)
        self.intermediate = Linear(cfg.hidden_size, cfg.intermediate_size, bias=True)
        self.output = Linear(cfg.intermediate_size, cfg.hidden_size, bias=True)
        self.output_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.tanh_gelu = cfg.hidden_act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")

    def forward(self, h: torch.Tensor, lens: list[int], cu_seqlens: torch.Tensor) -> torch.Tensor:
        h = self.attention(h, lens, cu_seqlens)
        return self.output_norm(self.output(gelu(self.intermediate(h), self.tanh_gelu)), h)


class BertEncoder(nn.Module):
    """Embeddings + layers: per-token hidden states [T, H] of packed whole sequences."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.hidden_act not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            raise ValueError(f"BERT hidden_act {cfg.hidden_act!r} is not supported (gelu only)")
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.context_len, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(max(cfg.type_vocab_size, 1), cfg.hidden_size)
        self.embed_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.layers = nn.ModuleList([BertLayer(cfg) for _ in range(cfg.num_layers)])
        fmt = encoder_linear_format(cfg)
        for module in self.layers.modules():
            if isinstance(module, Linear):
                module.weight_format = fmt
        for p in self.parameters():
            p.requires_grad_(False)
        # The forward in one native call (_C.EncoderStack: the same kernels on the same values
        # as the per-op modules below, bit for bit). False keeps the per-op path, the reference.
        self.fused = cfg.encoder_fused_stack
        # Batches of at most this many tokens run every kernel on one thread (no OpenMP
        # region). 0 by default: the stack itself falls back to one thread for short inputs
        # while the host is too busy to give its threads a core each (encoder_stack.h).
        self.serial_max_tokens = cfg.encoder_serial_max_tokens
        self._stack: Optional[Any] = None  # built on the first fused forward; False: cannot
        self._stack_key: Optional[torch.Tensor] = None  # layer 0's packed qkv when built

    def _layers(self) -> list[BertLayer]:
        return [cast(BertLayer, layer) for layer in self.layers]

    def _native_stack(self, input_ids: torch.Tensor) -> Optional[Any]:
        """The native EncoderStack when this forward can take it, else None."""
        if not (self.fused and use_native() and input_ids.device.type == "cpu"):
            return None
        # Built once; again if the Linears were repacked (post_load after a backend switch).
        layers = self._layers()
        key = layers[0].attention.qkv_proj.int16_packed if layers else None
        if self._stack is None or key is not self._stack_key:
            self._stack_key = key
            self._stack = self._build_stack() or False
        return self._stack or None

    def _build_stack(self) -> Optional[Any]:
        """The packed weights in a _C.EncoderStack, or None where a layer needs the per-op path
        (a linear not in int16, weights not float32, an older _C)."""
        ops = native_ops()
        if not hasattr(ops, "EncoderStack") or self.word_embeddings.weight.dtype != torch.float32:
            return None
        linears = [m for m in self.layers.modules() if isinstance(m, Linear)]
        if not linears or any(m.int16_packed is None or m.bias is None for m in linears):
            return None
        layers = self._layers()
        first = layers[0].attention
        stack = ops.EncoderStack(
            self.word_embeddings.weight, self.position_embeddings.weight,
            self.token_type_embeddings.weight, self.embed_norm.weight, self.embed_norm.bias,
            first.num_heads, first.head_dim, self.embed_norm.eps, first.scale,
            layers[0].tanh_gelu,
        )  # fmt: skip
        for layer in layers:
            a = layer.attention
            stack.add_layer(
                a.qkv_proj.int16_packed, a.qkv_proj.bias, a.out_proj.int16_packed,
                a.out_proj.bias, a.out_norm.weight, a.out_norm.bias,
                layer.intermediate.int16_packed, layer.intermediate.bias,
                layer.output.int16_packed, layer.output.bias, layer.output_norm.weight,
                layer.output_norm.bias,
            )  # fmt: skip
        return stack

    def forward(self, batch: ForwardBatch) -> tuple[torch.Tensor, list[int], list[int]]:
        lens = batch.extend_seq_lens_list or batch.extend_seq_lens.tolist()
        if batch.extend_prefix_lens_list and any(batch.extend_prefix_lens_list):
            raise RuntimeError("encoder prompts must be run whole (no cached prefix, no chunks)")
        starts = [0] * (len(lens) + 1)  # cu_seqlens: sequence i is rows [starts[i], starts[i+1])
        for i, n in enumerate(lens):
            starts[i + 1] = starts[i] + n
        cu_seqlens = torch.tensor(starts, dtype=torch.int64)
        stack = self._native_stack(batch.input_ids)
        if stack is not None:
            serial = batch.input_ids.shape[0] <= self.serial_max_tokens
            h = stack.forward(batch.input_ids, batch.positions, batch.token_type_ids, cu_seqlens,
                              serial)  # fmt: skip
            return h, starts[:-1], lens
        types = batch.token_type_ids
        if types is None:
            types = torch.zeros_like(batch.input_ids)
        h = self.word_embeddings(batch.input_ids) + self.position_embeddings(batch.positions)
        h = self.embed_norm(h, self.token_type_embeddings(types))
        for layer in self.layers:
            h = layer(h, lens, cu_seqlens)
        return h, starts[:-1], lens


def _bert_name(name: str) -> str:
    """HF BERT checkpoint name -> this module's parameter name (q/k/v handled by the caller)."""
    name = name.removeprefix("bert.")
    for old, new in (
        ("embeddings.LayerNorm", "encoder.embed_norm"),
        ("embeddings.", "encoder."),
        ("encoder.layer.", "encoder.layers."),
        (".attention.output.dense", ".attention.out_proj"),
        (".attention.output.LayerNorm", ".attention.out_norm"),
        (".intermediate.dense", ".intermediate"),
        (".output.dense", ".output"),
        (".output.LayerNorm", ".output_norm"),
    ):
        name = name.replace(old, new, 1) if old in name else name
    if name.startswith("encoder.encoder."):
        name = name[len("encoder.") :]
    return name


_QKV = {"query": 0, "key": 1, "value": 2}


def load_bert_weights(
    model: nn.Module, weights: Iterable[tuple[str, torch.Tensor]], skip: tuple[str, ...]
) -> None:
    """Copy HF BERT tensors into `model`; raise ValueError naming missing/misshapen ones."""
    params = dict(model.named_parameters())
    seen: set[str] = set()
    for raw, tensor in weights:
        if raw.endswith("position_ids") or raw.removeprefix("bert.").startswith(skip):
            continue
        name, rows = _bert_name(raw), None
        parts = name.split(".")
        if len(parts) >= 3 and parts[-3] == "self" and parts[-2] in _QKV:
            size = tensor.shape[0]
            rows = (_QKV[parts[-2]] * size, size)
            name = ".".join(parts[:-3] + ["qkv_proj", parts[-1]])
        param = params.get(name)
        if param is None:
            raise ValueError(f"checkpoint tensor {raw!r} has no place in {type(model).__name__}")
        dest = param.data if rows is None else param.data.narrow(0, rows[0], rows[1])
        if tuple(dest.shape) != tuple(tensor.shape):
            raise ValueError(f"checkpoint tensor {raw!r} has shape {tuple(tensor.shape)}, "
                             f"the model expects {tuple(dest.shape)}")  # fmt: skip
        dest.copy_(tensor)
        seen.add(name if rows is None else f"{name}#{rows[0]}")
    expected: set[str] = set()
    for name, p in params.items():
        if ".qkv_proj." in name:
            n = p.shape[0] // 3
            expected.update(f"{name}#{i * n}" for i in range(3))
        else:
            expected.add(name)
    missing = sorted(expected - seen)
    if missing:
        raise ValueError(f"checkpoint is missing tensors: {', '.join(missing[:5])}")


class BertModel(nn.Module):
    """Sentence embeddings: pooled (mean / CLS / last per the folder) and L2-normalised."""

    is_pooling = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = BertEncoder(config)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        h, starts, lens = self.encoder(batch)
        out = pool(h, starts, lens, self.config.pooling_method)
        return normalize(out) if self.config.normalize_embeddings else out

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        load_bert_weights(self, weights, skip=("pooler.",))


class BertForSequenceClassification(nn.Module):
    """Cross-encoder: classifier(tanh(dense(CLS hidden))) -> float32 logits [bs, num_labels]."""

    is_pooling = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = BertEncoder(config)
        self.pooler = Linear(config.hidden_size, config.hidden_size, bias=True)
        self.classifier = Linear(config.hidden_size, max(config.num_labels, 1), bias=True)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        h, starts, lens = self.encoder(batch)
        cls = h[torch.tensor(starts, dtype=torch.int64)]
        return self.classifier(torch.tanh(self.pooler(cls))).float()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        renamed = ((n.replace("pooler.dense.", "pooler."), t) for n, t in weights)
        load_bert_weights(self, renamed, skip=())
