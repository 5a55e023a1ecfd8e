"""Quantized linear (GGUF Q4_0 / Q4_1 / Q8_0 kept quantized) against gguf's own dequantize
followed by an fp64 matmul, on every kernel build this CPU runs. The opt-in int16-activation
decode kernels (RADIXSERVE_QUANT_INT16=1, run in a subprocess below) round x per 32-block; the
check allows exactly that rounding's error bound (the default fp32 kernels stay far inside it)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

from radixserve import _C
from radixserve.layers.backend import set_kernel_backend
from radixserve.layers.linear import Linear, QuantizedWeight

ISAS = ["generic"] + [isa for isa in ("avx2", "avx512") if _C.cpu_features()[isa]]
QTYPES = ["Q4_0", "Q4_1", "Q8_0"]
# (N, K): a partial 16-column chunk and 32-column tile, K/32 below, at and past a multiple of 8
# blocks (scale vectors with a tail), and the default model's shapes.
SHAPES = [(7, 32), (45, 96), (33, 288), (100, 544), (576, 576), (1536, 576), (576, 1536)]
MS = [1, 2, 3, 4, 5, 7, 16, 17, 64, 100, 300]


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa("auto")


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
    b = torch.randn(n, generator=g) if with_bias else None
    out = _C.quant_linear(x, qw.pack(), b)
    assert out.dtype == torch.float32 and out.shape == (m, n)
    ref = x.double() @ w.double().T + (0 if b is None else b.double())
    # Decode rounds x to int16 per 32-block (error <= max|x_block| / 65534 per element): allow
    # that bound exactly, plus fp32 accumulation slack.
    amax = x.double().abs().reshape(m, k // 32, 32).amax(-1)
    wabs = w.double().abs().reshape(n, k // 32, 32).sum(-1)
    bound = amax @ wabs.T / 65534 + 2e-5 * math.sqrt(k) + 1e-4 * ref.abs()
    err = (out.double() - ref).abs()
    assert (err <= bound).all(), f"max excess {(err - bound).max().item()} at M={m}"


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("n,k", SHAPES)
def test_quant_linear_matches_dequantised_matmul(isa: str, qtype: str, n: int, k: int) -> None:
    ms = MS if n * k < 100_000 else ([1, 5] if isa == "generic" else [1, 3, 5, 17, 100])
    for i, m in enumerate(ms):
        check(qtype, m, n, k, with_bias=i % 2 == 0, seed=1000 * n + 10 * k + m)


@pytest.mark.parametrize("qtype", QTYPES)
def test_every_row_count_up_to_300(isa: str, qtype: str) -> None:
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
    ref = x.double() @ w.double().T + b.double()
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
    a, wa = make_weight("Q4_1", 64, 96, seed=2)
    b, wb = make_weight("Q4_1", 32, 96, seed=3)
    layer = Linear(96, 96, bias=True)
    layer.bias.data.normal_()  # type: ignore[union-attr]
    layer.load_quantized(64, b)
    layer.load_quantized(0, a)
    layer.post_load()
    assert layer.quant_packed is not None and layer.weight.numel() == 0
    x = torch.randn(5, 96)
    ref = torch.nn.functional.linear(x, torch.cat([wa, wb]), layer.bias)
    torch.testing.assert_close(layer(x), ref, rtol=1e-3, atol=5e-3)  # int16 decode activations
    # Mixed types fall back to a dequantised float weight.
    c, wc = make_weight("Q8_0", 32, 96, seed=4)
    mixed = Linear(96, 96)
    mixed.load_quantized(0, a)
    mixed.load_quantized(64, c)
    mixed.post_load()
    assert mixed.quant_packed is None and mixed.packed is not None
    torch.testing.assert_close(mixed.weight.data, torch.cat([wa, wc]))


def test_int16_activation_decode_in_subprocess() -> None:
    """The RADIXSERVE_QUANT_INT16=1 decode kernels (the flag is read once per process)."""
    if os.environ.get("RADIXSERVE_QUANT_INT16") == "1":
        pytest.skip("already running with int16 activations")
    env = {**os.environ, "RADIXSERVE_QUANT_INT16": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__]
    cmd += ["-k", "every_row_count or (matches_dequantised and 576)"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
