"""Native int16 linear (_C.int16_linear) against PyTorch: the same rounding rule done in torch,
the products summed exactly in int64, scaled in float64; every ISA build this CPU runs."""

from __future__ import annotations

from typing import Optional

import pytest
import torch

from isa_builds import isa_fixture
from radixserve import _C

# Row counts around every tile height (AVX2: 3-6 rows in assembly, 1-2 in intrinsics; AVX-512:
# 8), both sides of the small-M order's limit (64: K chunk outer, the next chunk prefetched) and
# past a row chunk (96); (N, K): odd, partial channel blocks, odd K (padded pair), MiniLM's
# shapes.
MS = [1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 16, 64, 65, 97, 200]
SHAPES = [(7, 33), (45, 17), (32, 64), (100, 130), (384, 384), (1152, 384), (384, 1536)]
# (weight bits, activation bits): the encoders' (K blocks of 128), 11 + 11 (one block up to
# K = 2052) and 15 + 15 (blocks of 8: many int32 -> fp32 flushes).
BITS = [(12, 14), (11, 11), (15, 15)]


isa = isa_fixture(_C.set_isa)


def round_rows(v: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's rule per row in fp32: q = round_half_even(v * (Q / max|v|)), scale max|v|/Q."""
    qmax = float(2 ** (bits - 1) - 1)
    a = v.abs().amax(dim=1)
    # fp32 divisions, correctly rounded as in C++ (computed in fp64, then rounded once: exact
    # for a quotient of two floats); torch's `scalar / tensor` multiplies by a reciprocal.
    inv = (qmax / a.double()).float()
    scale = (a.double() / qmax).float()
    zero = a == 0
    inv[zero], scale[zero] = 0.0, 0.0
    q = torch.round(v * inv[:, None]).clamp(-qmax, qmax)
    return q.to(torch.int64), scale


def reference(
    x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor], wbits: int, xbits: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(exact result in float64, its rounding allowance) of the int16 product."""
    xq, sx = round_rows(x, xbits)
    wq, sw = round_rows(w, wbits)
    acc = xq @ wq.T  # int64: exact
    scale = sx.double()[:, None] * sw.double()[None, :]
    ref = acc.double() * scale
    # The kernel's fp32 steps (block sums -> fp32, their adds, * sx * sw, + bias) each round by
    # at most 2^-24 of a magnitude below sum |xq||wq| * scale + |b|.
    bound = (xq.abs() @ wq.abs().T).double() * scale
    if b is not None:
        ref = ref + b.double()
        bound = bound + b.double().abs()
    return ref, 8 * 2.0**-24 * bound + 1e-30


def check(m: int, n: int, k: int, bits: tuple[int, int], with_bias: bool, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    x = torch.randn(m, k, generator=g) * torch.rand(m, 1, generator=g) * 10  # rows of any scale
    b = torch.randn(n, generator=g) if with_bias else None
    packed = _C.pack_int16_weight(w, *bits)
    out = _C.int16_linear(x, packed, b)
    assert out.dtype == torch.float32 and out.shape == (m, n)
    ref, tol = reference(x, w, b, *bits)
    err = (out.double() - ref).abs()
    assert bool((err <= tol).all()), f"max error {err.max():.3g}, allowed {tol.min():.3g}.."


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("n,k", SHAPES)
def test_int16_linear_matches_exact_reference(
    isa: str, n: int, k: int, bits: tuple[int, int]
) -> None:
    big = n * k >= 100_000
    ms = ([1, 9] if isa == "generic" else [1, 7, 9, 64, 97]) if big else MS
    for i, m in enumerate(ms):
        check(m, n, k, bits, with_bias=i % 2 == 0, seed=1000 * n + 10 * k + m)


def test_packed_weight_is_the_rounded_weight() -> None:
    w = torch.randn(45, 33)
    w[3] = 0.0  # a zero channel: scale 0, all zeros
    wq, scales, act_bits, kblock = _C.int16_weight(_C.pack_int16_weight(w, 12, 14))
    q, s = round_rows(w, 12)
    assert torch.equal(wq.long(), q) and torch.equal(scales, s)
    assert act_bits == 14 and kblock == 34  # K pairs: 33 -> 34, below the 128 overflow bound
    assert _C.int16_weight(_C.pack_int16_weight(torch.randn(8, 1536), 12, 14))[3] == 128
    assert _C.int16_weight(_C.pack_int16_weight(torch.randn(8, 1536), 12, 12))[3] == 512


@pytest.mark.parametrize("bits", [(12, 14), (11, 11), (15, 15), (12, 12)])
def test_no_int32_overflow_at_k_1536_worst_case(isa: str, bits: tuple[int, int]) -> None:
    # Every product at +-Qw * Qx with one sign: the largest sums an int32 block can meet.
    k, n = 1536, 40
    w = torch.full((n, k), 0.5)
    w[1::2] = -0.5  # odd channels negative
    x = torch.full((9, k), -3.0)
    x[4] = 3.0
    out = _C.int16_linear(x, _C.pack_int16_weight(w, *bits), None)
    expected = (x @ w.T).double()  # exact: every value rounds to +-Q exactly
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=0)


def test_zero_rows_and_edge_values(isa: str) -> None:
    w = torch.randn(40, 24)
    packed = _C.pack_int16_weight(w, 12, 14)
    assert _C.int16_linear(torch.empty(0, 24), packed, None).shape == (0, 40)
    x = torch.randn(3, 24)
    x[1] = 0.0  # a zero row: scale 0, output = bias
    b = torch.randn(40)
    out = _C.int16_linear(x, packed, b)
    torch.testing.assert_close(out[1], b, rtol=0, atol=0)
    assert out.isfinite().all()


def test_bad_input_is_a_value_error() -> None:
    w = torch.randn(16, 24)
    packed = _C.pack_int16_weight(w, 12, 14)
    with pytest.raises(ValueError, match="K=25"):
        _C.int16_linear(torch.randn(2, 25), packed, None)
    with pytest.raises(ValueError, match="float32"):
        _C.int16_linear(torch.randn(2, 24).bfloat16(), packed, None)
    with pytest.raises(ValueError, match="bias"):
        _C.int16_linear(torch.randn(2, 24), packed, torch.randn(15))
    with pytest.raises(ValueError, match="pack_int16_weight"):
        _C.int16_linear(torch.randn(2, 24), _C.pack_linear_weight(w), None)
    with pytest.raises(ValueError, match="2..15"):
        _C.pack_int16_weight(w, 16, 8)
    with pytest.raises(ValueError, match="float32"):
        _C.pack_int16_weight(w.bfloat16(), 12, 14)


def test_isa_name() -> None:
    assert _C.int16_linear_isa() in ("avx512vnni", "avx512", "avx2", "generic")
    _C.set_isa("generic")
    try:
        assert _C.int16_linear_isa() == "generic"
    finally:
        _C.set_isa("auto")
