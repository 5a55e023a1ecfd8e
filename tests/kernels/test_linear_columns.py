"""Column ranges of the native linear ops (`out`, `col_begin`, `col_end` of _C.linear and
_C.quant_linear, and Linear.forward_columns): a product computed in column slices equals the
whole one bit for bit, for every weight format, on every kernel build this CPU runs. A pausable
LM head relies on it (layers/logits.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from isa_builds import isa_fixture
from radixserve import _C
from radixserve.layers.backend import set_kernel_backend
from radixserve.layers.linear import COLUMN_BLOCK, Linear, QuantizedWeight

FORMATS = ["Q4_0", "Q4_1", "Q8_0", "float32", "bfloat16"]
# (N, K): N below one block, with a partial last block, on a block boundary, and past 4,096.
SHAPES = [(23, 64), (1000, 96), (1024, 32), (4131, 64)]
# Decode kernels (quantized: up to 5 rows), prefill kernels, and several row chunks (> 192).
MS = [1, 3, 5, 6, 16, 64, 67, 200]


isa = isa_fixture(_C.set_isa)


def make_linear(fmt: str, n: int, k: int, bias: bool, seed: int) -> tuple[Linear, torch.dtype]:
    """A native Linear in `fmt` with random weights, and the dtype its input takes."""
    set_kernel_backend("native")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    layer = Linear(k, n, bias=bias)
    if bias:
        assert layer.bias is not None
        layer.bias.data.copy_(torch.from_numpy(rng.standard_normal(n).astype(np.float32)))
    if fmt.startswith("Q"):
        raw = np.ascontiguousarray(quantize(w, GGMLQuantizationType[fmt]))
        layer.load_quantized(0, QuantizedWeight(fmt, torch.from_numpy(raw), (n, k)))
        layer.post_load()
        assert layer.quant_packed is not None
        return layer, torch.float32
    dtype = getattr(torch, fmt)
    layer.weight.data = torch.from_numpy(w).to(dtype)
    if layer.bias is not None:
        layer.bias.data = layer.bias.data.to(dtype)
    layer.post_load()
    assert layer.packed is not None
    return layer, dtype


def cuts(n: int, rng: random.Random) -> list[int]:
    """Random slice ends on COLUMN_BLOCK, ending at n."""
    inner = list(range(COLUMN_BLOCK, n, COLUMN_BLOCK))
    return sorted(rng.sample(inner, min(len(inner), rng.randrange(1, 5)))) + [n]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n,k", SHAPES)
def test_column_slices_equal_the_whole_product(isa: str, fmt: str, n: int, k: int) -> None:
    rng = random.Random(n * k)
    for m in MS:
        layer, dtype = make_linear(fmt, n, k, bias=m % 2 == 1, seed=m)
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)).to(dtype)
        whole = layer(x)
        if fmt == "float32" and not layer.can_split_columns(x):
            continue  # torch's sgemm takes these (Linear._torch_is_faster)
        assert layer.can_split_columns(x)
        out, begin = None, 0
        for end in cuts(n, rng):
            out = layer.forward_columns(x, out, begin, end)
            begin = end
        assert out is not None and out.dtype == whole.dtype
        assert torch.equal(out, whole), (m, fmt)


def test_a_slice_writes_only_its_columns() -> None:
    layer, _ = make_linear("Q8_0", 200, 64, bias=True, seed=1)
    x = torch.randn(4, 64)
    out = torch.full((4, 200), float("nan"))
    layer.forward_columns(x, out, 64, 160)
    assert torch.equal(out[:, 64:160], layer(x)[:, 64:160])
    assert out[:, :64].isnan().all() and out[:, 160:].isnan().all()


@pytest.mark.parametrize("fmt", ["Q4_1", "float32"])
def test_column_range_errors(fmt: str) -> None:
    layer, dtype = make_linear(fmt, 100, 64, bias=False, seed=2)
    quant = layer.quant_packed is not None
    packed = layer.quant_packed if quant else layer.packed
    op = _C.quant_linear if quant else _C.linear
    x = torch.randn(3, 64).to(dtype)
    out = torch.empty(3, 100, dtype=dtype)
    op(x, packed, None, out, 32, 100)  # a valid range
    bad = [
        ((x, packed, None, out, 16, 64), "multiples of 32"),
        ((x, packed, None, out, 32, 48), "multiples of 32"),
        ((x, packed, None, out, 64, 64), "non-empty"),
        ((x, packed, None, out, 0, 101), "within"),
        ((x, packed, None, torch.empty(3, 96, dtype=dtype), 0, 32), "shape"),
        ((x, packed, None, torch.empty(3, 100, dtype=torch.float64), 0, 32), "out must be"),
        ((x, packed, None, out.t().contiguous().t(), 0, 32), "contiguous"),
        ((x, packed, None, None, 32, 64), "needs out"),
    ]
    if quant:
        bad.append(((x.bfloat16(), packed, None, out, 0, 32), "needs float32 x"))
    for args, words in bad:
        with pytest.raises(ValueError, match=words):
            op(*args)
