"""The attention backend interface shared by the reference and the native implementations."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Optional

import torch

from radixserve.cache.memory_pool import KVPool
from radixserve.forward_batch import ForwardBatch


class AttentionBackend(ABC):
    """Owns no memory: reads/writes the KV pool and the req_to_token table given at creation.

    `sliding_windows[layer_id]` is the layer's window (-1: full attention); a query at position p
    sees keys at positions in (p - window, p].
    """

    def __init__(
        self,
        req_to_token: torch.Tensor,
        kv_pool: KVPool,
        sliding_windows: Optional[list[int]] = None,
    ) -> None:
        if req_to_token.dtype != torch.int32 or req_to_token.dim() != 2:
            raise ValueError("req_to_token must be an int32 [max_reqs, max_context] tensor")
        self.req_to_token = req_to_token
        self.kv_pool = kv_pool
        self.sliding_windows = sliding_windows or [-1] * kv_pool.num_layers
        if len(self.sliding_windows) != kv_pool.num_layers:
            raise ValueError("sliding_windows needs one entry per layer")

    def check(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: ForwardBatch) -> None:
        t = batch.num_tokens
        hkv, d = self.kv_pool.num_kv_heads, self.kv_pool.head_dim
        if q.dim() != 3 or q.shape[0] != t or q.shape[2] != d or q.shape[1] % hkv != 0:
            raise ValueError(
                f"q must be [T={t}, Hq (multiple of {hkv}), D={d}], got {tuple(q.shape)}"
            )
        if k.shape != (t, hkv, d) or v.shape != (t, hkv, d):
            raise ValueError(
                f"k and v must be [{t}, {hkv}, {d}], got {tuple(k.shape)}, {tuple(v.shape)}"
            )

    @staticmethod
    def scale(head_dim: int) -> float:
        return 1.0 / math.sqrt(head_dim)

    @abstractmethod
    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer_id: int, batch: ForwardBatch
    ) -> torch.Tensor:
        """q [T, Hq, D], k/v [T, Hkv, D] -> out [T, Hq, D]; stores k/v at batch.out_cache_loc."""
