"""LayerNorm (with an optional fused residual add), GELU and bidirectional attention over packed
sequences for encoder (BERT-family) models.

The native kernels (`_C.layer_norm`, `_C.gelu`, `_C.encoder_attention`) run when the native
backend is on and the module has them; the PyTorch references below define what they compute
and back the tests.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from radixserve.layers.backend import native_ops, use_native


def _native_has(name: str) -> bool:
    if not use_native():
        return False
    try:
        return hasattr(native_ops(), name)
    except ImportError:
        return False


def layer_norm_ref(
    x: torch.Tensor,
    residual: Optional[torch.Tensor],
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    xf = x.float() if residual is None else x.float() + residual.float()
    out = F.layer_norm(xf, (xf.shape[-1],), weight.float(), bias.float(), eps)
    return out.to(x.dtype)


def gelu_ref(x: torch.Tensor, tanh_approx: bool = False) -> torch.Tensor:
    return F.gelu(x.float(), approximate="tanh" if tanh_approx else "none").to(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm over the last dim; `forward(x, residual)` normalises x + residual in one pass."""

    def __init__(self, hidden_size: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(hidden_size), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if _native_has("layer_norm") and x.device.type == "cpu":
            # The encoder's [T, H] rows go as they are: each reshape / view is ~1-3 us of
            # dispatch, 13 calls per BERT-base-sized forward.
            x2, res2 = _rows(x), None if residual is None else _rows(residual)
            out = torch.empty_like(x2)
            native_ops().layer_norm(out, x2, res2, self.weight, self.bias, self.eps)
            return out if x2 is x else out.view(x.shape)
        return layer_norm_ref(x, residual, self.weight, self.bias, self.eps)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t as contiguous [rows, last dim]: t itself when it already is."""
    if t.dim() == 2 and t.is_contiguous():
        return t
    return t.reshape(-1, t.shape[-1]).contiguous()


def gelu(x: torch.Tensor, tanh_approx: bool = False) -> torch.Tensor:
    if _native_has("gelu") and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16):
        xc = x.contiguous()
        out = torch.empty_like(xc)
        native_ops().gelu(out, xc, tanh_approx)
        return out
    return gelu_ref(x, tanh_approx)


def encoder_attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: list[int], scale: float
) -> torch.Tensor:
    """torch SDPA per sequence (non-causal): q, k, v [T, heads, head_dim] -> [T, heads * head_dim]."""
    t = q.shape[0]
    if len(set(lens)) == 1:  # equal lengths: one batched call
        bs, n = len(lens), lens[0]
        qb, kb, vb = (x.reshape(bs, n, *x.shape[1:]).transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(qb, kb, vb, scale=scale)
        return out.transpose(1, 2).reshape(t, -1)
    parts, s = [], 0
    for n in lens:
        qs, ks, vs = (x[s : s + n].transpose(0, 1) for x in (q, k, v))
        parts.append(F.scaled_dot_product_attention(qs, ks, vs, scale=scale).transpose(0, 1))
        s += n
    return torch.cat(parts).reshape(t, -1)


def encoder_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lens: list[int],
    cu_seqlens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Every query attends to every key of its own sequence; sequences packed back to back
    (`lens`, and `cu_seqlens` = [0, cumsum(lens)] for the kernel). Returns [T, heads * head_dim]."""
    if _native_has("encoder_attention") and q.device.type == "cpu" and q.dtype == torch.float32:
        out = torch.empty(q.shape, dtype=q.dtype)
        native_ops().encoder_attention(out, q, k, v, cu_seqlens, scale)
        return out.view(q.shape[0], -1)
    return encoder_attention_ref(q, k, v, lens, scale)
