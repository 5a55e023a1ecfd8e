"""The Llama family (Llama, Mistral, Qwen2, Qwen3, SmolLM): one implementation, config-driven.

Differences handled here: GQA, tied embeddings, q/k/v biases (Qwen2), per-head q/k RMSNorm
(Qwen3), rope scaling (layers/rotary.py) and per-layer sliding windows (attention backends).
Checkpoint weights use Hugging Face names; q/k/v and gate/up are stacked into fused Linears.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Optional, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from radixserve.forward_batch import ForwardBatch, PausedForward
from radixserve.layers.activation import silu_and_mul
from radixserve.layers.attention.base import AttentionBackend
from radixserve.layers.attention.native_backend import NativeBackend
from radixserve.layers.backend import native_ops, use_native
from radixserve.layers.linear import TORCH_FP32_MIN_ROWS, Linear, QuantizedWeight
from radixserve.layers.logits import LogitsProcessor, logits_indices
from radixserve.layers.norm import RMSNorm
from radixserve.layers.rotary import RotaryEmbedding
from radixserve.models.config import ModelConfig


class LlamaAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.num_heads, self.num_kv_heads, self.head_dim = (
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
        )
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim
        self.qkv_proj = Linear(
            cfg.hidden_size, self.q_size + 2 * self.kv_size, bias=cfg.attention_bias
        )
        self.o_proj = Linear(self.q_size, cfg.hidden_size)
        self.q_norm: Optional[RMSNorm] = None
        self.k_norm: Optional[RMSNorm] = None
        if cfg.qk_norm:
            self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)
        self.rotary = RotaryEmbedding(
            cfg.head_dim, cfg.head_dim, cfg.context_len, cfg.rope_theta, cfg.rope_scaling
        )

    def forward(
        self,
        positions: torch.Tensor,
        h: torch.Tensor,
        batch: ForwardBatch,
        backend: AttentionBackend,
    ) -> torch.Tensor:
        t = h.shape[0]
        qkv = self.qkv_proj(h)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        if self.q_norm is not None and self.k_norm is not None:
            q = self.q_norm(q.reshape(t, self.num_heads, self.head_dim))  # type: ignore[assignment]
            k = self.k_norm(k.reshape(t, self.num_kv_heads, self.head_dim))  # type: ignore[assignment]
        q, k = self.rotary(positions, q.reshape(t, -1).contiguous(), k.reshape(t, -1).contiguous())
        out = backend.forward(
            q.view(t, self.num_heads, self.head_dim),
            k.view(t, self.num_kv_heads, self.head_dim),
            v.reshape(t, self.num_kv_heads, self.head_dim),
            self.layer_id,
            batch,
        )
        return self.o_proj(out.reshape(t, self.q_size))


class LlamaMLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up_proj = Linear(cfg.hidden_size, 2 * cfg.intermediate_size)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(silu_and_mul(self.gate_up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(cfg, layer_id)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(
        self,
        positions: torch.Tensor,
        h: torch.Tensor,
        residual: Optional[torch.Tensor],
        batch: ForwardBatch,
        backend: AttentionBackend,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual = h
            h = self.input_layernorm(h)  # type: ignore[assignment]
        else:
            h, residual = self.input_layernorm(h, residual)  # type: ignore[misc]
        h = self.self_attn(positions, h, batch, backend)
        h, residual = self.post_attention_layernorm(h, residual)  # type: ignore[misc]
        return self.mlp(h), residual


class LlamaModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        # Uninitialised: the checkpoint fills it (a random init would write, and keep resident,
        # vocab x hidden floats that a quantized embedding then drops).
        self.embed_tokens = nn.Embedding(
            cfg.vocab_size, cfg.hidden_size, _weight=torch.empty(cfg.vocab_size, cfg.hidden_size)
        )
        self.embed_tokens.weight.requires_grad_(False)
        self.layers = nn.ModuleList([LlamaDecoderLayer(cfg, i) for i in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight  # type: ignore[assignment]
        self.logits_processor = LogitsProcessor(self.lm_head)
        self.attn_backend: Optional[AttentionBackend] = None  # set by the ModelRunner
        # A quantized token embedding (GGUF kept quantized): packed rows, looked up natively.
        self.embed_packed: Optional[torch.Tensor] = None
        # Decode steps run the layer loop in one native call (_C.DecoderStack: the same kernels
        # on the same values as the per-op layers, without ~30 Python ops per layer). False
        # keeps the per-op path, the reference.
        self.fused_decode = True
        self._decoder_stack: Optional[Any] = None  # built on the first fused decode
        self._stack_has_fp32 = False  # it holds a non-quantized fp32 projection
        self._stack_key: Optional[torch.Tensor] = None  # layer 0's packed qkv when built

    def _fused_decoder(self, batch: ForwardBatch, h: torch.Tensor) -> Optional[Any]:
        """The native DecoderStack when this decode step can take it, else None."""
        backend = self.attn_backend
        if not (
            self.fused_decode
            and batch.is_decode
            and batch.cascade is None
            and use_native()
            and isinstance(backend, NativeBackend)
            and h.device.type == "cpu"
            and backend.kv_pool.dtype in (h.dtype, torch.bfloat16)  # bf16 KV under fp32: native
        ):
            return None
        # Built once; again if the Linears were repacked (post_load after a backend switch).
        # (Layer 0 alone: a list of all layers per step costs ~0.2 ms with cold caches.)
        key = _packed(cast(LlamaDecoderLayer, self.model.layers[0]).self_attn.qkv_proj)
        if self._decoder_stack is None or key is None or key[0] is not self._stack_key:
            self._stack_key = None if key is None else key[0]
            self._decoder_stack = _build_decoder_stack(self, backend.sliding_windows) or False
            self._stack_has_fp32 = any(
                m.packed is not None and m.weight.dtype == torch.float32
                for m in self.model.layers.modules()
                if isinstance(m, Linear)
            )
        if self._decoder_stack is False:
            return None
        # fp32 projections of many rows run in torch on the per-op path (Linear._torch_is_faster).
        if self._stack_has_fp32 and h.shape[0] >= TORCH_FP32_MIN_ROWS:
            return None
        return self._decoder_stack

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """Final-normed hidden states [n, H] at the batch's logits positions."""
        out = self.forward_pausable(batch, None)
        assert isinstance(out, torch.Tensor)
        return out

    def forward_pausable(
        self,
        batch: ForwardBatch,
        should_pause: Optional[Callable[[], bool]],
        resume: Optional[PausedForward] = None,
    ) -> Union[torch.Tensor, PausedForward]:
        """forward(), asking `should_pause` (if given) after every decoder layer: a True stops it
        there, and the PausedForward returned goes back in as `resume` later (the scheduler
        pauses background steps for online work, engine/pausing.py; the LM head after the last
        layer pauses between its vocabulary slices: LogitsProcessor.forward_pausable)."""
        if self.attn_backend is None:
            raise RuntimeError("no attention backend: set model.attn_backend before forward")
        if resume is not None:
            h, residual, begin = resume.h, resume.residual, resume.next_layer
        else:
            h, residual, begin = self._embed(batch), None, 0
        stack = self._fused_decoder(batch, h)
        num_layers = len(self.model.layers)
        step = 1 if should_pause is not None else num_layers
        for start in range(begin, num_layers, step):
            end = min(start + step, num_layers)
            h, residual = self._run_layers(batch, stack, h, residual, start, end)
            if should_pause is not None and should_pause():
                return PausedForward(batch, h, residual, end)
        assert residual is not None
        # Only the rows that produce logits need the final norm; in a decode batch (one token
        # per request, no explicit logits rows) that is every row, so no gather.
        if not (batch.is_decode and batch.logits_indices is None):
            idx = logits_indices(batch)
            h, residual = h[idx], residual[idx]
        h, _ = self.model.norm(h, residual)  # type: ignore[misc]
        return h

    def _embed(self, batch: ForwardBatch) -> torch.Tensor:
        on_host = batch.positions.device.type == "cpu"  # device batches: checked when staged
        if on_host and batch.num_tokens:
            # The rope cache (and the native rope kernel) only cover the context length. The
            # last position is max(seq_lens) - 1: read from the host list when the batch has it.
            lens = batch.seq_lens_list
            last = max(lens) - 1 if lens else int(batch.positions.max())
            if last >= self.config.context_len:
                raise ValueError(
                    f"position {last} is beyond the context length {self.config.context_len}"
                )
        if self.embed_packed is not None:
            ids = batch.input_ids.reshape(-1).contiguous()
            return native_ops().quant_embedding(ids, self.embed_packed).to(self.config.dtype)  # type: ignore[no-any-return]
        return F.embedding(batch.input_ids, self.model.embed_tokens.weight)

    def _run_layers(
        self,
        batch: ForwardBatch,
        stack: Optional[Any],
        h: torch.Tensor,
        residual: Optional[torch.Tensor],
        begin: int,
        end: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder layers [begin, end): in one native call (`stack`) or layer by layer."""
        backend = self.attn_backend
        assert backend is not None
        if stack is not None:
            pool = backend.kv_pool
            return stack.decode(  # type: ignore[no-any-return]
                h,
                batch.positions,
                pool.k_buffers[begin:end],
                pool.v_buffers[begin:end],
                batch.out_cache_loc,
                backend.req_to_token,
                batch.req_pool_indices,
                batch.seq_lens,
                residual,
                begin,
                end,
            )
        for layer in self.model.layers[begin:end]:
            h, residual = layer(batch.positions, h, residual, batch, backend)
        assert residual is not None
        return h, residual

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.logits_processor(hidden)

    def compute_logits_pausable(
        self,
        hidden: torch.Tensor,
        should_pause: Optional[Callable[[], bool]],
        logits: Optional[torch.Tensor] = None,
        begin: int = 0,
    ) -> tuple[torch.Tensor, Optional[int]]:
        """compute_logits in vocabulary slices with pause checks (LogitsProcessor.forward_pausable):
        (logits, None) when done, or (partial logits, next column) to pass back."""
        return self.logits_processor.forward_pausable(hidden, should_pause, logits, begin)

    # ---- weights ----

    def _stacked(self) -> dict[str, tuple[str, int, int]]:
        """Checkpoint projection -> (fused parameter stem, row offset, rows)."""
        c = self.config
        q, kv, inter = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size
        return {
            "q_proj": ("qkv_proj", 0, q),
            "k_proj": ("qkv_proj", q, kv),
            "v_proj": ("qkv_proj", q + kv, kv),
            "gate_proj": ("gate_up_proj", 0, inter),
            "up_proj": ("gate_up_proj", inter, inter),
        }

    def expected_weights(self) -> set[str]:
        """Checkpoint tensor names this model needs (in Hugging Face naming)."""
        names: set[str] = set()
        inverse: dict[str, list[str]] = {}
        for shard, (fused, _, _) in self._stacked().items():
            inverse.setdefault(fused, []).append(shard)
        for name, _ in self.named_parameters():
            if name == "lm_head.weight" and self.config.tie_word_embeddings:
                continue
            parts = name.split(".")
            if len(parts) >= 2 and parts[-2] in inverse:
                for shard in inverse[parts[-2]]:
                    names.add(".".join(parts[:-2] + [shard, parts[-1]]))
            else:
                names.add(name)
        return names

    def load_weights(
        self, weights: Iterable[tuple[str, Union[torch.Tensor, QuantizedWeight]]]
    ) -> None:
        """Copy checkpoint tensors in; raise ValueError naming any missing or misshapen tensor."""
        params = dict(self.named_parameters())
        stacked = self._stacked()
        expected = self.expected_weights()
        seen: set[str] = set()
        for name, tensor in weights:
            if "rotary_emb.inv_freq" in name:
                continue
            if name == "lm_head.weight" and self.config.tie_word_embeddings:
                continue
            parts = name.split(".")
            target, rows = name, None
            if len(parts) >= 2 and parts[-2] in stacked:
                fused, start, size = stacked[parts[-2]]
                target = ".".join(parts[:-2] + [fused, parts[-1]])
                rows = (start, size)
            if isinstance(tensor, QuantizedWeight):
                self._load_quantized(name, params.get(target), target, rows, tensor)
                seen.add(name)
                continue
            param = params.get(target)
            if param is None:
                raise ValueError(
                    f"checkpoint tensor {name!r} has no place in {type(self).__name__}"
                )
            dest = param.data if rows is None else param.data.narrow(0, rows[0], rows[1])
            if tuple(dest.shape) != tuple(tensor.shape):
                raise ValueError(
                    f"checkpoint tensor {name!r} has shape {tuple(tensor.shape)}, "
                    f"the model expects {tuple(dest.shape)}"
                )
            dest.copy_(tensor)
            seen.add(name)
        missing = sorted(expected - seen)
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(f"checkpoint is missing tensors: {', '.join(missing[:5])}{more}")

    def _load_quantized(
        self,
        name: str,
        param: Optional[nn.Parameter],
        target: str,
        rows: Optional[tuple[int, int]],
        w: QuantizedWeight,
    ) -> None:
        """A GGUF weight kept quantized: a Linear's rows, or the token embedding (and with tied
        embeddings the LM head too: both use the one packed copy). `param`: the parameter
        named `target` before loading began (only its shape is read)."""
        expected = None if param is None else tuple(param.shape)
        if rows is not None and expected is not None:
            expected = (rows[1], expected[1])
        if expected != tuple(w.shape):
            raise ValueError(
                f"checkpoint tensor {name!r} has shape {tuple(w.shape)}, the model expects "
                f"{expected}"
            )
        if target == "model.embed_tokens.weight":
            self.embed_packed = w.pack()
            placeholder = torch.empty(0, w.shape[1], dtype=self.config.dtype)
            self.model.embed_tokens.weight = nn.Parameter(placeholder, requires_grad=False)
            if self.config.tie_word_embeddings:
                self.lm_head.set_quant_packed(self.embed_packed)
            return
        module = self.get_submodule(target.rpartition(".")[0])
        if not isinstance(module, Linear) or not target.endswith(".weight"):
            raise ValueError(f"checkpoint tensor {name!r} is quantized but {target} is no Linear")
        module.load_quantized(0 if rows is None else rows[0], w)


def _decoder_layers(model: LlamaForCausalLM) -> list[LlamaDecoderLayer]:
    return [cast(LlamaDecoderLayer, layer) for layer in model.model.layers]


def _packed(linear: Linear) -> Optional[tuple[torch.Tensor, bool]]:
    """(packed weight, is quantized) of a Linear on the native kernels, or None (torch)."""
    if linear.quant_packed is not None:
        return linear.quant_packed, True
    if linear.packed is not None:
        return linear.packed, False
    return None


def _build_decoder_stack(model: LlamaForCausalLM, windows: list[int]) -> Optional[Any]:
    """The layers' packed weights in a _C.DecoderStack, or None where a layer needs the per-op
    path (per-head q/k norms, a projection left to torch, an older _C)."""
    ops = native_ops()
    layers = _decoder_layers(model)
    if not hasattr(ops, "DecoderStack") or not layers:
        return None
    first = layers[0].self_attn
    rotary = first.rotary
    stack = ops.DecoderStack(
        first.num_heads,
        first.num_kv_heads,
        first.head_dim,
        layers[0].input_layernorm.eps,
        rotary.cos_sin_cache,
        rotary.is_neox,
    )
    for layer, window in zip(layers, windows, strict=True):
        attn, mlp = layer.self_attn, layer.mlp
        projections = [
            _packed(m) for m in (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj)
        ]
        if attn.q_norm is not None or any(p is None for p in projections):
            return None
        (qkv, qkv_q), (o, o_q), (gu, gu_q), (down, down_q) = projections  # type: ignore[misc]
        stack.add_layer(
            layer.input_layernorm.weight,
            layer.post_attention_layernorm.weight,
            qkv,
            qkv_q,
            attn.qkv_proj.bias,
            o,
            o_q,
            gu,
            gu_q,
            down,
            down_q,
            window,
        )
    return stack


class MistralForCausalLM(LlamaForCausalLM):
    pass


class Qwen2ForCausalLM(LlamaForCausalLM):
    pass


class Qwen3ForCausalLM(LlamaForCausalLM):
    pass
