"""Microbenchmark: native decode/extend attention vs a plain-PyTorch reference.

Usage: PYTHONPATH=python python benchmarks/kernels/bench_attention.py [--isa auto|avx2|generic]
       [--only decode,extend,cascade,cascade_parts] [--cpu-time]
Prints one JSON line per case (see common.py); decode is judged by achieved GB/s against the
machine's read bandwidth measured in the same run, extend by GFLOP/s against one core's fp32 FMA
peak (fma_peak.c, built with gcc and run once; meaningful with --cpu-time).
"""

from __future__ import annotations

import argparse
import itertools
import math
import subprocess
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from common import case, emit, machine_bandwidth, machine_info, time_us, use_thread_cpu_time

from radixserve import _C

HQ, HKV, D = 9, 3, 64  # SmolLM2-135M
# (q, KV cache) dtypes of extend: a bf16 model, an fp32 model, fp32 with --kv-cache-dtype bfloat16.
EXTEND_DTYPES = [
    (torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.float32),
    (torch.float32, torch.bfloat16),
]


COLD_BYTES = 256 * 1024 * 1024  # KV touched across rotations: far beyond the last-level cache


def make_pool(bs: int, seq: int, dtype: torch.dtype, layout: str, rotations: int = 1) -> dict:
    """A KV pool holding `rotations` disjoint copies of a batch; cycling through them makes every
    call read its K/V from memory, as a real decode step does (the whole pool exceeds the caches)."""
    g = torch.Generator().manual_seed(0)
    num_slots = rotations * bs * seq + 1
    k_cache = torch.randn(num_slots, HKV, D, generator=g).to(dtype)
    v_cache = torch.randn(num_slots, HKV, D, generator=g).to(dtype)
    if layout == "scattered":
        slots = torch.randperm(num_slots - 1, generator=g) + 1
    else:
        slots = torch.arange(1, num_slots)
    table = slots.to(torch.int32).view(rotations * bs, seq).contiguous()
    return {
        "k_cache": k_cache,
        "v_cache": v_cache,
        "req_to_token": table,
        "req_pool_indices": torch.arange(bs),
        "rotations": [torch.arange(r * bs, (r + 1) * bs) for r in range(rotations)],
        "seq_lens": torch.full((bs,), seq, dtype=torch.int64),
    }


def cycling(p: dict) -> Callable[[], torch.Tensor]:
    """Each call returns the next rotation's req_pool_indices."""
    it = itertools.cycle(p["rotations"])
    return lambda: next(it)


def torch_decode(q: torch.Tensor, p: dict, scale: float, rows: torch.Tensor) -> torch.Tensor:
    """Gather each request's K/V through the table, then SDPA (all requests share seq here)."""
    slots = p["req_to_token"][rows].long()
    k = p["k_cache"][slots].transpose(1, 2)  # [B, Hkv, L, D]
    v = p["v_cache"][slots].transpose(1, 2)
    o = F.scaled_dot_product_attention(q.unsqueeze(2), k, v, scale=scale, enable_gqa=True)
    return o.squeeze(2)


def bench_decode(bs: int, seq: int, dtype: torch.dtype, layout: str) -> None:
    esz = torch.empty((), dtype=dtype).element_size()
    kv_bytes = bs * seq * HKV * D * 2 * esz
    p = make_pool(bs, seq, dtype, layout, rotations=max(1, -(-COLD_BYTES // kv_bytes)))
    q = torch.randn(bs, HQ, D).to(dtype)
    out = torch.empty_like(q)
    scale = 1.0 / math.sqrt(D)
    kv = (p["k_cache"], p["v_cache"], p["req_to_token"])
    _C.decode_attention(out, q, *kv, p["req_pool_indices"], p["seq_lens"], scale)
    ref = torch_decode(q, p, scale, p["req_pool_indices"])
    err = (out.float() - ref.float()).abs().max().item()
    nxt = cycling(p)
    us = time_us(lambda: _C.decode_attention(out, q, *kv, nxt(), p["seq_lens"], scale))
    nxt = cycling(p)
    ref_us = time_us(lambda: torch_decode(q, p, scale, nxt()), min_seconds=0.2)
    nbytes = kv_bytes + bs * seq * 4 + 2 * q.numel() * esz
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
            cold=True,
            isa=_C.cpu_features()["isa"],
            max_abs_err_vs_torch=err,
        )
    )


def make_shared_pool(
    bs: int, prefix: int, suffixes: list[int], dtype: torch.dtype, rotations: int
) -> dict:
    """`rotations` disjoint copies of a batch whose requests share their first `prefix` slots
    (scattered slots, as a radix cache hands them out) and then own `suffixes[b]` more."""
    g = torch.Generator().manual_seed(1)
    per_rot = prefix + sum(suffixes)
    num_slots = rotations * per_rot + 1
    k_cache = torch.randn(num_slots, HKV, D, generator=g).to(dtype)
    v_cache = torch.randn(num_slots, HKV, D, generator=g).to(dtype)
    slots = (torch.randperm(num_slots - 1, generator=g) + 1).to(torch.int32)
    seq = prefix + max(suffixes)
    table = torch.zeros(rotations * bs, seq, dtype=torch.int32)
    for r in range(rotations):
        s = slots[r * per_rot : (r + 1) * per_rot]
        off = prefix
        for b in range(bs):
            table[r * bs + b, :prefix] = s[:prefix]
            table[r * bs + b, prefix : prefix + suffixes[b]] = s[off : off + suffixes[b]]
            off += suffixes[b]
    return {
        "k_cache": k_cache,
        "v_cache": v_cache,
        "req_to_token": table,
        "rotations": [torch.arange(r * bs, (r + 1) * bs) for r in range(rotations)],
        "seq_lens": torch.tensor([prefix + n for n in suffixes], dtype=torch.int64),
    }


def bench_cascade(bs: int, prefix: int, dtype: torch.dtype) -> None:
    """bs requests sharing a `prefix`-token KV prefix, suffixes spread over 32..256: the cascade
    kernel (prefix read once per group) against the plain decode kernel (once per request)."""
    suffixes = [32 + (256 - 32) * b // max(bs - 1, 1) for b in range(bs)]
    esz = torch.empty((), dtype=dtype).element_size()
    row = HKV * D * 2 * esz  # K and V bytes of one token
    plain_bytes = sum(prefix + n for n in suffixes) * row
    cascade_bytes = (prefix + sum(suffixes)) * row
    p = make_shared_pool(bs, prefix, suffixes, dtype, max(1, -(-COLD_BYTES // cascade_bytes)))
    q = torch.randn(bs, HQ, D).to(dtype)
    out, ref = torch.empty_like(q), torch.empty_like(q)
    scale = 1.0 / math.sqrt(D)
    kv = (p["k_cache"], p["v_cache"], p["req_to_token"])
    gids, plens = torch.zeros(bs, dtype=torch.int64), torch.tensor([prefix])
    rows0 = p["rotations"][0]
    _C.cascade_decode_attention(out, q, *kv, rows0, p["seq_lens"], gids, plens, scale)
    _C.decode_attention(ref, q, *kv, rows0, p["seq_lens"], scale)
    err = (out.float() - ref.float()).abs().max().item()
    nxt = cycling(p)
    us = time_us(
        lambda: _C.cascade_decode_attention(out, q, *kv, nxt(), p["seq_lens"], gids, plens, scale)
    )
    nxt = cycling(p)
    plain_us = time_us(lambda: _C.decode_attention(ref, q, *kv, nxt(), p["seq_lens"], scale))
    rec = case(
        "cascade_decode_attention",
        us,
        cascade_bytes,
        batch=bs,
        prefix=prefix,
        suffix=f"{min(suffixes)}..{max(suffixes)}",
        hq=HQ,
        hkv=HKV,
        d=D,
        dtype=str(dtype).removeprefix("torch."),
        cold=True,
        isa=_C.cpu_features()["isa"],
        max_abs_err_vs_plain=err,
    )
    rec["kv_bytes"] = cascade_bytes
    rec["plain_kv_bytes"] = plain_bytes
    rec["bytes_ratio"] = plain_bytes / cascade_bytes
    rec["plain_us"] = plain_us
    rec["speedup_vs_plain"] = plain_us / us
    emit(rec)


def bench_cascade_parts(bs: int, prefix: int, dtype: torch.dtype) -> None:
    """Where the cascade kernel's time goes: the full case of bench_cascade, its prefix pass alone
    (1-key suffixes), its suffix pass alone (a 1-key shared prefix), the fixed cost (1 + 1 key),
    each cold (rotating pool), warm (one copy) and contiguous (slots in order: compute only, no
    scattered-row or TLB cost); with the byte bound (read bandwidth) and FLOP bound of each pass."""
    suffixes = [32 + (256 - 32) * b // max(bs - 1, 1) for b in range(bs)]
    row = HKV * D * 2 * torch.empty((), dtype=dtype).element_size()
    q = torch.randn(bs, HQ, D).to(dtype)
    out = torch.empty_like(q)
    scale = 1.0 / math.sqrt(D)
    gids = torch.zeros(bs, dtype=torch.int64)
    shapes = {
        "full": (prefix, suffixes),
        "prefix_pass": (prefix, [1] * bs),
        "suffix_pass": (1, suffixes),
        "fixed_cost": (1, [1] * bs),
    }
    peak = fma_peak_gflops()
    bw = machine_bandwidth()["read_gbps"]
    for part, (plen, suf) in shapes.items():
        keys = plen + sum(suf)
        flops = 2 * 2 * D * HQ * (bs * plen + sum(suf))
        for layout in ("cold", "warm", "contiguous"):
            rot = max(1, -(-COLD_BYTES // (keys * row))) if layout == "cold" else 1
            p = make_shared_pool(bs, plen, suf, dtype, rot)
            if layout == "contiguous":
                table = p["req_to_token"]
                table[:, :plen] = torch.arange(1, plen + 1, dtype=torch.int32)
                off = plen + 1
                for b, n in enumerate(suf):
                    table[b, plen : plen + n] = torch.arange(off, off + n, dtype=torch.int32)
                    off += n
            kv = (p["k_cache"], p["v_cache"], p["req_to_token"])
            plens, nxt = torch.tensor([plen]), cycling(p)
            seq_lens = p["seq_lens"]
            us = time_us(
                lambda kv=kv, nxt=nxt, seq_lens=seq_lens, plens=plens: _C.cascade_decode_attention(
                    out, q, *kv, nxt(), seq_lens, gids, plens, scale
                )
            )
            rec = {"name": "cascade_parts", "part": part, "layout": layout, "dtype": str(dtype)}
            rec |= {"us": us, "kv_bytes": keys * row, "byte_bound_us": keys * row / bw / 1e3}
            rec["flop_bound_us"] = flops / peak / 1e3 if peak else None
            emit(rec)


def torch_extend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prefix: int, scale: float
) -> torch.Tensor:
    """q [B, L, Hq, D] at positions prefix..prefix+L-1 over k, v [B, prefix+L, Hkv, D]."""
    n, s = q.shape[1], k.shape[1]
    mask = torch.arange(s)[None, :] <= torch.arange(prefix, prefix + n)[:, None]
    o = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=None if prefix == 0 else mask,
        is_causal=prefix == 0,
        scale=scale,
        enable_gqa=True,
    )
    return o.transpose(1, 2)


@lru_cache(maxsize=1)
def fma_peak_gflops() -> float | None:
    """One core's fp32 FMA ceiling in GFLOP/s per CPU second (fma_peak.c), or None without gcc."""
    src = Path(__file__).with_name("fma_peak.c")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "fma_peak"
        try:
            subprocess.run(
                ["gcc", "-O3", "-mavx2", "-mfma", str(src), "-o", str(exe)],
                check=True,
                capture_output=True,
            )
            out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
    return float(out.split()[0])


def bench_extend(bs: int, ext: int, prefix: int, dtype: torch.dtype, kv_dtype: torch.dtype) -> None:
    """`bs` requests each prefilling `ext` tokens behind a `prefix`-token cached prefix (its K/V
    already in the pool), causal; fp32 or bfloat16 queries, over a cache of kv_dtype."""
    seq = prefix + ext
    p = make_pool(bs, seq, kv_dtype, "scattered")
    q = torch.randn(bs * ext, HQ, D).to(dtype)
    out = torch.empty_like(q)
    scale = 1.0 / math.sqrt(D)
    ext_lens = torch.full((bs,), ext, dtype=torch.int64)
    start = torch.arange(bs, dtype=torch.int64) * ext
    args = (out, q, p["k_cache"], p["v_cache"], p["req_to_token"], p["req_pool_indices"])
    args += (p["seq_lens"], ext_lens, start, scale)
    slots = p["req_to_token"][p["req_pool_indices"]].long()
    k, v = p["k_cache"][slots].to(dtype), p["v_cache"][slots].to(dtype)
    qb = q.view(bs, ext, HQ, D)
    _C.extend_attention(*args)
    ref = torch_extend(qb.float(), k.float(), v.float(), prefix, scale)
    err = (out.view(bs, ext, HQ, D).float() - ref).abs().max().item()
    us = time_us(lambda: _C.extend_attention(*args))
    ref_us = time_us(lambda: torch_extend(qb, k, v, prefix, scale), min_seconds=0.2)
    # Q.K^T and P.V: query i of a request sees prefix + i + 1 keys.
    flops = 2 * 2 * HQ * D * bs * (ext * prefix + ext * (ext + 1) / 2)
    esz = torch.empty((), dtype=kv_dtype).element_size()
    nbytes = 2 * bs * seq * HKV * D * esz + 2 * q.numel() * q.element_size()
    rec = case(
        "extend_attention",
        us,
        nbytes,
        ref_us,
        batch=bs,
        seq=ext,
        prefix=prefix,
        hq=HQ,
        hkv=HKV,
        d=D,
        dtype=str(dtype).removeprefix("torch."),
        kv_dtype=str(kv_dtype).removeprefix("torch."),
        isa=_C.cpu_features()["isa"],
        max_abs_err_vs_torch=err,
    )
    rec["gflops"] = flops / us / 1e3
    peak = fma_peak_gflops()
    if peak is not None:
        rec["fma_peak_gflops"] = peak
        rec["pct_of_fma_peak"] = 100.0 * rec["gflops"] / peak
    emit(rec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default="auto")
    ap.add_argument("--layouts", default="scattered,contiguous")
    ap.add_argument("--threads", type=int, default=0, help="torch/OpenMP threads (0: default)")
    ap.add_argument("--only", default="decode,extend,cascade")
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
    if "decode" in args.only:
        for dtype in (torch.bfloat16, torch.float32):
            for bs, seq in ((1, 4096), (16, 512), (64, 320)):
                for layout in args.layouts.split(","):
                    bench_decode(bs, seq, dtype, layout)
    if "extend" in args.only:
        for bs, ext, prefix in ((1, 512, 0), (16, 256, 0), (16, 256, 1024)):
            for dtype, kv_dtype in EXTEND_DTYPES:
                bench_extend(bs, ext, prefix, dtype, kv_dtype)
    if "cascade" in args.only.split(","):
        for dtype in (torch.bfloat16, torch.float32):
            bench_cascade(16, 1024, dtype)
    if "cascade_parts" in args.only:
        bench_cascade_parts(16, 1024, torch.bfloat16)


if __name__ == "__main__":
    main()
