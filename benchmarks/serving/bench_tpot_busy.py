"""1-user decode time per output token of the offline Engine while N other processes keep the
cores busy (a shared host). Each busy process spins in Python; they start before the Engine and
stop after it. Prints one JSON line per --busy value.

TPOT = (median time of a greedy request with 1 + N new tokens - best time with 1 token) / N.
A median, not a best: the point is what a user of a shared host gets, preemptions included.

    PYTHONPATH=python python benchmarks/serving/bench_tpot_busy.py --busy 0 --busy 2 --busy 4

For an A/B of two trees, alternate runs with each tree's PYTHONPATH (same --busy values).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
from typing import Any

from bench_tpot import PROMPT, generate_seconds


def _spin() -> None:
    while True:
        pass


def measure(busy: int, new_tokens: int, repeat: int) -> dict[str, Any]:
    from radixserve.engine.engine import Engine

    spinners = [mp.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(busy)]
    for p in spinners:
        p.start()
    try:
        with Engine(None) as eng:

            def run(n: int) -> float:
                return generate_seconds(eng, PROMPT, n)

            run(4)  # warm-up
            short = min(run(1) for _ in range(3))
            per_token = sorted((run(1 + new_tokens) - short) / new_tokens for _ in range(repeat))
    finally:
        for p in spinners:
            p.kill()
            p.join()
    return {
        "busy_processes": busy,
        "tpot_ms_median": round(statistics.median(per_token) * 1e3, 2),
        "tpot_ms_min": round(per_token[0] * 1e3, 2),
        "tpot_ms_max": round(per_token[-1] * 1e3, 2),
        "new_tokens": new_tokens,
        "repeat": repeat,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", "unset"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--busy", type=int, action="append", help="busy processes (repeatable)")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    for busy in args.busy or [0]:
        print(json.dumps(measure(busy, args.new_tokens, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
