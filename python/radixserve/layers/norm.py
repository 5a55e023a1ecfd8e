"""RMSNorm, with the fused residual-add variant used between decoder layers."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from radixserve.layers.backend import device_op, use_native


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * weight.float()).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size), requires_grad=False)
        self.eps = eps

    def forward(
        self, x: torch.Tensor, residual: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Without residual: norm(x). With residual: (norm(x + residual), x + residual)."""
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if use_native():
            if residual is None:
                out = torch.empty_like(x2)
                device_op("rms_norm", x2)(out, x2.contiguous(), self.weight, self.eps)
                return out.view(shape)
            x2 = x2.contiguous().clone()
            res2 = residual.reshape(-1, shape[-1]).contiguous()
            device_op("fused_add_rms_norm", x2)(x2, res2, self.weight, self.eps)
            return x2.view(shape), res2.view(shape)
        if residual is None:
            return rms_norm_ref(x2, self.weight, self.eps).view(shape)
        summed = (x2.float() + residual.reshape(-1, shape[-1]).float()).to(x.dtype)
        return rms_norm_ref(summed, self.weight, self.eps).view(shape), summed.view(shape)
