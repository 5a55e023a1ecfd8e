"""ModelRunner: loads the model and owns its memory (req->token table, KV pool) and backends.

The scheduler builds a ForwardBatch against `req_to_token_pool` and KV slots from its allocator,
calls `forward(batch)` for float32 logits and `sample(logits, info)` for the next tokens.

With `--device cuda` the weights, the KV pool, the device copy of req_to_token, the logits and
sampling live on the GPU; `forward` stages the host-built batch in one transfer (device.py) and
decode batches replay CUDA graphs (engine/cuda_graph.py). The GPU path is compile-checked and
CPU-simulated only in this project (benchmarks/results/gpu.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Optional, Union

import torch

from radixserve.args import ServerArgs
from radixserve.cache.memory_pool import KVPool, ReqToTokenPool, resolve_kv_cache_dtype
from radixserve.device import cuda_kernels_built, resolve_device, stage_batch
from radixserve.engine.cuda_graph import DecodeGraphRunner, graph_batch_sizes
from radixserve.engine.heap import trim_heap
from radixserve.forward_batch import ForwardBatch, PausedForward
from radixserve.layers.attention import create_attention_backend, native_attention_available
from radixserve.layers.backend import native_ops, set_kernel_backend
from radixserve.layers.linear import Linear
from radixserve.layers.rotary import RotaryEmbedding
from radixserve.layers.sampling_info import SampleOutput, SamplingBatchInfo
from radixserve.models.config import ModelConfig
from radixserve.models.gguf_loader import release_gguf_readers
from radixserve.models.loader import load_model, load_model_config
from radixserve.models.tokenizer import load_tokenizer

if TYPE_CHECKING:
    from radixserve.layers.sampler import Sampler

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


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Weight loading on one thread (torch and the OpenMP kernels of radixserve._C alike). Its
    copies and packs are small memory-bound steps: on a loaded 2-core host an OpenMP team of
    two took 20 ms per Q4_1 pack (0.1 ms alone) and 55 ms per torch.cat of a fused weight
    (0.5 ms), every barrier waiting for a descheduled worker: seconds of start-up."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ModelRunner:
    def __init__(self, server_args: ServerArgs, mirror_req_to_token: bool = False) -> None:
        """`mirror_req_to_token`: on the CPU, keep a separate device table fed only by the
        per-step transfer, as on a GPU (tests of the host/device split)."""
        self.server_args = server_args
        torch.set_num_threads(server_args.num_threads or os.cpu_count() or 1)
        self.device = torch.device(resolve_device(server_args.device))
        if self.device.type == "cuda":
            if self.device.index is None:  # "cuda": the current GPU, named (set_device needs it)
                self.device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(self.device)
        if self.device.type != "cpu":
            # Cascade groups would keep decode batches out of the CUDA graphs: the scheduler
            # (same args object) forms no groups.
            server_args.disable_cascade_attention = True
        self.kernel_backend = self._pick_kernel_backend(server_args.kernel_backend, self.device)
        set_kernel_backend(self.kernel_backend)

        self.model_config: ModelConfig = load_model_config(
            server_args.model_path,
            server_args.dtype,
            server_args.context_length,
            native_kernels=self.kernel_backend == "native",
            is_embedding=server_args.is_embedding,
        )
        self.model_config.encoder_linear_format = server_args.encoder_linear_format
        self.model_config.encoder_fused_stack = not server_args.disable_encoder_stack
        self.model_config.encoder_serial_max_tokens = server_args.encoder_serial_max_tokens
        # Pooling models (#8) return one vector per request from forward(), never logits.
        self.is_pooling = not self.model_config.is_generation
        self.context_len = self.model_config.context_len
        self.tokenizer: Any = load_tokenizer(self.model_config.path, server_args.tokenizer_path)
        if self.device.type != "cpu":  # quantized weights are read by the CPU kernels only
            self.model_config.keep_quantized = False
        with one_thread():
            self.model: Any = self._place(load_model(self.model_config))
        release_gguf_readers()  # everything is loaded: the parsed GGUF is garbage now
        trim_heap()

        # An encoder's pool is a placeholder (below): it keeps the model's dtype.
        self.kv_dtype = (
            self.model_config.dtype
            if self.model_config.is_encoder
            else resolve_kv_cache_dtype(
                server_args.kv_cache_dtype,
                self.model_config.dtype,
                self.device,
                # a GGUF kept quantized (as llama.cpp, whose KV cache is 16-bit by default);
                # measured on the default model (memory_startup.md)
                auto_bf16=self.model_config.keep_quantized,
            )
        )
        self.max_total_tokens = self._kv_pool_size()
        self.req_to_token_pool = ReqToTokenPool(
            server_args.max_running_requests + SPARE_REQ_ROWS,
            self.context_len,
            self.device,
            mirror=mirror_req_to_token,
        )
        cfg = self.model_config
        # An encoder keeps no KV (whole prompts, bidirectional): its slots are only the
        # scheduler's accounting, so the pool is a 1x1x1 placeholder per slot.
        kv_dims = (1, 1, 1) if cfg.is_encoder else (cfg.num_layers, cfg.num_kv_heads, cfg.head_dim)
        self.kv_pool = KVPool(self.max_total_tokens, *kv_dims, self.kv_dtype, self.device)
        logger.info(
            "KV pool on %s: %d tokens, %.1f MiB (%s); %d request rows of %d tokens",
            self.device,
            self.max_total_tokens,
            self.kv_pool.size_bytes / 2**20,
            str(self.kv_dtype).replace("torch.", ""),
            self.req_to_token_pool.size,
            self.context_len,
        )
        self.attention_backend_name = server_args.attention_backend
        if self.attention_backend_name == "native" and not native_attention_available(
            self.device.type, cfg.head_dim
        ):
            logger.warning(
                "radixserve._C has no native attention kernels for %s tensors with head_dim %d: "
                "using the torch attention backend",
                self.device.type,
                cfg.head_dim,
            )
            self.attention_backend_name = "torch"
        self.attn_backend = create_attention_backend(
            self.attention_backend_name,
            self.req_to_token_pool.device_table,
            self.kv_pool,
            [-1] if cfg.is_encoder else cfg.layer_sliding_windows,  # encoder: placeholder pool
        )
        self.model.attn_backend = self.attn_backend
        self._sampler: Optional[Sampler] = None
        self.graph_runner: Optional[DecodeGraphRunner] = self._make_graph_runner()

    @staticmethod
    def _pick_kernel_backend(name: str, device: torch.device) -> str:
        if name != "native":
            return name
        if device.type == "cuda" and not cuda_kernels_built():
            logger.warning("radixserve._C was built without CUDA: using the torch kernel backend")
            return "torch"
        missing = missing_native_ops(NATIVE_LAYER_OPS)
        if missing:
            logger.warning(
                "radixserve._C lacks %s: using the torch kernel backend", ", ".join(missing)
            )
            return "torch"
        return "native"

    def _place(self, model: torch.nn.Module) -> Any:
        """Move a freshly loaded model to the device, then pack its weights for the kernels."""
        if self.device.type != "cpu":
            model = model.to(self.device)
            for module in model.modules():  # plain attributes (shared caches), not buffers
                if isinstance(module, RotaryEmbedding):
                    module.cos_sin_cache = module.cos_sin_cache.to(self.device)
        self._post_load(model)
        return model

    def _post_load(self, model: torch.nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, Linear):
                module.post_load()

    def _make_graph_runner(self) -> Optional[DecodeGraphRunner]:
        """CUDA graphs for decode (--device cuda, native attention, not disabled), else None."""
        args = self.server_args
        if self.device.type != "cuda" or args.disable_cuda_graph or self.is_pooling:
            return None
        if self.attention_backend_name != "native" or self.kernel_backend != "native":
            logger.warning(
                "CUDA graphs need the native attention and kernel backends (got %s/%s): "
                "decode runs eagerly",
                self.attention_backend_name,
                self.kernel_backend,
            )
            return None
        max_bs = args.cuda_graph_max_bs or args.max_running_requests
        runner = DecodeGraphRunner(self.model, graph_batch_sizes(max_bs), self.device, True)
        runner.capture_all()
        return runner

    def _kv_pool_size(self) -> int:
        args = self.server_args
        if args.max_total_tokens is not None:
            return int(args.max_total_tokens)
        if self.model_config.is_encoder:
            return int(args.max_running_requests * self.context_len)
        per_token = self.model_config.kv_bytes_per_token(self.kv_dtype)
        free = (
            torch.cuda.mem_get_info(self.device)[0]
            if self.device.type == "cuda"
            else available_memory_bytes()
        )
        budget = int(free * args.mem_fraction_static)
        tokens = budget // per_token
        if tokens < 16:
            raise ValueError(
                f"--mem-fraction-static {args.mem_fraction_static} leaves room for only {tokens} "
                f"KV tokens ({per_token} bytes each): raise it or set --max-total-tokens"
            )
        return int(tokens)

    def stage(self, batch: ForwardBatch) -> ForwardBatch:
        """The batch on the device, and the new req_to_token entries applied there: one transfer.
        Identity on the CPU (unless the table is mirrored)."""
        pool = self.req_to_token_pool
        if self.device.type == "cpu" and not pool.mirrored:
            return batch
        if batch.seq_lens_list and max(batch.seq_lens_list) > self.context_len:
            raise ValueError(
                f"position {max(batch.seq_lens_list) - 1} is beyond the context length "
                f"{self.context_len}"
            )
        staged, updates = stage_batch(batch, self.device, pool.take_updates())
        if updates is not None:
            pool.apply_updates(updates)
        return staged

    @property
    def can_pause(self) -> bool:
        """Can forward() stop between decoder layers (should_pause / resume)? On the CPU, for
        generation models that support it."""
        return (
            self.device.type == "cpu"
            and not self.is_pooling
            and hasattr(self.model, "forward_pausable")
        )

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """float32 logits [n, vocab] at the batch's logits positions (last token per request),
        on the runner's device."""
        with torch.inference_mode():
            batch = self.stage(batch)
            if self.graph_runner is not None:
                logits = self.graph_runner.forward(batch)
                if logits is not None:
                    return logits
            hidden = self.model(batch)
            if self.is_pooling:  # [bs, D] embeddings or classifier logits, float32
                return hidden.float()  # type: ignore[no-any-return]
            return self.model.compute_logits(hidden)  # type: ignore[no-any-return]

    def forward_pausable(
        self,
        batch: ForwardBatch,
        should_pause: Optional[Callable[[], bool]],
        resume: Optional[PausedForward] = None,
    ) -> Union[torch.Tensor, PausedForward]:
        """forward() where can_pause: `should_pause` is asked after every decoder layer and
        between the LM head's vocabulary slices, and a True stops the forward there,
        returning a PausedForward; passed back as `resume` (with the same batch) it runs the
        rest. (The LM head over a background step's 64 decode rows is ~a fifth of its FLOPs.)"""
        with torch.inference_mode():
            staged = resume.batch if resume is not None else self.stage(batch)
            if resume is not None and resume.logits is not None:  # paused inside the LM head
                hidden, logits, begin = resume.h, resume.logits, resume.next_column
            else:
                out = self.model.forward_pausable(staged, should_pause, resume)
                if isinstance(out, PausedForward):
                    return out
                hidden, logits, begin = out, None, 0
            logits, paused_at = self.model.compute_logits_pausable(
                hidden, should_pause, logits, begin
            )
            if paused_at is not None:
                num_layers = self.model_config.num_layers
                return PausedForward(staged, hidden, None, num_layers, logits, paused_at)
            return logits  # type: ignore[no-any-return]

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
        if self.device.type != "cpu":
            new.keep_quantized = False
        with one_thread():
            model = self._place(load_model(new))
        model.attn_backend = self.attn_backend
        self.model = model
        release_gguf_readers()
        trim_heap()
        if self.graph_runner is not None:  # the graphs recorded the old weights' addresses
            self.graph_runner = self._make_graph_runner()
        self.model_config.path = new.path
        logger.info("Updated weights from %s", model_path)
