"""SiLU-and-mul: the gated activation of Llama-family MLPs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from radixserve.layers.backend import device_op, use_native


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    return (F.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x: [..., 2 * d] (gate then up) -> [..., d]."""
    if not use_native():
        return silu_and_mul_ref(x)
    d = x.shape[-1] // 2
    x2 = x.reshape(-1, 2 * d).contiguous()
    out = torch.empty(x2.shape[0], d, dtype=x.dtype, device=x.device)
    device_op("silu_and_mul", x2)(out, x2)
    return out.view(*x.shape[:-1], d)
