"""Microbenchmark: native decode/extend attention vs a plain-PyTorch reference.

Usage: PYTHONPATH=python python benchmarks/kernels/bench_attention.py [--isa auto|avx2|generic]
Prints one JSON line per case (see common.py); decode is judged by achieved GB/s against the
machine's read bandwidth measured in the same run, extend by GFLOP/s.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from common import case, emit, machine_bandwidth, machine_info, time_us

from radixserve import _C

HQ, HKV, D = 9, 3, 64  # SmolLM2-135M


def make_pool(bs: int, seq: int, dtype: torch.dtype, layout: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    num_slots = bs * seq + 1
    k_cache = torch.randn(num_slots, HKV, D, generator=g).to(dtype)
    v_cache = torch.randn(num_slots, HKV, D, generator=g).to(dtype)
    if layout == "scattered":
        slots = torch.randperm(num_slots - 1, generator=g) + 1
    else:
        slots = torch.arange(1, num_slots)
    table = slots.to(torch.int32).view(bs, seq).contiguous()
    return {
        "k_cache": k_cache,
        "v_cache": v_cache,
        "req_to_token": table,
        "req_pool_indices": torch.arange(bs),
        "seq_lens": torch.full((bs,), seq, dtype=torch.int64),
    }


def torch_decode(q: torch.Tensor, p: dict[str, torch.Tensor], scale: float) -> torch.Tensor:
    """Gather each request's K/V through the table, then SDPA (all requests share seq here)."""
    slots = p["req_to_token"][p["req_pool_indices"]].long()
    k = p["k_cache"][slots].transpose(1, 2)  # [B, Hkv, L, D]
    v = p["v_cache"][slots].transpose(1, 2)
    o = F.scaled_dot_product_attention(q.unsqueeze(2), k, v, scale=scale, enable_gqa=True)
    return o.squeeze(2)


def bench_decode(bs: int, seq: int, dtype: torch.dtype, layout: str) -> None:
    p = make_pool(bs, seq, dtype, layout)
    q = torch.randn(bs, HQ, D).to(dtype)
    out = torch.empty_like(q)
    scale = 1.0 / math.sqrt(D)
    args = (
        out,
        q,
        p["k_cache"],
        p["v_cache"],
        p["req_to_token"],
        p["req_pool_indices"],
        p["seq_lens"],
        scale,
    )
    _C.decode_attention(*args)
    ref = torch_decode(q, p, scale)
    err = (out.float() - ref.float()).abs().max().item()
    us = time_us(lambda: _C.decode_attention(*args))
    ref_us = time_us(lambda: torch_decode(q, p, scale), min_seconds=0.2)
    esz = q.element_size()
    nbytes = bs * seq * HKV * D * 2 * esz + bs * seq * 4 + 2 * q.numel() * esz
    emit(
        case(
            "decode_attention",
            us,
            nbytes,
            ref_us,
            batch=bs,
            seq=seq,
            hq=HQ,
            hkv=HKV,
            d=D,
            dtype=str(dtype).removeprefix("torch."),
            slots=layout,
            isa=_C.cpu_features()["isa"],
            max_abs_err_vs_torch=err,
        )
    )


def torch_extend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    o = F.scaled_dot_product_attention(
        q.transpose(0, 1),
        k.transpose(0, 1),
        v.transpose(0, 1),
        is_causal=True,
        scale=scale,
        enable_gqa=True,
    )
    return o.transpose(0, 1)


def bench_extend(seq: int, dtype: torch.dtype) -> None:
    """One request prefilling `seq` tokens with no cached prefix."""
    p = make_pool(1, seq, dtype, "scattered")
    q = torch.randn(seq, HQ, D).to(dtype)
    out = torch.empty_like(q)
    scale = 1.0 / math.sqrt(D)
    ext, start = torch.tensor([seq]), torch.tensor([0])
    args = (
        out,
        q,
        p["k_cache"],
        p["v_cache"],
        p["req_to_token"],
        p["req_pool_indices"],
        p["seq_lens"],
        ext,
        start,
        scale,
    )
    slots = p["req_to_token"][0].long()
    k, v = p["k_cache"][slots], p["v_cache"][slots]
    us = time_us(lambda: _C.extend_attention(*args))
    ref_us = time_us(lambda: torch_extend(q, k, v, scale), min_seconds=0.2)
    flops = 2 * 2 * HQ * D * seq * (seq + 1) / 2  # QK^T and PV over the causal triangle
    nbytes = 2 * seq * HKV * D * q.element_size() + 2 * q.numel() * q.element_size()
    rec = case(
        "extend_attention",
        us,
        nbytes,
        ref_us,
        batch=1,
        seq=seq,
        hq=HQ,
        hkv=HKV,
        d=D,
        dtype=str(dtype).removeprefix("torch."),
        isa=_C.cpu_features()["isa"],
    )
    rec["gflops"] = flops / us / 1e3
    emit(rec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default="auto")
    ap.add_argument("--layouts", default="scattered,contiguous")
    ap.add_argument("--threads", type=int, default=0, help="torch/OpenMP threads (0: default)")
    ap.add_argument("--only", default="decode,extend")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    _C.set_isa(args.isa)
    emit(
        {"name": "machine", **machine_info(), **machine_bandwidth(), "features": _C.cpu_features()}
    )
    if "decode" in args.only:
        for dtype in (torch.bfloat16, torch.float32):
            for bs, seq in ((1, 4096), (16, 512), (64, 320)):
                for layout in args.layouts.split(","):
                    bench_decode(bs, seq, dtype, layout)
    if "extend" in args.only:
        for dtype in (torch.bfloat16, torch.float32):
            bench_extend(512, dtype)


if __name__ == "__main__":
    main()
