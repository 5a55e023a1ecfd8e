"""Microbenchmark: native encoder (bidirectional, varlen) attention vs torch SDPA per sequence.

Usage: PYTHONPATH=python python benchmarks/kernels/bench_encoder_attention.py
       [--isa auto|avx2|generic] [--cpu-time]
Prints one JSON line per case (see common.py) with the achieved GFLOP/s of both (4 * n^2 * D
FLOPs per head of a sequence of n tokens: the scores and the weighted sum of V). q, k and v are
strided views of one fused [T, 3, heads, D] projection, as in BERT.
"""

from __future__ import annotations

import argparse

import torch
from common import emit, machine_info, time_us, use_thread_cpu_time

from radixserve import _C
from radixserve.layers.encoder_ops import encoder_attention_ref

HEADS, D = 12, 32  # all-MiniLM-L6-v2
CASES = [[9], [128], [128] * 32, [512] * 4, [7, 40, 128, 300, 64]]


def bench(lens: list[int]) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(sum(lens), 3, HEADS, D, generator=g)).unbind(1)
    cu = torch.tensor([0] + [sum(lens[: i + 1]) for i in range(len(lens))], dtype=torch.int32)
    out = torch.empty(q.shape)
    scale = D**-0.5
    us = time_us(lambda: _C.encoder_attention(out, q, k, v, cu, scale))
    ref_us = time_us(lambda: encoder_attention_ref(q, k, v, lens, scale))
    flops = sum(4 * n * n * D * HEADS for n in lens)
    emit({"name": "encoder_attention", "seqs": len(lens), "tokens": sum(lens),
          "max_len": max(lens), "heads": HEADS, "head_dim": D, "us": us,
          "gflops": flops / us / 1e3, "torch_us": ref_us, "torch_gflops": flops / ref_us / 1e3,
          "speedup_vs_torch": ref_us / us})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default="auto")
    ap.add_argument("--cpu-time", action="store_true", help="time thread CPU time (1 thread)")
    args = ap.parse_args()
    if args.cpu_time:
        use_thread_cpu_time()
    _C.set_isa(args.isa)
    emit({"name": "machine", "isa": args.isa, **machine_info()})
    with torch.inference_mode():
        for lens in CASES:
            bench(lens)


if __name__ == "__main__":
    main()
