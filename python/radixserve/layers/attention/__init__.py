"""Attention backends: store the new K/V in the pool, then attend through req_to_token."""

from __future__ import annotations

import torch

from radixserve.cache.memory_pool import KVPool
from radixserve.layers.attention.base import AttentionBackend
from radixserve.layers.attention.native_backend import NativeBackend, native_attention_available
from radixserve.layers.attention.torch_backend import TorchBackend


def create_attention_backend(
    name: str, req_to_token: torch.Tensor, kv_pool: KVPool, sliding_windows: list[int]
) -> AttentionBackend:
    if name == "torch":
        return TorchBackend(req_to_token, kv_pool, sliding_windows)
    if name == "native":
        return NativeBackend(req_to_token, kv_pool, sliding_windows)
    raise ValueError(f"attention backend must be 'native' or 'torch', got {name!r}")


__all__ = [
    "AttentionBackend",
    "NativeBackend",
    "TorchBackend",
    "create_attention_backend",
    "native_attention_available",
]
