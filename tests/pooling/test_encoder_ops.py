"""Native LayerNorm (+ fused residual) and GELU against their PyTorch references, on every
ISA build this CPU has."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from radixserve.layers.encoder_ops import gelu_ref, layer_norm_ref

_C = pytest.importorskip("radixserve._C")
if not hasattr(_C, "layer_norm"):
    pytest.skip("radixserve._C was built without the encoder ops", allow_module_level=True)

ISAS = [i for i in ("generic", "avx2", "avx512") if i == "generic" or _C.cpu_features()[i]]


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa("auto")


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
