"""Linear layers. On the native backend the weight is packed once after loading and the product
runs in radixserve._C (decode shapes are memory-bound: the packed layout streams the weight)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from radixserve.layers.backend import native_ops, use_native

# What the native kernel computes in: fp32 x fp32 weights, bf16 x bf16 (fp32 accumulation).
NATIVE_DTYPES = (torch.float32, torch.bfloat16)
# fp32 products of at least this many rows go to torch (oneDNN/MKL sgemm), which measured
# 10-30% faster there except on the (weight-streaming) LM head; bf16 stays native at every M
# (torch's bf16 matmul is 5-8x slower on this AVX2 machine). benchmarks/results/linear.md.
TORCH_FP32_MIN_ROWS = 16
TORCH_FP32_MAX_N = 8192


class Linear(nn.Module):
    """y = x @ W^T + b with W: [out_features, in_features]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias: Optional[nn.Parameter] = (
            nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        )
        self.packed: Optional[torch.Tensor] = None

    def post_load(self) -> None:
        """Called once after the weights are loaded (and cast): packs W for the native kernel.

        The unpacked weight stays: it may be shared (tied embeddings) and serves the torch
        backend. Other dtypes (e.g. float16) or devices keep using torch.
        """
        w = self.weight.data
        native = use_native() and w.device.type == "cpu" and w.dtype in NATIVE_DTYPES
        self.packed = native_ops().pack_linear_weight(w) if native else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and use_native() and not self._torch_is_faster(x):
            shape = x.shape
            out = native_ops().linear(x.reshape(-1, shape[-1]).contiguous(), self.packed, self.bias)
            return out.view(*shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)

    def _torch_is_faster(self, x: torch.Tensor) -> bool:
        rows = x.numel() // max(self.in_features, 1)
        return (
            x.dtype == torch.float32
            and rows >= TORCH_FP32_MIN_ROWS
            and self.out_features <= TORCH_FP32_MAX_N
        )

    def extra_repr(self) -> str:
        packed = self.packed is not None
        return f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}, {packed=}"
