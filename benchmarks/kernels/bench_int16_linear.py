"""Int16 linear (_C.int16_linear) vs the native fp32 linear (_C.linear) vs torch F.linear at
all-MiniLM-L6-v2's prefill shapes (M = 4096 tokens: 32 sentences of 128), interleaved in one run.

Each round times every variant once per shape (median over rounds), in wall time and in this
process's CPU time (all threads), so a loaded machine's preemptions show as the gap between the
two. GFLOP/s counts 2*M*N*K for every variant (the int16 one does the same multiply-adds in
integers). Prints a markdown table.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=python python benchmarks/kernels/bench_int16_linear.py \
        [--m 4096] [--rounds 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from radixserve import _C

# MiniLM's linears as (K, N): qkv, attention out, FFN up, FFN down.
SHAPES = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]
WEIGHT_BITS, ACT_BITS = 12, 14  # layers/linear.py's INT16_*_BITS


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, process CPU s) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    cases = []
    for k, n in SHAPES:
        w = torch.randn(n, k, generator=g) * 0.05
        b = torch.randn(n, generator=g) * 0.01
        x = torch.randn(args.m, k, generator=g)
        packed = _C.pack_linear_weight(w)
        i16 = _C.pack_int16_weight(w, WEIGHT_BITS, ACT_BITS)
        variants: dict[str, Callable[[], object]] = {
            "int16 (_C.int16_linear)": lambda x=x, p=i16, b=b: _C.int16_linear(x, p, b),
            "fp32 (_C.linear)": lambda x=x, p=packed, b=b: _C.linear(x, p, b),
            "fp32 (torch F.linear)": lambda x=x, w=w, b=b: F.linear(x, w, b),
        }
        for fn in variants.values():
            fn()  # warm-up (first-touch of outputs, OpenMP pool)
        cases.append(((k, n), variants))
    samples: dict[tuple[tuple[int, int], str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for shape, variants in cases:
            for name, fn in variants.items():
                samples.setdefault((shape, name), []).append(timed(fn))
    print(f"- M = {args.m}, {args.threads} threads, {args.rounds} interleaved rounds, "
          f"int16 ISA {_C.int16_linear_isa()}, fp32 ISA {_C.linear_isa()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"load before/after: see uptime")  # fmt: skip
    print()
    print("| K x N | variant | ms (median) | GFLOP/s per wall s | GFLOP/s per CPU s |")
    print("|---|---|---|---|---|")
    for (shape, name), s in samples.items():
        k, n = shape
        flop = 2.0 * args.m * n * k
        wall = statistics.median(t[0] for t in s)
        cpu = statistics.median(t[1] for t in s)
        print(f"| {k} x {n} | {name} | {wall * 1e3:.1f} | {flop / wall / 1e9:.1f} | "
              f"{flop / cpu / 1e9:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
