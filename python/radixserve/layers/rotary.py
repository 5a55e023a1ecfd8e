"""Rotary position embedding: a float32 cos/sin cache per position and its application to q/k.

Scaling follows transformers' rope types: default, linear, llama3, dynamic (NTK, computed once for
the full context) and yarn. The cache row of position p holds cos[rot_dim/2] then sin[rot_dim/2].
"""

from __future__ import annotations

import json
import math
import weakref
from typing import Any, Optional

import torch
from torch import nn

from radixserve.layers.backend import device_op, use_native


def _inv_freq(rot_dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, rot_dim, 2, dtype=torch.int64).double() / rot_dim))


def _llama3(inv_freq: torch.Tensor, s: dict[str, Any]) -> torch.Tensor:
    factor = float(s["factor"])
    low, high = float(s.get("low_freq_factor", 1.0)), float(s.get("high_freq_factor", 4.0))
    old_ctx = float(s["original_max_position_embeddings"])
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn(
    rot_dim: int, theta: float, s: dict[str, Any], max_pos: int
) -> tuple[torch.Tensor, float]:
    factor = float(s["factor"])
    old_ctx = int(s.get("original_max_position_embeddings") or max_pos / factor)
    beta_fast, beta_slow = float(s.get("beta_fast") or 32), float(s.get("beta_slow") or 1)
    mscale = s.get("attention_factor") or (0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0)

    def dim_for(rot: float) -> float:
        return (rot_dim * math.log(old_ctx / (rot * 2 * math.pi))) / (2 * math.log(theta))

    low = float(max(math.floor(dim_for(beta_fast)), 0))
    high = float(min(math.ceil(dim_for(beta_slow)), rot_dim - 1))
    if low == high:
        high += 0.001
    ramp = ((torch.arange(rot_dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp
    pos_freqs = _inv_freq(rot_dim, theta)
    inv = (pos_freqs / factor) * (1 - extrapolation) + pos_freqs * extrapolation
    return inv, float(mscale)


def compute_cos_sin_cache(
    rot_dim: int, max_pos: int, theta: float, scaling: Optional[dict[str, Any]] = None
) -> torch.Tensor:
    """float32 [max_pos, rot_dim]: cos of every (position, frequency), then sin."""
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default")) or "default"
    s = scaling or {}
    t = torch.arange(max_pos, dtype=torch.float64)
    mscale = 1.0
    if kind == "default":
        inv = _inv_freq(rot_dim, theta)
    elif kind == "linear":
        inv = _inv_freq(rot_dim, theta)
        t = t / float(s["factor"])
    elif kind == "llama3":
        inv = _llama3(_inv_freq(rot_dim, theta), s)
    elif kind == "dynamic":
        # NTK-aware: the base grows with the served context (transformers recomputes it per
        # sequence length; a static cache uses the full context, exact once seq_len >= max_pos).
        factor, old_ctx = (
            float(s["factor"]),
            float(s.get("original_max_position_embeddings", max_pos)),
        )
        seq = max(max_pos, old_ctx)
        base = theta * ((factor * seq / old_ctx) - (factor - 1)) ** (rot_dim / (rot_dim - 2))
        inv = _inv_freq(rot_dim, base) if seq > old_ctx else _inv_freq(rot_dim, theta)
    elif kind == "yarn":
        inv, mscale = _yarn(rot_dim, theta, s, max_pos)
    else:
        raise ValueError(
            f"unsupported rope scaling type {kind!r} (supported: default, linear, "
            f"llama3, dynamic, yarn)"
        )
    # transformers computes inv_freq in float32 and the angles in float32: match it.
    inv32 = inv.float()
    freqs = torch.outer(t.float(), inv32)
    return torch.cat([freqs.cos() * mscale, freqs.sin() * mscale], dim=-1).float().contiguous()


# One cache per distinct rope (not per layer): layers of a model share the tensor, which is
# freed with the last model that uses it.
_CACHES: weakref.WeakValueDictionary[str, torch.Tensor] = weakref.WeakValueDictionary()


def shared_cos_sin_cache(
    rot_dim: int, max_pos: int, theta: float, scaling: Optional[dict[str, Any]] = None
) -> torch.Tensor:
    """compute_cos_sin_cache, computed once per distinct argument set while it is in use."""
    key = json.dumps([rot_dim, max_pos, theta, scaling], sort_keys=True, default=str)
    cache = _CACHES.get(key)
    if cache is None:
        cache = compute_cos_sin_cache(rot_dim, max_pos, theta, scaling)
        _CACHES[key] = cache
    return cache


def apply_rotary_ref(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    head_size: int,
    cache: torch.Tensor,
    is_neox: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out of place reference: q [T, Hq*D], k [T, Hkv*D] -> rotated copies."""
    cos_sin = cache[positions]
    half = cache.shape[1] // 2
    cos, sin = cos_sin[:, None, :half], cos_sin[:, None, half:]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(shape[0], -1, head_size).float()
        rot, rest = x[..., : 2 * half], x[..., 2 * half :]
        if is_neox:
            x1, x2 = rot[..., :half], rot[..., half:]
            out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
        else:
            x1, x2 = rot[..., 0::2], rot[..., 1::2]
            out = torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)
        return torch.cat([out, rest], dim=-1).reshape(shape)

    return rotate(q).to(q.dtype), rotate(k).to(k.dtype)


class RotaryEmbedding(nn.Module):
    def __init__(
        self,
        head_size: int,
        rot_dim: int,
        max_pos: int,
        theta: float,
        scaling: Optional[dict[str, Any]] = None,
        is_neox: bool = True,
    ) -> None:
        super().__init__()
        self.head_size = head_size
        self.is_neox = is_neox
        self.cos_sin_cache = shared_cos_sin_cache(rot_dim, max_pos, theta, scaling)

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q [T, Hq*D], k [T, Hkv*D] (contiguous) -> rotated (in place on the native path)."""
        if use_native():
            device_op("rotary_embedding", q)(
                positions, q, k, self.head_size, self.cos_sin_cache, self.is_neox
            )
            return q, k
        return apply_rotary_ref(positions, q, k, self.head_size, self.cos_sin_cache, self.is_neox)
