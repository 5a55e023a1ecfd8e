"""Microbenchmark: native rms_norm, fused_add_rms_norm, rotary_embedding, silu_and_mul vs PyTorch.

Usage: PYTHONPATH=python python benchmarks/kernels/bench_norm_rope_act.py [--isa auto|avx2|generic]
One JSON line per case (see common.py): bytes read + written per call against the machine's
bandwidth measured in the same run. Shapes are the default model's (SmolLM2-135M: hidden 576,
intermediate 1536, 9 query / 3 kv heads of 64) at decode (tokens=64) and prefill (tokens=2048).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import case, emit, machine_bandwidth, machine_info, time_us, use_thread_cpu_time

from radixserve import _C

HIDDEN, INTER, HQ, HKV, D = 576, 1536, 9, 3, 64


def rms_ref(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w).to(x.dtype)


def rope_ref(pos: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cache: torch.Tensor) -> None:
    half = cache.shape[1] // 2
    cos, sin = cache[pos][:, None, :half], cache[pos][:, None, half:]
    for x in (q, k):
        y = x.view(x.shape[0], -1, D).float()
        a, b = y[..., :half], y[..., half:]
        x.copy_(torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1).view_as(x))


def run(tokens: int, dtype: torch.dtype) -> None:
    esz = torch.empty((), dtype=dtype).element_size()
    shape = {
        "tokens": tokens,
        "dtype": str(dtype).removeprefix("torch."),
        "isa": _C.cpu_features()["isa"],
    }
    x = torch.randn(tokens, HIDDEN).to(dtype)
    res = torch.randn(tokens, HIDDEN).to(dtype)
    w = torch.randn(HIDDEN)
    out = torch.empty_like(x)
    nbytes = 2 * x.numel() * esz
    us = time_us(lambda: _C.rms_norm(out, x, w, 1e-6))
    emit(case("rms_norm", us, nbytes, time_us(lambda: rms_ref(x, w, 1e-6)), hidden=HIDDEN, **shape))

    def torch_fused() -> None:
        s = (x.float() + res.float()).to(dtype)
        rms_ref(s, w, 1e-6)

    us = time_us(lambda: _C.fused_add_rms_norm(x, res, w, 1e-6))
    emit(
        case(
            "fused_add_rms_norm",
            us,
            4 * x.numel() * esz,
            time_us(torch_fused),
            hidden=HIDDEN,
            **shape,
        )
    )

    g = torch.randn(tokens, 2 * INTER).to(dtype)
    o = torch.empty(tokens, INTER, dtype=dtype)
    us = time_us(lambda: _C.silu_and_mul(o, g))
    ref_us = time_us(lambda: (F.silu(g[:, :INTER].float()) * g[:, INTER:].float()).to(dtype))
    emit(case("silu_and_mul", us, 3 * o.numel() * esz, ref_us, intermediate=INTER, **shape))

    inv = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
    f = torch.outer(torch.arange(8192).float(), inv)
    cache = torch.cat([f.cos(), f.sin()], dim=-1)
    pos = torch.randint(0, 8192, (tokens,))
    q = torch.randn(tokens, HQ * D).to(dtype)
    k = torch.randn(tokens, HKV * D).to(dtype)
    us = time_us(lambda: _C.rotary_embedding(pos, q, k, D, cache, True))
    ref_us = time_us(lambda: rope_ref(pos, q, k, cache))
    nbytes = 2 * (q.numel() + k.numel()) * esz + tokens * D * 4
    emit(case("rotary_embedding", us, nbytes, ref_us, hq=HQ, hkv=HKV, d=D, **shape))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch/OpenMP threads (0: default)")
    ap.add_argument("--cpu-time", action="store_true", help="1 thread, timed by thread CPU time")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        use_thread_cpu_time()
    _C.set_isa(args.isa)
    emit(
        {"name": "machine", **machine_info(), **machine_bandwidth(), "features": _C.cpu_features()}
    )
    for tokens in (64, 2048):
        for dtype in (torch.bfloat16, torch.float32):
            run(tokens, dtype)


if __name__ == "__main__":
    main()
