"""Microbenchmark: native decode/extend attention vs a plain-PyTorch reference.

Usage: PYTHONPATH=python python benchmarks/kernels/bench_attention.py [--isa auto|avx2|generic]
       [--only decode,extend,cascade] [--cpu-time]
Prints one JSON line per case (see common.py); decode is judged by achieved GB/s against the
machine's read bandwidth measured in the same run, extend by GFLOP/s.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import case, emit, machine_bandwidth, machine_info, time_us, use_thread_cpu_time

from radixserve import _C

HQ, HKV, D = 9, 3, 64  # SmolLM2-135M


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
        for dtype in (torch.bfloat16, torch.float32):
            bench_extend(512, dtype)
    if "cascade" in args.only:
        for dtype in (torch.bfloat16, torch.float32):
            bench_cascade(16, 1024, dtype)


if __name__ == "__main__":
    main()
