"""Native rms_norm, fused_add_rms_norm, rotary_embedding and silu_and_mul vs PyTorch references."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from isa_builds import isa_fixture
from radixserve import _C

DTYPES = [torch.float32, torch.bfloat16]


isa = isa_fixture(_C.set_isa)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """fp32 tight; bf16 within one rounding of the result (plus fp32 summation-order noise)."""
    if actual.dtype == torch.bfloat16:
        torch.testing.assert_close(actual.float(), expected.float(), atol=1e-2, rtol=1.6e-2)
    else:
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def rms_ref(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w.float()).to(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "n, h", [(1, 576), (7, 576), (3, 1), (5, 17), (2, 333), (9, 1024), (4, 4097)]
)
def test_rms_norm(isa: str, dtype: torch.dtype, n: int, h: int) -> None:
    g = torch.Generator().manual_seed(n * 1000 + h)
    x = (torch.randn(n, h, generator=g) * 3).to(dtype)
    for w in (torch.randn(h, generator=g), torch.randn(h, generator=g).to(dtype)):
        out = torch.full_like(x, float("nan"))
        _C.rms_norm(out, x, w, 1e-6)
        close(out, rms_ref(x, w, 1e-6))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, h", [(1, 576), (6, 576), (3, 31), (2, 100), (5, 2048)])
def test_fused_add_rms_norm(isa: str, dtype: torch.dtype, n: int, h: int) -> None:
    g = torch.Generator().manual_seed(n * 1000 + h + 1)
    x = torch.randn(n, h, generator=g).to(dtype)
    res = torch.randn(n, h, generator=g).to(dtype)
    w = torch.randn(h, generator=g)
    summed = (x.float() + res.float()).to(dtype)
    x2, res2 = x.clone(), res.clone()
    _C.fused_add_rms_norm(x2, res2, w, 1e-5)
    assert torch.equal(res2, summed)
    close(x2, rms_ref(summed, w, 1e-5))


def cos_sin_cache(max_pos: int, rot_dim: int) -> torch.Tensor:
    inv = 1.0 / (10000 ** (torch.arange(0, rot_dim, 2).float() / rot_dim))
    f = torch.outer(torch.arange(max_pos).float(), inv)
    return torch.cat([f.cos(), f.sin()], dim=-1)


def rope_ref(
    pos: torch.Tensor, x: torch.Tensor, d: int, cache: torch.Tensor, neox: bool
) -> torch.Tensor:
    half = cache.shape[1] // 2
    cos, sin = cache[pos][:, None, :half], cache[pos][:, None, half:]
    y = x.reshape(x.shape[0], -1, d).float()
    rot, rest = y[..., : 2 * half], y[..., 2 * half :]
    if neox:
        a, b = rot[..., :half], rot[..., half:]
        r = torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
    else:
        a, b = rot[..., 0::2], rot[..., 1::2]
        r = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)
    return torch.cat([r, rest], dim=-1).reshape(x.shape).to(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neox", [True, False])
@pytest.mark.parametrize(
    "t, hq, hkv, d, rot",
    [
        (1, 9, 3, 64, 64),
        (7, 9, 3, 64, 64),
        (5, 8, 2, 128, 128),
        (3, 4, 4, 80, 80),
        (2, 2, 1, 256, 256),
        (4, 3, 1, 64, 32),
        (6, 2, 2, 6, 6),
    ],
)
def test_rotary_embedding(
    isa: str, dtype: torch.dtype, neox: bool, t: int, hq: int, hkv: int, d: int, rot: int
) -> None:
    g = torch.Generator().manual_seed(t * 100 + d + rot)
    cache = cos_sin_cache(300, rot)
    pos = torch.randint(0, 300, (t,), generator=g)
    q = torch.randn(t, hq * d, generator=g).to(dtype)
    k = torch.randn(t, hkv * d, generator=g).to(dtype)
    q_ref, k_ref = rope_ref(pos, q, d, cache, neox), rope_ref(pos, k, d, cache, neox)
    _C.rotary_embedding(pos, q, k, d, cache, neox)
    close(q, q_ref)
    close(k, k_ref)


def test_rotary_embedding_on_views_of_a_fused_qkv() -> None:
    """Strided rows (q and k sliced out of one qkv tensor) and [T, H, D] views are rotated in place."""
    g = torch.Generator().manual_seed(5)
    t, hq, hkv, d = 5, 6, 2, 64
    qkv = torch.randn(t, (hq + 2 * hkv) * d, generator=g)
    expected = qkv.clone()
    cache, pos = cos_sin_cache(64, d), torch.arange(t) * 3
    q, k, _ = qkv.split([hq * d, hkv * d, hkv * d], dim=-1)
    expected[:, : hq * d] = rope_ref(pos, q, d, cache, True)
    expected[:, hq * d : (hq + hkv) * d] = rope_ref(pos, k, d, cache, True)
    _C.rotary_embedding(pos, q, k.view(t, hkv, d), d, cache, True)
    close(qkv, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, i", [(1, 1536), (5, 1536), (3, 1), (4, 13), (2, 100), (9, 4096)])
def test_silu_and_mul(isa: str, dtype: torch.dtype, n: int, i: int) -> None:
    g = torch.Generator().manual_seed(n * 10 + i)
    x = (torch.randn(n, 2 * i, generator=g) * 4).to(dtype)
    x[0, 0] = -100.0  # far negative: silu -> -0, exp must not overflow into NaN
    out = torch.full((n, i), float("nan"), dtype=dtype)
    _C.silu_and_mul(out, x)
    close(out, (F.silu(x[:, :i].float()) * x[:, i:].float()).to(dtype))


def test_bad_inputs_raise() -> None:
    x, w = torch.randn(4, 8), torch.ones(8)
    with pytest.raises(ValueError, match="weight"):
        _C.rms_norm(torch.empty(4, 8), x, torch.ones(7), 1e-6)
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        _C.rms_norm(torch.empty(4, 8).half(), x.half(), w, 1e-6)
    with pytest.raises(ValueError, match="shape"):
        _C.rms_norm(torch.empty(4, 9), x, w, 1e-6)
    with pytest.raises(ValueError, match="contiguous"):
        _C.rms_norm(torch.empty(4, 8), torch.randn(8, 4).t(), w, 1e-6)
    with pytest.raises(ValueError, match="CPU"):
        _C.rms_norm(torch.empty(4, 8, device="meta"), x, w, 1e-6)
    with pytest.raises(ValueError, match="different"):
        _C.fused_add_rms_norm(x, x, w, 1e-6)
    with pytest.raises(ValueError, match="dtype"):
        _C.fused_add_rms_norm(x, x.bfloat16(), w, 1e-6)
    with pytest.raises(ValueError, match="even"):
        _C.silu_and_mul(torch.empty(4, 3), torch.randn(4, 7))
    with pytest.raises(ValueError, match="size"):
        _C.silu_and_mul(torch.empty(4, 3), torch.randn(4, 8))
    cache = cos_sin_cache(10, 8)
    q, k = torch.randn(2, 16), torch.randn(2, 8)
    with pytest.raises(ValueError, match="out of range"):
        _C.rotary_embedding(torch.tensor([0, 10]), q, k, 8, cache, True)
    with pytest.raises(ValueError, match="whole number of heads"):
        _C.rotary_embedding(torch.tensor([0, 1]), q, torch.randn(2, 12), 8, cache, True)
    with pytest.raises(ValueError, match="rot_dim"):
        _C.rotary_embedding(torch.tensor([0, 1]), q, k, 4, cache, True)
    with pytest.raises(ValueError, match="Long"):
        _C.rotary_embedding(torch.tensor([0, 1], dtype=torch.int32), q, k, 8, cache, True)
    with pytest.raises(ValueError, match="contiguous"):
        _C.rotary_embedding(torch.tensor([0, 1]), torch.randn(16, 2).t(), k, 8, cache, True)
    with pytest.raises(ValueError, match="dtype"):
        _C.rotary_embedding(torch.tensor([0, 1]), q, k.bfloat16(), 8, cache, True)


def test_set_isa_and_features() -> None:
    f = _C.cpu_features()
    assert set(f) >= {"avx2", "avx512", "avx512_bf16", "best_isa", "isa"}
    assert f["best_isa"] == ("avx512" if f["avx512"] else "avx2" if f["avx2"] else "generic")
    _C.set_isa("generic")
    assert _C.cpu_features()["isa"] == "generic"
    _C.set_isa("auto")
    with pytest.raises(ValueError, match="unknown ISA"):
        _C.set_isa("sse9")
    if not f["avx512"]:
        with pytest.raises(ValueError, match="not supported"):
            _C.set_isa("avx512")


def test_isa_environment_variable_forces_the_portable_build() -> None:
    env = {**os.environ, "RADIXSERVE_ISA": "generic"}
    code = "from radixserve import _C; print(_C.cpu_features()['isa'])"
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert res.stdout.strip() == "generic"
