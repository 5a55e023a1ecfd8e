"""fp32 queries over an fp32 vs a bfloat16 KV cache (--kv-cache-dtype): decode and extend
attention of one request, SmolLM2-135M's heads (9 query / 3 KV heads x 64), scattered slots.

Median thread CPU time of --reps calls on one thread, the two cache dtypes alternated per
shape and the whole set repeated --rounds times (A-vs-B on a loaded machine).

    PYTHONPATH=python python benchmarks/kernels/bench_attention_kv_dtype.py --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from radixserve import _C

HQ, HKV, D = 9, 3, 64


def make_call(kind: str, n: int, kv_dtype: torch.dtype) -> Callable[[], None]:
    g = torch.Generator().manual_seed(0)
    k_cache = torch.randn(n + 1, HKV, D, generator=g).to(kv_dtype)
    v_cache = torch.randn(n + 1, HKV, D, generator=g).to(kv_dtype)
    table = torch.zeros(1, n + 1, dtype=torch.int32)
    table[0, :n] = torch.randperm(n, generator=g).to(torch.int32) + 1
    rows, lens = torch.tensor([0]), torch.tensor([n])
    q = torch.randn(n if kind == "extend" else 1, HQ, D, generator=g)
    out = torch.empty_like(q)
    scale = D**-0.5
    if kind == "extend":
        ext, start = torch.tensor([n]), torch.tensor([0])
        return lambda: _C.extend_attention(
            out, q, k_cache, v_cache, table, rows, lens, ext, start, scale
        )
    return lambda: _C.decode_attention(out, q, k_cache, v_cache, table, rows, lens, scale)


def median_us(call: Callable[[], None], reps: int) -> float:
    call()
    samples = []
    for _ in range(reps):
        t0 = time.thread_time()
        call()
        samples.append(time.thread_time() - t0)
    return statistics.median(samples) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=200, help="calls per decode shape (extend: /20)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    shapes = [("decode", 300), ("decode", 2000), ("extend", 300)]
    for rnd in range(args.rounds):
        for kind, n in shapes:
            reps = args.reps if kind == "decode" else max(3, args.reps // 20)
            row: dict[str, object] = {"round": rnd, "kind": kind, "keys": n}
            for name, dtype in (("fp32_kv_us", torch.float32), ("bf16_kv_us", torch.bfloat16)):
                row[name] = round(median_us(make_call(kind, n, dtype), reps), 1)
            row["loadavg_1m"] = round(os.getloadavg()[0], 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
