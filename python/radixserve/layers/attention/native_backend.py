"""Attention through the native kernels: _C.store_kv, _C.decode_attention, _C.extend_attention.

On a CUDA KV pool the same calls go to their `_cuda` twins (csrc/cuda/attention.cu), for the head
dims those kernels are built for. Cascade decode runs on the CPU only: its CUDA twin
(cascade_decode_attention_cuda) is tested but unused, as CUDA runs form no groups
(model_runner.py).
"""

from __future__ import annotations

from typing import Optional

import torch

from radixserve.forward_batch import ForwardBatch
from radixserve.layers.attention.base import AttentionBackend
from radixserve.layers.backend import device_op, native_ops

REQUIRED_OPS = ("store_kv", "decode_attention", "extend_attention")


def native_attention_available(device: str = "cpu", head_dim: Optional[int] = None) -> bool:
    """Whether _C has the attention ops for `device` tensors (and, on CUDA, for `head_dim`:
    the CUDA kernels are instantiated for a few head dims only)."""
    try:
        ops = native_ops()
    except ImportError:
        return False
    suffix = "" if device == "cpu" else f"_{device}"
    if not all(hasattr(ops, name + suffix) for name in REQUIRED_OPS):
        return False
    if device == "cuda" and head_dim is not None:
        return head_dim in ops.cuda_attention_head_dims()
    return True


class NativeBackend(AttentionBackend):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        device = self.kv_pool.device.type
        if not native_attention_available(device):
            raise RuntimeError(
                "the native attention backend needs radixserve._C with store_kv, decode_attention "
                f"and extend_attention for {device} tensors (rebuild with tools/dev_build.sh, or "
                "use --attention-backend torch)"
            )
        self.ops = native_ops()
        k0 = self.kv_pool.k_buffers[0]
        self.store_kv = device_op("store_kv", k0)
        self.decode_attention = device_op("decode_attention", k0)
        self.extend_attention = device_op("extend_attention", k0)
        # An older _C without the cascade kernel (or a CUDA pool): decode every request alone.
        self.has_cascade = device == "cpu" and hasattr(self.ops, "cascade_decode_attention")

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer_id: int, batch: ForwardBatch
    ) -> torch.Tensor:
        self.check(q, k, v, batch)
        k_cache, v_cache = self.kv_pool.get_kv(layer_id)
        # A bfloat16 cache under fp32 activations: the kernels read it as fp32 and store_kv
        # rounds K/V into it; otherwise everything runs in the cache's dtype.
        dtype = q.dtype if (q.dtype, k_cache.dtype) == (torch.float32, torch.bfloat16) else k_cache.dtype
        q, k, v = q.to(dtype).contiguous(), k.to(dtype).contiguous(), v.to(dtype).contiguous()
        self.store_kv(k_cache, v_cache, batch.out_cache_loc, k, v)
        out = torch.empty_like(q)
        window = self.sliding_windows[layer_id]
        scale = self.scale(q.shape[2])
        if batch.is_decode and batch.cascade is not None and window <= 0 and self.has_cascade:
            self.ops.cascade_decode_attention(
                out,
                q,
                k_cache,
                v_cache,
                self.req_to_token,
                batch.req_pool_indices,
                batch.seq_lens,
                batch.cascade.group_ids,
                batch.cascade.prefix_lens,
                scale,
                window,
            )
        elif batch.is_decode:
            self.decode_attention(
                out,
                q,
                k_cache,
                v_cache,
                self.req_to_token,
                batch.req_pool_indices,
                batch.seq_lens,
                scale,
                window,
            )
        else:
            self.extend_attention(
                out,
                q,
                k_cache,
                v_cache,
                self.req_to_token,
                batch.req_pool_indices,
                batch.seq_lens,
                batch.extend_seq_lens,
                batch.extend_start_loc,
                scale,
                window,
            )
        return out
