"""Quantized linear (GGUF Q4_0 / Q4_1 / Q8_0 kept quantized) against gguf's own dequantize
followed by an fp64 matmul, on every kernel build this CPU runs, with both activation modes:
`int16` (default) rounds x per 32-block first, so the reference multiplies the same rounded x'
(computed here in PyTorch); `fp32` uses x as given."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

from isa_builds import isa_fixture
from radixserve import _C
from radixserve.layers.backend import set_kernel_backend
from radixserve.layers.linear import Linear, QuantizedWeight

QTYPES = ["Q4_0", "Q4_1", "Q8_0"]
# (N, K): a partial 16-column chunk and 32-column tile, K/32 below, at and past a multiple of 8
# blocks (scale vectors with a tail), past the decode kernel's 32-block scale staging (33 blocks:
# a second stage of one block), 8-row output groups with a tail, and the default model's shapes.
SHAPES = [(7, 32), (45, 96), (33, 288), (100, 544), (19, 1056), (576, 576), (1536, 576),
          (576, 1536)]
MS = [1, 2, 3, 4, 5, 7, 16, 17, 64, 100, 300]


isa = isa_fixture(_C.set_isa)


@pytest.fixture(params=["int16", "fp32"])
def act(request: pytest.FixtureRequest) -> Iterator[str]:
    _C.set_quant_activations(request.param)
    yield request.param
    _C.set_quant_activations("int16")


def round_int16(x: torch.Tensor) -> torch.Tensor:
    """x' = sx * round(x / sx) per 32-block, sx = max|x| / 32767 (halves away from zero), in
    fp32 exactly as quant_linear's int16 mode computes it."""
    m, k = x.shape
    xb = x.float().reshape(m, k // 32, 32)
    amax = xb.abs().amax(-1, keepdim=True)
    sx = amax / 32767
    inv = torch.where(amax > 0, 32767 / amax, torch.zeros_like(amax))
    v = xb * inv
    q = torch.trunc(v + torch.where(v >= 0, 0.5, -0.5)).clamp(-32767, 32767)
    return (sx * q).reshape(m, k)


def make_weight(qtype: str, n: int, k: int, seed: int) -> tuple[QuantizedWeight, torch.Tensor]:
    """A random GGUF weight and its dequantised values (gguf's reference)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[0, :32] = 0.0  # an all-zero block (d = 0)
    qt = GGMLQuantizationType[qtype]
    raw = np.ascontiguousarray(quantize(w, qt))
    ref = torch.from_numpy(np.asarray(dequantize(raw, qt), dtype=np.float32).reshape(n, k).copy())
    return QuantizedWeight(qtype, torch.from_numpy(raw), (n, k)), ref


def check(qtype: str, m: int, n: int, k: int, with_bias: bool, seed: int) -> None:
    qw, w = make_weight(qtype, n, k, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g)
    x[0, 32:64] = 0.0  # an all-zero activation block (sx = 0)
    b = torch.randn(n, generator=g) if with_bias else None
    out = _C.quant_linear(x, qw.pack(), b)
    assert out.dtype == torch.float32 and out.shape == (m, n)
    xr = round_int16(x) if _C.quant_activations() == "int16" else x
    ref = xr.double() @ w.double().T + (0 if b is None else b.double())
    # The same numbers in another order: fp32 accumulation slack only.
    bound = 2e-5 * math.sqrt(k) + 1e-4 * ref.abs()
    err = (out.double() - ref).abs()
    assert (err <= bound).all(), f"max excess {(err - bound).max().item()} at M={m}"


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("n,k", SHAPES)
def test_quant_linear_matches_dequantised_matmul(
    isa: str, act: str, qtype: str, n: int, k: int
) -> None:
    ms = MS if n * k < 100_000 else ([1, 5] if isa == "generic" else [1, 3, 5, 17, 100])
    for i, m in enumerate(ms):
        check(qtype, m, n, k, with_bias=i % 2 == 0, seed=1000 * n + 10 * k + m)


@pytest.mark.parametrize("qtype", QTYPES)
def test_every_row_count_up_to_300(isa: str, act: str, qtype: str) -> None:
    if isa == "generic":
        pytest.skip("the portable kernel has one code path for every M")
    for m in list(range(1, 18)) + [31, 96, 97, 193, 300]:
        check(qtype, m, 70, 96, with_bias=m % 2 == 1, seed=m)


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_and_embedding_match_gguf(qtype: str) -> None:
    qw, w = make_weight(qtype, 37, 160, seed=5)
    packed = qw.pack()
    assert _C.quant_weight_info(packed) == (qtype.lower(), 37, 160)
    torch.testing.assert_close(_C.dequantize_quant_weight(packed), w, rtol=0, atol=1e-6)
    torch.testing.assert_close(qw.dequantize(), w, rtol=0, atol=0)
    ids = torch.tensor([3, 0, 36, 3], dtype=torch.int64)
    torch.testing.assert_close(_C.quant_embedding(ids, packed), w[ids], rtol=0, atol=1e-6)


def test_bfloat16_activations_and_bias() -> None:
    qw, w = make_weight("Q4_1", 40, 64, seed=9)
    x = torch.randn(3, 64).bfloat16()
    b = torch.randn(40).bfloat16()
    out = _C.quant_linear(x, qw.pack(), b)
    assert out.dtype == torch.bfloat16
    ref = round_int16(x.float()).double() @ w.double().T + b.double()
    torch.testing.assert_close(out.double(), ref, rtol=1 / 64, atol=1e-2)


def test_errors() -> None:
    qw, _ = make_weight("Q8_0", 8, 64, seed=1)
    packed = qw.pack()
    with pytest.raises(ValueError, match="K=32"):
        _C.quant_linear(torch.randn(2, 32), packed, None)
    with pytest.raises(ValueError, match="packed"):
        _C.quant_linear(torch.randn(2, 64), torch.zeros(100, dtype=torch.uint8), None)
    with pytest.raises(ValueError, match="qtype"):
        _C.pack_quant_weight(qw.data, "q5_0", 64)
    with pytest.raises(ValueError, match="raw"):
        _C.pack_quant_weight(qw.data[:, :10].contiguous(), "q8_0", 64)
    with pytest.raises(ValueError, match="out of range"):
        _C.quant_embedding(torch.tensor([8]), packed)
    assert _C.quant_linear(torch.empty(0, 64), packed, None).shape == (0, 8)


def test_linear_layer_packs_quantized_parts() -> None:
    """Two quantized parts (like q and k rows) packed into one weight; the plain one dropped."""
    set_kernel_backend("native")
    torch.manual_seed(0)
    a, wa = make_weight("Q4_1", 64, 96, seed=2)
    b, wb = make_weight("Q4_1", 32, 96, seed=3)
    layer = Linear(96, 96, bias=True)
    layer.bias.data.normal_()  # type: ignore[union-attr]
    layer.load_quantized(64, b)
    layer.load_quantized(0, a)
    layer.post_load()
    assert layer.quant_packed is not None and layer.weight.numel() == 0
    x = torch.randn(5, 96)
    ref = torch.nn.functional.linear(round_int16(x), torch.cat([wa, wb]), layer.bias)
    # int16 activations; per-block fp32 sums in another order than the reference's matmul: 300
    # random draws of x and bias differed by up to 2.4e-4 at outputs of ~34 (7e-6 of the largest).
    scale = float(ref.abs().max())
    torch.testing.assert_close(layer(x), ref, rtol=1e-4, atol=2e-5 * scale)
    # Mixed types fall back to a dequantised float weight.
    c, wc = make_weight("Q8_0", 32, 96, seed=4)
    mixed = Linear(96, 96)
    mixed.load_quantized(0, a)
    mixed.load_quantized(64, c)
    mixed.post_load()
    assert mixed.quant_packed is None and mixed.packed is not None
    torch.testing.assert_close(mixed.weight.data, torch.cat([wa, wc]))


def one_hot_q8_0(k: int) -> torch.Tensor:
    """Raw GGUF Q8_0 bytes of the [k, k] identity: d = 1 (fp16 0x3C00), q = 1 on the diagonal."""
    raw = np.zeros((k, k // 32, 34), dtype=np.uint8)
    raw[:, :, 0:2] = np.frombuffer(np.float16(1.0).tobytes(), dtype=np.uint8)
    for n in range(k):
        raw[n, n // 32, 2 + n % 32] = 1
    return torch.from_numpy(raw.reshape(k, k // 32 * 34))


@pytest.mark.parametrize("m", [1, 8])
def test_int16_rounding_is_exact_on_every_isa(isa: str, m: int) -> None:
    """The activation rounding of every ISA build (vector and scalar), decode and prefill, is the
    rule of round_int16 bit for bit: through the identity weight, out = x' exactly. Blocks whose
    max|x| is 32767 have sx = 1, so halves (2.5, -2.5, ...) must round away from zero."""
    k = 128
    packed = _C.pack_quant_weight(one_hot_q8_0(k), "q8_0", k)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(m, k, generator=g) * 10.0 ** torch.randint(-4, 5, (m, k), generator=g)
    halves = torch.randint(-32767, 32767, (m, 32), generator=g).float() + 0.5
    x[:, 64:96] = halves
    x[:, 64] = 32767.0
    x[:, 96:128] = 0.0  # an all-zero block
    out = _C.quant_linear(x, packed, None)
    assert torch.equal(out, round_int16(x))
    assert torch.equal(out[:, 65:96], torch.trunc(halves[:, 1:] + torch.sign(halves[:, 1:]) * 0.5))


def test_int16_activations_decode_equals_prefill() -> None:
    """int16 mode: a decode (integer dots) and a prefill (fp32 tile on x') of the same rows give
    the same values up to fp32 order, and they stay within the int16 rounding of the fp32 mode."""
    qw, w = make_weight("Q4_1", 96, 576, seed=11)
    packed = qw.pack()
    x = torch.randn(8, 576)
    decode = torch.cat([_C.quant_linear(x[i : i + 1], packed, None) for i in range(8)])
    prefill = _C.quant_linear(x, packed, None)  # M = 8: the prefill kernel
    torch.testing.assert_close(decode, prefill, rtol=1e-5, atol=1e-4)
    _C.set_quant_activations("fp32")
    try:
        exact = _C.quant_linear(x, packed, None)
    finally:
        _C.set_quant_activations("int16")
    # Rounding error per element <= max|x_block| / 65534; summed against |w|.
    amax = x.abs().reshape(8, 18, 32).amax(-1).double()
    bound = amax @ w.double().abs().reshape(96, 18, 32).sum(-1).T / 65534 + 1e-4
    assert ((decode.double() - exact.double()).abs() <= bound).all()
    with pytest.raises(ValueError, match="int16"):
        _C.set_quant_activations("int8")
