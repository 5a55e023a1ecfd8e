"""Attention backends: store the new K/V in the pool, then attend through req_to_token."""

from __future__ import annotations

import torch

from radixserve.cache.memory_pool import KVPool
from radixserve.layers.attention.base import AttentionBackend
from radixserve.layers.attention.flashinfer_backend import FlashInferBackend, load_flashinfer
from radixserve.layers.attention.native_backend import NativeBackend, native_attention_available
from radixserve.layers.attention.torch_backend import TorchBackend


def create_attention_backend(
    name: str, req_to_token: torch.Tensor, kv_pool: KVPool, sliding_windows: list[int]
) -> AttentionBackend:
    if name == "torch":
        return TorchBackend(req_to_token, kv_pool, sliding_windows)
    if name == "native":
        return NativeBackend(req_to_token, kv_pool, sliding_windows)
    if name == "flashinfer":
        if kv_pool.device.type != "cuda":
            raise ValueError("--attention-backend flashinfer needs --device cuda")
        if load_flashinfer() is None:
            raise ValueError(
                "--attention-backend flashinfer needs the flashinfer package "
                "(pip install flashinfer-python); use native or torch"
            )
        return FlashInferBackend(req_to_token, kv_pool, sliding_windows)
    raise ValueError(f"attention backend must be 'native', 'torch' or 'flashinfer', got {name!r}")


__all__ = [
    "AttentionBackend",
    "FlashInferBackend",
    "NativeBackend",
    "TorchBackend",
    "create_attention_backend",
    "native_attention_available",
]
