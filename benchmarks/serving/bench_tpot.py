"""1-user decode time per output token (TPOT) of the offline Engine, per --dtype.

TPOT = (time of a greedy request with 1 + N new tokens - time with 1 new token) / N, best of
--repeat runs each (the best resists other jobs' preemptions on a shared machine). Prints one
JSON line per dtype. `auto` keeps a GGUF's quantization; `float32` dequantises it at load.

    PYTHONPATH=python python benchmarks/serving/bench_tpot.py --dtype auto --dtype float32
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

PROMPT = "Write a long story about a robot who learns to paint."


def measure(dtype: str, new_tokens: int, repeat: int, threads: int | None) -> dict[str, Any]:
    from radixserve.engine.engine import Engine

    kw: dict[str, Any] = {"dtype": dtype}
    if threads:
        kw["num_threads"] = threads
    with Engine(None, **kw) as eng:

        def run(n: int) -> float:
            params = {"max_new_tokens": n, "ignore_eos": True, "temperature": 0.0}
            eng.flush_cache()
            t0 = time.perf_counter()
            eng.generate(PROMPT, sampling_params=params)
            return time.perf_counter() - t0

        run(4)  # warm-up
        short = min(run(1) for _ in range(repeat))
        long = min(run(1 + new_tokens) for _ in range(repeat))
    return {
        "dtype": dtype,
        "tpot_ms": round((long - short) / new_tokens * 1e3, 2),
        "first_token_ms": round(short * 1e3, 1),
        "new_tokens": new_tokens,
        "repeat": repeat,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", action="append", help="auto | float32 | bfloat16 (repeatable)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--num-threads", type=int, default=None)
    args = ap.parse_args()
    for dtype in args.dtype or ["auto", "float32"]:
        print(
            json.dumps(measure(dtype, args.new_tokens, args.repeat, args.num_threads)), flush=True
        )


if __name__ == "__main__":
    main()
