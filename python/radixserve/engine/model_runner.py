"""ModelRunner: loads the model and owns its memory (req->token table, KV pool) and backends.

The scheduler builds a ForwardBatch against `req_to_token_pool` and KV slots from its allocator,
calls `forward(batch)` for float32 logits and `sample(logits, info)` for the next tokens.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch

from radixserve.args import ServerArgs
from radixserve.cache.memory_pool import KVPool, ReqToTokenPool
from radixserve.forward_batch import ForwardBatch
from radixserve.layers.attention import create_attention_backend, native_attention_available
from radixserve.layers.backend import native_ops, set_kernel_backend
from radixserve.layers.linear import Linear
from radixserve.layers.sampling_info import SampleOutput, SamplingBatchInfo
from radixserve.models.config import ModelConfig
from radixserve.models.gguf_loader import release_gguf_readers
from radixserve.models.loader import load_model, load_model_config
from radixserve.models.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

NATIVE_LAYER_OPS = (
    "rms_norm",
    "fused_add_rms_norm",
    "silu_and_mul",
    "rotary_embedding",
    "pack_linear_weight",
    "linear",
)
SPARE_REQ_ROWS = 4  # rows beyond max_running_requests, for requests being retracted/admitted


def missing_native_ops(names: tuple[str, ...]) -> list[str]:
    try:
        ops = native_ops()
    except ImportError:
        return list(names)
    return [n for n in names if not hasattr(ops, n)]


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (falls back to total physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


class ModelRunner:
    def __init__(self, server_args: ServerArgs) -> None:
        self.server_args = server_args
        torch.set_num_threads(server_args.num_threads or os.cpu_count() or 1)
        self.kernel_backend = self._pick_kernel_backend(server_args.kernel_backend)
        set_kernel_backend(self.kernel_backend)

        self.model_config: ModelConfig = load_model_config(
            server_args.model_path,
            server_args.dtype,
            server_args.context_length,
            native_kernels=self.kernel_backend == "native",
            is_embedding=server_args.is_embedding,
        )
        # Pooling models (#8) return one vector per request from forward(), never logits.
        self.is_pooling = not self.model_config.is_generation
        self.context_len = self.model_config.context_len
        self.tokenizer: Any = load_tokenizer(self.model_config.path, server_args.tokenizer_path)
        if server_args.chat_template is None and self.model_config.chat_template is None:
            self.model_config.chat_template = getattr(self.tokenizer, "chat_template", None)
        self.model: Any = load_model(self.model_config)
        self._post_load(self.model)
        release_gguf_readers()  # everything is loaded: the parsed GGUF is garbage now

        self.max_total_tokens = self._kv_pool_size()
        self.req_to_token_pool = ReqToTokenPool(
            server_args.max_running_requests + SPARE_REQ_ROWS, self.context_len
        )
        cfg = self.model_config
        # An encoder keeps no KV (whole prompts, bidirectional): its slots are only the
        # scheduler's accounting, so the pool is a 1x1x1 placeholder per slot.
        kv_dims = (1, 1, 1) if cfg.is_encoder else (cfg.num_layers, cfg.num_kv_heads, cfg.head_dim)
        self.kv_pool = KVPool(self.max_total_tokens, *kv_dims, cfg.dtype)
        logger.info(
            "KV pool: %d tokens, %.1f MiB (%s); %d request rows of %d tokens",
            self.max_total_tokens,
            self.kv_pool.size_bytes / 2**20,
            str(cfg.dtype).replace("torch.", ""),
            self.req_to_token_pool.size,
            self.context_len,
        )
        self.attention_backend_name = server_args.attention_backend
        if self.attention_backend_name == "native" and not native_attention_available():
            logger.warning(
                "native attention kernels are not built into radixserve._C: "
                "using the torch attention backend"
            )
            self.attention_backend_name = "torch"
        self.attn_backend = create_attention_backend(
            self.attention_backend_name,
            self.req_to_token_pool.req_to_token,
            self.kv_pool,
            [-1] if cfg.is_encoder else cfg.layer_sliding_windows,  # encoder: placeholder pool
        )
        self.model.attn_backend = self.attn_backend
        self._sampler: Optional[Any] = None

    @staticmethod
    def _pick_kernel_backend(name: str) -> str:
        if name != "native":
            return name
        missing = missing_native_ops(NATIVE_LAYER_OPS)
        if missing:
            logger.warning(
                "radixserve._C lacks %s: using the torch kernel backend", ", ".join(missing)
            )
            return "torch"
        return "native"

    def _post_load(self, model: torch.nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, Linear):
                module.post_load()

    def _kv_pool_size(self) -> int:
        args = self.server_args
        if args.max_total_tokens is not None:
            return int(args.max_total_tokens)
        if self.model_config.is_encoder:
            return int(args.max_running_requests * self.context_len)
        per_token = self.model_config.kv_bytes_per_token()
        budget = int(available_memory_bytes() * args.mem_fraction_static)
        tokens = budget // per_token
        if tokens < 16:
            raise ValueError(
                f"--mem-fraction-static {args.mem_fraction_static} leaves room for only {tokens} "
                f"KV tokens ({per_token} bytes each): raise it or set --max-total-tokens"
            )
        return int(tokens)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """float32 logits [n, vocab] at the batch's logits positions (last token per request)."""
        with torch.inference_mode():
            hidden = self.model(batch)
            if self.is_pooling:  # [bs, D] embeddings or classifier logits, float32
                return hidden.float()  # type: ignore[no-any-return]
            return self.model.compute_logits(hidden)  # type: ignore[no-any-return]

    def sample(self, logits: torch.Tensor, info: SamplingBatchInfo) -> SampleOutput:
        if self._sampler is None:
            from radixserve.layers.sampler import Sampler  # written alongside; imported lazily

            self._sampler = Sampler()
        with torch.inference_mode():
            out: SampleOutput = self._sampler(logits, info)
            return out

    def load_weights_from_disk(self, model_path: str) -> None:
        """Swap in the weights at model_path (same architecture and shapes). On any error a
        ValueError/FileNotFoundError is raised and the current weights stay in place."""
        old = self.model_config
        new = load_model_config(
            model_path,
            self.server_args.dtype,
            self.server_args.context_length,
            native_kernels=self.kernel_backend == "native",
            is_embedding=self.server_args.is_embedding,
        )
        fields = (
            "architectures",
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "tie_word_embeddings",
            "attention_bias",
            "qk_norm",
        )
        diff = [
            f"{f}: {getattr(old, f)} -> {getattr(new, f)}"
            for f in fields
            if getattr(old, f) != getattr(new, f)
        ]
        if diff:
            raise ValueError(
                "the new weights do not match the served model (" + "; ".join(diff) + ")"
            )
        new.dtype = old.dtype
        new.context_len = old.context_len
        model = load_model(new)
        self._post_load(model)
        model.attn_backend = self.attn_backend
        self.model = model
        self.model_config.path = new.path
        logger.info("Updated weights from %s", model_path)
