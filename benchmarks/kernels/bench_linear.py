"""Linear microbenchmark: radixserve._C.linear on packed weights vs torch F.linear, and
radixserve._C.quant_linear on GGUF-quantized weights (q4_0, q4_1, q8_0: random weights
quantized by gguf) vs torch F.linear on the dequantised fp32 weight.

Shapes are SmolLM2-135M's projections ([N, K] = qkv, o, gate_up, down, lm_head) at decode
batch sizes (memory-bound: judged in GB/s against the measured read bandwidth) and prefill
chunk sizes (compute-bound: judged in GFLOP/s). Prints one JSON line per case.

M = 1 cases also report the call "as served" (`served_*`): the same projection run
SERVED_CALLS times through _C.run_projection_calls, i.e. the way the fused decode step
(DecoderStack.decode, "step" threading) runs every projection of a token: inside one OpenMP
region, prepared on thread 0, split over the threads, a barrier after each call. The per-call
figure (`us`, `best_us`) pays an OpenMP region per call, as the per-op Python path does.

    PYTHONPATH=python python benchmarks/kernels/bench_linear.py [--quick]
        [--dtype bf16|fp32|q4_0|q4_1|q8_0]
        [--shape qkv|o|gate_up|down|lm_head] [--m M] [--threads T] [--cpu-time]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from common import (
    case,
    emit,
    machine_bandwidth,
    machine_info,
    time_us,
    use_thread_cpu_time,
)

from radixserve import _C

SHAPES = {  # name: (N, K)
    "qkv": (960, 576),
    "o": (576, 576),
    "gate_up": (3072, 576),
    "down": (576, 1536),
    "lm_head": (49152, 576),
}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
QTYPES = ("q4_0", "q4_1", "q8_0")


# In a model forward every layer's weights come from DRAM (the model is far larger than the
# 32 MiB L3), so each case rotates over enough weight copies to miss the caches too.
COLD_BYTES = 96 * 2**20


# Clock of best_us: wall time, or with --cpu-time (one thread) this thread's CPU time, which a
# loaded machine's preemptions do not inflate.
CLOCK: Callable[[], float] = time.perf_counter


def best_us(fn: Callable[[], object], iters: int = 20) -> float:
    """Minimum wall time of one call over `iters` calls, in microseconds."""
    fn()
    best = float("inf")
    for _ in range(iters):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best * 1e6


class Rotation:
    """Round-robin index over the weight copies."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.i = 0

    def next(self) -> int:
        self.i = (self.i + 1) % self.count
        return self.i


# "As served" samples: windows of SERVED_CALLS calls (each on the next weight copy), short
# enough that many of them fall between the other jobs of a shared machine, as the single
# calls of the per-call figure do.
SERVED_CALLS = 20
SERVED_SAMPLES = 60


def served_us(x: torch.Tensor, packs: list[torch.Tensor], quant: bool) -> tuple[float, float]:
    """(median, best) microseconds per call of the projection run as the fused decode step
    runs it: one OpenMP region per window of SERVED_CALLS calls, a barrier after each call.
    The region's start and end and the list's conversion are in the time, spread over the
    window."""
    _C.set_decoder_threading("step")
    _C.run_projection_calls(x, packs, quant, len(packs))  # warm up the region and the buffers
    samples = []
    start = 0
    for _ in range(SERVED_SAMPLES):
        window = [packs[(start + i) % len(packs)] for i in range(SERVED_CALLS)]
        start = (start + SERVED_CALLS) % len(packs)
        t0 = CLOCK()
        _C.run_projection_calls(x, window, quant, SERVED_CALLS)
        samples.append((CLOCK() - t0) / SERVED_CALLS * 1e6)
    return statistics.median(samples), min(samples)


def add_served(
    rec: dict[str, Any], x: torch.Tensor, packs: list[torch.Tensor], quant: bool, nbytes: int
) -> None:
    """The as-served figures of an M = 1 case, beside the per-call ones (same read loop)."""
    med, best = served_us(x, packs, quant)
    read = machine_bandwidth()["read_gbps"]
    rec["served_us"] = med
    rec["served_pct_of_read_bw"] = 100.0 * nbytes / med / 1e3 / read
    rec["served_best_us"] = best
    rec["served_best_pct_of_read_bw"] = 100.0 * nbytes / best / 1e3 / read
    rec["best_pct_of_read_bw"] = 100.0 * nbytes / rec["best_us"] / 1e3 / read
    # The same bytes read by torch's own sum (one OpenMP region per call, like the per-call
    # kernel): what a short stream of this size gets on this machine, next to the long loop.
    words = [
        p.view(torch.uint8)[: p.numel() * p.element_size() // 4 * 4].view(torch.float32)
        for p in packs
    ]
    rot = Rotation(len(words))
    short = time_us(lambda: words[rot.next()].sum(), min_seconds=0.2)
    short_best = best_us(lambda: words[rot.next()].sum())
    rec["short_read_us"] = short
    wbytes = words[0].numel() * 4
    rec["short_read_pct_of_read_bw"] = 100.0 * wbytes / short / 1e3 / read
    rec["short_read_best_us"] = short_best
    rec["short_read_best_pct_of_read_bw"] = 100.0 * wbytes / short_best / 1e3 / read


def quant_weights(n: int, k: int, qtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed quantized weight, its dequantised fp32 values) of a random [n, k] weight."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    qt = GGMLQuantizationType[qtype.upper()]
    raw = quantize(torch.randn(n, k).numpy(), qt)
    packed = _C.pack_quant_weight(torch.from_numpy(raw), qtype, k)
    return packed, torch.from_numpy(dequantize(raw, qt).reshape(n, k).copy())


def run_quant_case(name: str, m: int, n: int, k: int, qtype: str) -> None:
    x = torch.randn(m, k)
    packed, w = quant_weights(n, k, qtype)
    copies = max(1, -(-COLD_BYTES // packed.numel()))
    packs = [packed] + [packed.clone() for _ in range(copies - 1)]
    ref_copies = max(1, -(-COLD_BYTES // (n * k * 4)))
    ws = [w] + [w.clone() for _ in range(ref_copies - 1)]
    rot, ref_rot = Rotation(copies), Rotation(ref_copies)
    us = time_us(lambda: _C.quant_linear(x, packs[rot.next()], None), min_seconds=0.2)
    ref_us = time_us(lambda: F.linear(x, ws[ref_rot.next()]), min_seconds=0.2)
    best = best_us(lambda: _C.quant_linear(x, packs[rot.next()], None))
    ref_best = best_us(lambda: F.linear(x, ws[ref_rot.next()]))
    nbytes = packed.numel() + (m * k + m * n) * 4  # weights as stored, fp32 x and out
    rec = case(name, us, nbytes, ref_us, M=m, N=n, K=k, dtype=qtype, weight_copies=copies)
    rec["gflops"] = 2.0 * m * n * k / us / 1e3
    rec["torch_gflops"] = 2.0 * m * n * k / ref_us / 1e3
    rec["best_us"] = best
    rec["best_gbps"] = nbytes / best / 1e3
    rec["best_gflops"] = 2.0 * m * n * k / best / 1e3
    rec["torch_best_us"] = ref_best
    rec["best_speedup_vs_torch"] = ref_best / best
    if m == 1:
        add_served(rec, x, packs, True, nbytes)
    emit(rec)


def run_case(name: str, m: int, n: int, k: int, dtype_name: str) -> None:
    if dtype_name in QTYPES:
        run_quant_case(name, m, n, k, dtype_name)
        return
    dtype = DTYPES[dtype_name]
    x = torch.randn(m, k).to(dtype)
    esize = torch.empty(0, dtype=dtype).element_size()
    copies = max(1, -(-COLD_BYTES // (n * k * esize)))
    ws = [torch.randn(n, k).to(dtype) for _ in range(copies)]
    packs = [_C.pack_linear_weight(w) for w in ws]
    rot = Rotation(copies)
    us = time_us(lambda: _C.linear(x, packs[rot.next()], None), min_seconds=0.2)
    ref_us = time_us(lambda: F.linear(x, ws[rot.next()]), min_seconds=0.2)
    best = best_us(lambda: _C.linear(x, packs[rot.next()], None))
    ref_best = best_us(lambda: F.linear(x, ws[rot.next()]))
    nbytes = (n * k + m * k + m * n) * esize
    rec = case(name, us, nbytes, ref_us, M=m, N=n, K=k, dtype=dtype_name, weight_copies=copies)
    rec["gflops"] = 2.0 * m * n * k / us / 1e3
    rec["torch_gflops"] = 2.0 * m * n * k / ref_us / 1e3
    # Fastest call of each: on a loaded machine the median mostly measures the OS scheduler.
    rec["best_us"] = best
    rec["best_gbps"] = nbytes / best / 1e3
    rec["best_gflops"] = 2.0 * m * n * k / best / 1e3
    rec["torch_best_us"] = ref_best
    rec["best_speedup_vs_torch"] = ref_best / best
    if m == 1:
        add_served(rec, x, packs, False, nbytes)
    emit(rec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="decode M=1 and one prefill size only")
    ap.add_argument("--dtype", choices=sorted(DTYPES) + list(QTYPES), action="append")
    ap.add_argument("--m", type=int, action="append", help="row counts (default: a sweep)")
    ap.add_argument("--shape", choices=sorted(SHAPES), action="append")
    ap.add_argument("--threads", type=int, help="OpenMP threads for both (default: torch's)")
    ap.add_argument("--cpu-time", action="store_true", help="time in thread CPU time, 1 thread")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:  # one thread, timed in its CPU time (median and best alike)
        use_thread_cpu_time()
        global CLOCK
        CLOCK = time.thread_time
    ms = args.m or ([1, 512] if args.quick else [1, 4, 16, 64, 256, 512])
    isa = {"isa": _C.linear_isa(), "quant_isa": _C.quant_linear_isa()}
    emit({"name": "machine", **isa, **machine_info(), **machine_bandwidth()})
    for dtype_name in args.dtype or ["q4_1", "q8_0", "bf16", "fp32"]:
        for shape in args.shape or list(SHAPES):
            n, k = SHAPES[shape]
            for m in ms:
                if shape == "lm_head" and m > 64:
                    continue  # the LM head only sees the last token of each sequence
                run_case(shape, m, n, k, dtype_name)


if __name__ == "__main__":
    main()
