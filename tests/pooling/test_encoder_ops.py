"""Native LayerNorm (+ fused residual), GELU and encoder attention against their PyTorch
references (encoder attention: torch SDPA per sequence), on every ISA build this CPU has."""

from __future__ import annotations

import pytest
import torch

from isa_builds import isa_fixture
from radixserve.layers.encoder_ops import (
    LayerNorm,
    encoder_attention_ref,
    gelu_ref,
    layer_norm_ref,
)

_C = pytest.importorskip("radixserve._C")
if not hasattr(_C, "layer_norm"):
    pytest.skip("radixserve._C was built without the encoder ops", allow_module_level=True)

isa = isa_fixture(_C.set_isa)


@pytest.mark.parametrize("n,h", [(1, 1), (3, 7), (5, 32), (4, 384), (2, 1000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_residual", [False, True])
def test_layer_norm(isa: str, n: int, h: int, dtype: torch.dtype, with_residual: bool) -> None:
    g = torch.Generator().manual_seed(n * 1000 + h)
    x = (torch.randn(n, h, generator=g) * 3 + 1).to(dtype)
    res = torch.randn(n, h, generator=g).to(dtype) if with_residual else None
    w, b = torch.randn(h, generator=g), torch.randn(h, generator=g)
    out = torch.empty_like(x)
    _C.layer_norm(out, x, res, w, b, 1e-12)
    ref = layer_norm_ref(x, res, w, b, 1e-12)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("layout", ["rows", "batched", "strided"])
@pytest.mark.parametrize("with_residual", [False, True])
def test_layer_norm_module_layouts(layout: str, with_residual: bool) -> None:
    """The module passes contiguous [T, H] rows straight to the kernel and reshapes (or copies)
    anything else: [B, T, H] keeps its shape, a strided view gives the same numbers."""
    g = torch.Generator().manual_seed(7)
    norm = LayerNorm(48, 1e-12)
    norm.weight.data, norm.bias.data = torch.randn(48, generator=g), torch.randn(48, generator=g)
    base = torch.randn(3, 5, 48, generator=g) * 2
    x = {"rows": base[0], "batched": base, "strided": base.transpose(0, 1)}[layout]
    res = torch.randn(x.shape, generator=g).transpose(0, -2).contiguous().transpose(0, -2)
    res = res if with_residual else None
    out = norm(x, res)
    assert out.shape == x.shape
    ref = layer_norm_ref(x, res, norm.weight, norm.bias, 1e-12)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 33), (2, 4096), (5, 1536)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tanh_approx", [False, True])
def test_gelu(isa: str, shape: tuple[int, ...], dtype: torch.dtype, tanh_approx: bool) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(*shape, generator=g) * 4).to(dtype)
    out = torch.empty_like(x)
    _C.gelu(out, x, tanh_approx)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), gelu_ref(x, tanh_approx).float(), atol=tol, rtol=tol)


def test_gelu_extremes(isa: str) -> None:
    x = torch.tensor([-100.0, -10.0, -1e-3, 0.0, 1e-3, 10.0, 100.0])
    out = torch.empty_like(x)
    _C.gelu(out, x, False)
    torch.testing.assert_close(out, gelu_ref(x), atol=1e-6, rtol=1e-6)


def test_bad_arguments() -> None:
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="weight"):
        _C.layer_norm(torch.empty_like(x), x, None, torch.ones(7), torch.zeros(8), 1e-5)
    with pytest.raises(ValueError, match="residual"):
        _C.layer_norm(torch.empty_like(x), x, torch.randn(3, 8), torch.ones(8), torch.zeros(8), 1e-5)
    with pytest.raises(ValueError, match="shape"):
        _C.gelu(torch.empty(3), x, False)


def _packed_qkv(
    lens: list[int], heads: int, head_dim: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v as strided views of one fused [T, 3, heads, head_dim] projection (as BERT has),
    and cu_seqlens."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(sum(lens), 3, heads, head_dim, generator=g) * 2
    q, k, v = qkv.unbind(1)
    cu = torch.tensor([0] + [sum(lens[: i + 1]) for i in range(len(lens))], dtype=torch.int32)
    return q, k, v, cu


@pytest.mark.parametrize(
    "lens,heads,head_dim",
    [
        ([1], 1, 1),
        ([5], 2, 3),
        ([17, 1, 33], 3, 8),
        ([128], 12, 32),
        ([128] * 4, 12, 32),
        ([7, 40, 64, 1, 100], 4, 16),
        ([33, 65], 2, 64),
        ([3, 250], 1, 24),
        ([513], 2, 40),
        ([0, 9, 0], 2, 8),
    ],
)
def test_encoder_attention(isa: str, lens: list[int], heads: int, head_dim: int) -> None:
    q, k, v, cu = _packed_qkv(lens, heads, head_dim, sum(lens) * 31 + heads * 7 + head_dim)
    scale = head_dim**-0.5
    out = torch.full(q.shape, float("nan"))
    _C.encoder_attention(out, q, k, v, cu, scale)
    ref = encoder_attention_ref(q, k, v, [n for n in lens if n], scale)
    torch.testing.assert_close(out.reshape(q.shape[0], -1), ref, atol=2e-5, rtol=1e-4)


def test_encoder_attention_contiguous_and_large_scores(isa: str) -> None:
    """Plain contiguous q/k/v, int64 cu_seqlens, and scores large enough that a softmax without
    the max subtraction would overflow."""
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(48, 2, 16, generator=g) * 8 for _ in range(3))
    cu = torch.tensor([0, 20, 48], dtype=torch.int64)
    out = torch.empty_like(q)
    _C.encoder_attention(out, q, k, v, cu, 1.0)
    ref = encoder_attention_ref(q, k, v, [20, 28], 1.0)
    torch.testing.assert_close(out.reshape(48, -1), ref, atol=1e-4, rtol=1e-4)


def test_encoder_attention_bad_arguments() -> None:
    q = torch.randn(6, 2, 4)
    out = torch.empty_like(q)
    cu = torch.tensor([0, 6], dtype=torch.int32)
    with pytest.raises(ValueError, match="cu_seqlens must end"):
        _C.encoder_attention(out, q, q, q, torch.tensor([0, 5], dtype=torch.int32), 1.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        _C.encoder_attention(out, q, q, q, torch.tensor([0, 4, 3, 6], dtype=torch.int32), 1.0)
    with pytest.raises(ValueError, match="cu_seqlens\\[0\\]"):
        _C.encoder_attention(out, q, q, q, torch.tensor([1, 6], dtype=torch.int32), 1.0)
    with pytest.raises(ValueError, match="float32"):
        _C.encoder_attention(out, q.bfloat16(), q, q, cu, 1.0)
    with pytest.raises(ValueError, match="shape of q"):
        _C.encoder_attention(out, q, torch.randn(6, 2, 5), q, cu, 1.0)
    with pytest.raises(ValueError, match="contiguous"):
        _C.encoder_attention(out, q, q, torch.randn(6, 4, 2).transpose(1, 2), cu, 1.0)
