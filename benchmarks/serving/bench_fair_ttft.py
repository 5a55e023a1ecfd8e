"""TTFT and decode ITL when a burst of prompts arrives while streams are decoding.

`--num-running` streams (short prompts, long outputs) are decoding when `--num-burst` new
prompts of `--burst-len` tokens arrive at once (optionally behind one `--long-len` prompt that
arrived first, the head-of-line case). The scheduler and model run in this process on one
thread; the clock is this thread's CPU time summed over scheduler steps (on a machine shared
with other jobs, wall time mostly measures the others), so TTFT = clock at a request's first
token - clock at its arrival, ITL = clock between successive tokens of one stream. Each
`--policies` entry runs the same workload; one JSON line is printed.

    PYTHONPATH=python python benchmarks/serving/bench_fair_ttft.py --num-burst 16 \\
        --burst-len 256 --num-running 4 --policies fcfs,fair
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from typing import Any


def log(msg: str) -> None:
    print(f"[bench_fair_ttft] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def run(
    args: argparse.Namespace, policy: str, workload: dict[str, list[list[int]]]
) -> dict[str, Any]:
    import torch

    from radixserve.args import ServerArgs
    from radixserve.engine import ipc
    from radixserve.engine.sampling_params import SamplingParams
    from radixserve.engine.scheduler import build_scheduler

    torch.set_num_threads(1)
    kw: dict[str, Any] = {"dtype": args.dtype, "chunked_prefill_size": args.chunked_prefill_size}
    if args.max_total_tokens:
        kw["max_total_tokens"] = args.max_total_tokens
    sched = build_scheduler(
        ServerArgs(model_path=args.model_path, chunked_prefill_policy=policy, **kw)
    )
    clock = 0.0
    arrival: dict[str, float] = {}
    stamps: dict[str, list[float]] = {}
    fed: list[int] = []  # tokens of each forward (prefill + decode rows)
    forward = sched.runner.forward

    def counting_forward(fb: Any) -> Any:
        fed.append(int(fb.input_ids.shape[0]))
        return forward(fb)

    sched.runner.forward = counting_forward  # type: ignore[method-assign]
    timeline: list[tuple[int, float]] = []  # (tokens fed, step CPU s) while the burst waits

    def submit(rid: str, ids: list[int], n: int) -> None:
        params = SamplingParams(max_new_tokens=n, temperature=0.0, ignore_eos=True)
        sched.add_request(ipc.TokenizedGenerateReq(
            rid=rid, input_ids=ids, sampling_params=params, max_new_tokens=n, seed=0,
            stream=True,
        ))  # fmt: skip
        arrival[rid] = clock
        stamps[rid] = []

    def step() -> None:
        nonlocal clock
        t0 = time.thread_time()
        updates = sched.step()
        clock += time.thread_time() - t0
        for up in updates:
            stamps[up.rid].extend([clock] * len(up.new_ids))

    for i, p in enumerate(workload["running"]):
        submit(f"run{i}", p, args.running_output_len)
    while any(len(stamps[f"run{i}"]) < 2 for i in range(len(workload["running"]))):
        step()  # the streams are decoding
    burst_start = clock
    steps0 = sched.stats["num_forward_steps"]
    burst = [("long", p) for p in workload["long"]] + [
        (f"b{i}", p) for i, p in enumerate(workload["burst"])
    ]
    for rid, p in burst:
        submit(rid, p, args.output_len)
    while any(not stamps[rid] for rid, _ in burst):
        t0, n0 = clock, len(fed)
        step()
        timeline.append((sum(fed[n0:]), round(clock - t0, 3)))
    burst_end = clock
    burst_steps = sched.stats["num_forward_steps"] - steps0
    while not sched.is_idle():
        step()
    ttft = [stamps[rid][0] - arrival[rid] for rid, _ in burst if rid != "long"]
    # ITL of the running streams while the burst was being prefilled (the stall).
    itl_running = [
        b - a
        for i in range(len(workload["running"]))
        for a, b in zip(stamps[f"run{i}"], stamps[f"run{i}"][1:], strict=False)
        if burst_start <= a < burst_end
    ]
    itl_burst = [
        b - a for rid, _ in burst for a, b in zip(stamps[rid], stamps[rid][1:], strict=False)
    ]
    out: dict[str, Any] = {
        "ttft_p50_s": round(pct(ttft, 50), 3),
        "ttft_p99_s": round(pct(ttft, 99), 3),
        "ttft_max_s": round(max(ttft), 3),
        "ttft_mean_s": round(sum(ttft) / len(ttft), 3),
        "running_itl_p50_s": round(pct(itl_running, 50), 3),
        "running_itl_p99_s": round(pct(itl_running, 99), 3),
        "burst_itl_p99_s": round(pct(itl_burst, 99), 3),
        "burst_prefill_steps": burst_steps,
        "burst_prefill_cpu_s": round(burst_end - burst_start, 3),
        "ttft_sorted_s": sorted(round(t, 2) for t in ttft),
        "burst_timeline": timeline,
        "total_cpu_s": round(clock, 3),
    }
    if workload["long"]:
        out["long_ttft_s"] = round(stamps["long"][0] - arrival["long"], 3)
    log(f"{policy}: {out}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-path", default=None)
    p.add_argument("--num-burst", type=int, default=16)
    p.add_argument("--burst-len", type=int, default=256)
    p.add_argument("--long-len", type=int, default=0, help="a long prompt ahead of the burst")
    p.add_argument("--output-len", type=int, default=16)
    p.add_argument("--num-running", type=int, default=4)
    p.add_argument("--running-len", type=int, default=32)
    p.add_argument("--running-output-len", type=int, default=256)
    p.add_argument("--chunked-prefill-size", type=int, default=512)
    p.add_argument("--max-total-tokens", type=int, default=32768)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--policies", default="fcfs,fair")
    p.add_argument("--repeat", type=int, default=1, help="runs per policy, interleaved")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)

    def prompt(n: int) -> list[int]:
        return [rng.randrange(200, 49152) for _ in range(n)]

    workload = {
        "running": [prompt(args.running_len) for _ in range(args.num_running)],
        "long": [prompt(args.long_len)] if args.long_len else [],
        "burst": [prompt(args.burst_len) for _ in range(args.num_burst)],
    }
    results: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for policy in args.policies.split(","):
            results.setdefault(policy, []).append(run(args, policy, workload))
    record = {
        "bench": "fair_ttft",
        "model": args.model_path or "default (SmolLM2-135M-Instruct Q4_1)",
        "num_burst": args.num_burst,
        "burst_len": args.burst_len,
        "long_len": args.long_len,
        "output_len": args.output_len,
        "num_running": args.num_running,
        "chunked_prefill_size": args.chunked_prefill_size,
        "dtype": args.dtype,
        "threads": 1,
        "clock": "thread_cpu",
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpu": platform.processor() or platform.machine(),
        "results": results,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
