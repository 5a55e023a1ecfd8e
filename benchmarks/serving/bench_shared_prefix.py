"""Offline throughput with a shared system prompt, cascade attention on and off.

N requests = one shared prefix (e.g. a 1,025-token system prompt, already in the radix cache
from an earlier request, as on a server that has seen it; `--cold`: not cached, the burst
arrives on it) + a few distinct tokens each; greedy,
ignore_eos. Runs the same prompts through radixserve.Engine with `--disable-cascade-attention`
and without, checks that the outputs are identical, and prints one JSON line.

    PYTHONPATH=python python benchmarks/serving/bench_shared_prefix.py --num-prompts 16 \
        --shared-len 1025 --distinct-len 32 --output-len 64
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
    print(f"[bench_shared_prefix] {msg}", file=sys.stderr, flush=True)


def run(
    args: argparse.Namespace, cascade: bool, shared: list[int], prompts: list[list[int]]
) -> dict[str, Any]:
    from radixserve.engine.engine import Engine

    kw: dict[str, Any] = {
        "dtype": args.dtype,
        "max_running_requests": max(args.num_prompts, 1),
        "disable_cascade_attention": not cascade,
    }
    if args.max_total_tokens:
        kw["max_total_tokens"] = args.max_total_tokens
    if args.num_threads:
        kw["num_threads"] = args.num_threads
    log(f"starting engine (cascade {'on' if cascade else 'off'})")
    with Engine(args.model_path, **kw) as eng:
        params = {"max_new_tokens": args.output_len, "ignore_eos": True, "temperature": 0.0}
        if not args.cold:  # the system prompt is cached already (a server that has seen it)
            eng.generate(input_ids=shared, sampling_params={**params, "max_new_tokens": 1})
        before = eng.get_load()
        start = time.perf_counter()
        outs = eng.generate(input_ids=prompts, sampling_params=params)
        elapsed = time.perf_counter() - start
        load = eng.get_load()
    out_tokens = sum(len(o["output_ids"]) for o in outs)
    steps = load["num_forward_steps"] - before["num_forward_steps"]
    log(f"cascade {'on' if cascade else 'off'}: {out_tokens} tokens in {elapsed:.2f} s")
    return {
        "elapsed_s": round(elapsed, 3),
        "output_tokens_per_s": round(out_tokens / elapsed, 2),
        "forward_steps": steps,
        "cascade_steps": load.get("num_cascade_steps", 0) - before.get("num_cascade_steps", 0),
        "cached_tokens": sum(o["meta_info"].get("cached_tokens", 0) for o in outs),
        "output_ids": [o["output_ids"] for o in outs],
    }


def run_in_process(
    args: argparse.Namespace, cascade: bool, shared: list[int], prompts: list[list[int]]
) -> dict[str, Any]:
    """The scheduler and model in this process on one thread, timed by this thread's CPU time
    (on a machine shared with other jobs, wall time mostly measures the others)."""
    import torch

    from radixserve.args import ServerArgs
    from radixserve.engine import ipc
    from radixserve.engine.sampling_params import SamplingParams
    from radixserve.engine.scheduler import build_scheduler

    torch.set_num_threads(1)
    kw: dict[str, Any] = {"dtype": args.dtype, "max_running_requests": max(args.num_prompts, 1)}
    if args.max_total_tokens:
        kw["max_total_tokens"] = args.max_total_tokens
    sched = build_scheduler(
        ServerArgs(model_path=args.model_path, disable_cascade_attention=not cascade, **kw)
    )
    params = SamplingParams(max_new_tokens=args.output_len, temperature=0.0, ignore_eos=True)

    def submit(rid: str, ids: list[int], n: int) -> None:
        msg = ipc.TokenizedGenerateReq(
            rid=rid, input_ids=ids, sampling_params=params, max_new_tokens=n, seed=0
        )
        sched.add_request(msg)

    outputs: dict[str, list[int]] = {}

    def drain() -> None:
        while not sched.is_idle():
            for up in sched.step():
                outputs.setdefault(up.rid, []).extend(up.new_ids)

    if not args.cold:
        submit("warm", shared, 1)
        drain()
    before = dict(sched.stats)
    for i, p in enumerate(prompts):
        submit(f"r{i}", p, args.output_len)
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    drain()
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    out_tokens = sum(len(outputs[f"r{i}"]) for i in range(len(prompts)))
    log(f"cascade {'on' if cascade else 'off'}: {out_tokens} tokens, {cpu:.2f} s CPU")
    return {
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "output_tokens_per_cpu_s": round(out_tokens / cpu, 2),
        "forward_steps": sched.stats["num_forward_steps"] - before["num_forward_steps"],
        "cascade_steps": sched.stats["num_cascade_steps"] - before["num_cascade_steps"],
        "output_ids": [outputs[f"r{i}"] for i in range(len(prompts))],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-path", default=None)
    p.add_argument("--num-prompts", type=int, default=16)
    p.add_argument("--shared-len", type=int, default=1025)
    p.add_argument("--distinct-len", type=int, default=32)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--max-total-tokens", type=int, default=None)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--order", default="off,on", help="which runs, in order: off,on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cold", action="store_true", help="no warm-up: the burst arrives on an uncached prefix"
    )
    p.add_argument(
        "--in-process", action="store_true", help="1 thread in this process, thread CPU time"
    )
    args = p.parse_args()
    rng = random.Random(args.seed)
    shared = [rng.randrange(200, 49152) for _ in range(args.shared_len)]
    prompts = [
        shared + [rng.randrange(200, 49152) for _ in range(args.distinct_len)]
        for _ in range(args.num_prompts)
    ]
    results: dict[str, Any] = {}
    for name in args.order.split(","):
        runner = run_in_process if args.in_process else run
        results[name] = runner(args, name == "on", shared, prompts)
    ids = [r.pop("output_ids") for r in results.values()]
    record = {
        "bench": "shared_prefix",
        "model": args.model_path or "default (SmolLM2-135M-Instruct Q4_1)",
        "num_prompts": args.num_prompts,
        "shared_len": args.shared_len,
        "distinct_len": args.distinct_len,
        "output_len": args.output_len,
        "cold": args.cold,
        "dtype": args.dtype,
        "cpu": platform.processor() or platform.machine(),
        "threads": 1 if args.in_process else (args.num_threads or os.cpu_count()),
        "clock": "thread_cpu" if args.in_process else "wall",
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "identical_outputs": all(x == ids[0] for x in ids),
        "results": results,
    }
    if "on" in results and "off" in results:
        key = "output_tokens_per_cpu_s" if args.in_process else "output_tokens_per_s"
        record["speedup"] = round(results["on"][key] / results["off"][key], 3)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
