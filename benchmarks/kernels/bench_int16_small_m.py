"""Int16 linear (_C.int16_linear) at a short request's row counts (M = 1..64) on
all-MiniLM-L6-v2's four shapes, one thread, in thread CPU time (median per call), two ways:

- hot: one weight called over and over (it stays in L2/L3): the kernel's compute rate;
- stream: six layers' weights (21 MB, as a forward reads them) called in forward order: what a
  9-token request's forward pays, reading the weights past L2 every time.

GMAC/s counts M*N*K multiply-adds; compare with the vpmaddwd ceiling of one core
(benchmarks/kernels/madd_peak.c). For an A/B between trees run it alternately with each tree's
PYTHONPATH. Prints a markdown table.

    OMP_NUM_THREADS=1 PYTHONPATH=python python benchmarks/kernels/bench_int16_small_m.py \
        [--ms 1,2,4,6,9,12,16,32,64] [--calls 200] [--passes 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from radixserve import _C

# MiniLM's linears as (K, N): qkv, attention out, FFN up, FFN down.
SHAPES = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]
WEIGHT_BITS, ACT_BITS = 12, 14  # layers/linear.py's INT16_*_BITS
LAYERS = 6


def call_ns(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor) -> int:
    t = time.thread_time_ns()
    _C.int16_linear(x, packed, bias)
    return time.thread_time_ns() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ms", default="1,2,3,4,5,6,9,12,16,32,64")
    ap.add_argument("--calls", type=int, default=200, help="hot: calls per (M, shape)")
    ap.add_argument("--passes", type=int, default=40, help="stream: forward-order passes per M")
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    layers = [
        [(_C.pack_int16_weight(torch.randn(n, k, generator=g) * 0.05, WEIGHT_BITS, ACT_BITS),
          torch.randn(n, generator=g)) for k, n in SHAPES]  # fmt: skip
        for _ in range(LAYERS)
    ]
    print(f"- int16 ISA {_C.int16_linear_isa()}, 1 thread, load {os.getloadavg()[0]:.1f}; us per "
          f"call (GMAC/s); 'forward' sums the {LAYERS} layers' four products")  # fmt: skip
    print()
    head = " | ".join(f"{k} x {n}" for k, n in SHAPES)
    print(f"| M | way | {head} | forward us |")
    print("|---" * (len(SHAPES) + 3) + "|")
    for m in (int(v) for v in args.ms.split(",")):
        xs = [torch.randn(m, k, generator=g) for k, _ in SHAPES]
        hot = []
        for i, (packed, bias) in enumerate(layers[0]):
            for _ in range(5):
                call_ns(xs[i], packed, bias)
            hot.append(statistics.median(call_ns(xs[i], packed, bias) for _ in range(args.calls)))
        per_shape: list[list[int]] = [[] for _ in SHAPES]
        totals = []
        for p in range(args.passes + 2):
            total = 0
            for layer in layers:
                for i, (packed, bias) in enumerate(layer):
                    ns = call_ns(xs[i], packed, bias)
                    total += ns
                    if p >= 2:
                        per_shape[i].append(ns)
            if p >= 2:
                totals.append(total)
        stream = [statistics.median(s) for s in per_shape]
        for way, ns_list, fwd in (("hot", hot, LAYERS * sum(hot)),
                                  ("stream", stream, statistics.median(totals))):  # fmt: skip
            cells = " | ".join(f"{ns / 1e3:.1f} ({m * n * k / ns:.1f})"
                               for ns, (k, n) in zip(ns_list, SHAPES, strict=True))  # fmt: skip
            print(f"| {m} | {way} | {cells} | {fwd / 1e3:.0f} |")


if __name__ == "__main__":
    main()
