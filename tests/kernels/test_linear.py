"""Native linear (packed weights) against torch.nn.functional.linear in fp32 on the same values."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from isa_builds import isa_fixture
from radixserve import _C
from radixserve.layers.backend import set_kernel_backend
from radixserve.layers.linear import Linear

MS = [1, 2, 3, 5, 8, 16, 17, 64, 100, 300]
# (N, K): odd sizes, a partial last block, K odd (bf16 pads K pairs), and the model's shapes.
SHAPES = [(7, 33), (45, 17), (32, 64), (100, 130), (576, 576), (960, 576), (576, 1536)]


isa = isa_fixture(_C.set_isa)


def check(
    m: int, n: int, k: int, dtype: torch.dtype, with_bias: bool, seed: int, bias_fp32: bool = False
) -> None:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g).to(dtype)
    x = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(torch.float32 if bias_fp32 else dtype) if with_bias else None
    out = _C.linear(x, _C.pack_linear_weight(w), b)
    assert out.dtype == dtype and out.shape == (m, n)
    ref = F.linear(x.float(), w.float(), None if b is None else b.float())
    if dtype == torch.float32:
        tol = dict(rtol=1e-4, atol=1e-5 * math.sqrt(k))
    else:  # the fp32 sum rounded once to bf16 (8 mantissa bits): within one bf16 step
        tol = dict(rtol=1 / 128, atol=1e-4 * math.sqrt(k))
    torch.testing.assert_close(out.float(), ref, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,k", SHAPES)
def test_linear_matches_torch(isa: str, n: int, k: int, dtype: torch.dtype) -> None:
    # The model's shapes at a few row counts (every tile height) keep the suite fast; the
    # small shapes take the full row sweep.
    ms = MS if n * k < 100_000 else ([1, 5] if isa == "generic" else [1, 5, 17, 100])
    for i, m in enumerate(ms):
        check(m, n, k, dtype, with_bias=i % 2 == 0, seed=1000 * n + 10 * k + m)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lm_head_shape_and_fp32_bias(isa: str, dtype: torch.dtype) -> None:
    if isa != "generic":
        check(3, 49152, 576, dtype, with_bias=False, seed=1)
    check(5, 70, 40, dtype, with_bias=True, seed=2, bias_fp32=True)


def test_zero_rows_and_special_values() -> None:
    w = torch.randn(40, 24)
    packed = _C.pack_linear_weight(w)
    assert _C.linear(torch.empty(0, 24), packed, None).shape == (0, 40)
    x = torch.randn(2, 24)
    x[0, 3] = float("nan")
    out = _C.linear(x, packed, None)
    assert out[0].isnan().all() and out[1].isfinite().all()
    xb = x.bfloat16()
    outb = _C.linear(xb, _C.pack_linear_weight(w.bfloat16()), None)
    assert outb[0].isnan().all() and outb[1].isfinite().all()


def test_generic_isa_via_env() -> None:
    """RADIXSERVE_ISA=generic selects the portable kernel in a fresh process."""
    code = (
        "import torch, torch.nn.functional as F; from radixserve import _C;"
        "assert _C.linear_isa() == 'generic', _C.linear_isa();"
        "w = torch.randn(37, 19); x = torch.randn(9, 19);"
        "torch.testing.assert_close(_C.linear(x, _C.pack_linear_weight(w), None), F.linear(x, w),"
        " rtol=1e-4, atol=1e-4)"
    )
    env = dict(os.environ, RADIXSERVE_ISA="generic")
    src = str(Path(_C.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_errors() -> None:
    w = torch.randn(16, 8)
    packed = _C.pack_linear_weight(w)
    x = torch.randn(3, 8)
    with pytest.raises(ValueError, match="2-D"):
        _C.pack_linear_weight(torch.randn(8))
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        _C.pack_linear_weight(w.half())
    with pytest.raises(ValueError, match="non-empty"):
        _C.pack_linear_weight(torch.empty(0, 8))
    with pytest.raises(ValueError, match="CPU"):
        _C.pack_linear_weight(torch.empty(4, 8, device="meta"))
    with pytest.raises(ValueError, match="2-D"):
        _C.linear(torch.randn(8), packed, None)
    with pytest.raises(ValueError, match="K=9"):
        _C.linear(torch.randn(3, 9), packed, None)
    with pytest.raises(ValueError, match="dtype"):
        _C.linear(x.bfloat16(), packed, None)
    with pytest.raises(ValueError, match="contiguous"):
        _C.linear(torch.randn(8, 3).t(), packed, None)
    with pytest.raises(ValueError, match="CPU"):
        _C.linear(torch.empty(3, 8, device="meta"), packed, None)
    with pytest.raises(ValueError, match="bias"):
        _C.linear(x, packed, torch.randn(15))
    with pytest.raises(ValueError, match="bias"):
        _C.linear(x, packed, torch.randn(16).half())
    with pytest.raises(ValueError, match="pack_linear_weight"):
        _C.linear(x, torch.zeros(1000, dtype=torch.uint8), None)
    with pytest.raises(ValueError, match="pack_linear_weight"):
        _C.linear(x, w, None)
    with pytest.raises(ValueError, match="pack_linear_weight"):
        _C.linear(x, packed[:-4].clone(), None)


@pytest.mark.parametrize("backend", ["native", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_layer(backend: str, dtype: torch.dtype) -> None:
    set_kernel_backend(backend)
    try:
        layer = Linear(40, 70, bias=True)
        g = torch.Generator().manual_seed(3)
        layer.weight.data = torch.randn(70, 40, generator=g).to(dtype)
        assert layer.bias is not None
        layer.bias.data = torch.randn(70, generator=g).to(dtype)
        layer.post_load()
        assert (layer.packed is not None) == (backend == "native")
        x = torch.randn(2, 3, 40, generator=g).to(dtype)
        out = layer(x)
        assert out.shape == (2, 3, 70) and out.dtype == dtype
        ref = F.linear(x.float(), layer.weight.float(), layer.bias.float())
        torch.testing.assert_close(out.float(), ref, rtol=1 / 128, atol=1e-3)
        # fp32 prefill-sized inputs take torch's matmul (measured faster), the rest native.
        xl = torch.randn(40, 40, generator=g).to(dtype)
        ref_l = F.linear(xl.float(), layer.weight.float(), layer.bias.float())
        torch.testing.assert_close(layer(xl).float(), ref_l, rtol=1 / 128, atol=1e-3)
        assert layer._torch_is_faster(xl) == (dtype == torch.float32)
        # float16 has no native kernel: the layer keeps using torch.
        layer.weight.data = layer.weight.data.half()
        layer.post_load()
        assert layer.packed is None
    finally:
        set_kernel_backend("native")
