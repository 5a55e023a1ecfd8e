"""Serving-loop benchmark for --device cuda: 1-user TPOT and N-user throughput, with and without
CUDA graphs, through the real scheduler in this process (continuous batching, radix cache,
overlap scheduling; no HTTP, so a GPU machine needs no web stack to run it).

Prints one JSON line per (graph mode, users) and writes all of them to --out. Runs on the CPU as
well (--device cpu), which is how it is smoke-tested; on the CPU there are no graphs and no
overlap. tools/gpu_check.sh runs it on a GPU:

    PYTHONPATH=python python benchmarks/serving/bench_gpu.py --device cuda --dtype bfloat16 \
        --users 1,64 --input-len 128 --output-len 128 --graphs on,off --out $OUT/bench.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any, Optional

import torch


def log(msg: str) -> None:
    print(f"[bench_gpu] {msg}", file=sys.stderr, flush=True)


def run_users(sched: Any, users: int, input_len: int, output_len: int, seed: int) -> dict[str, Any]:
    from radixserve.engine import ipc
    from radixserve.engine.sampling_params import SamplingParams

    rng = random.Random(seed)
    vocab = sched.vocab_size
    params = SamplingParams(max_new_tokens=output_len, temperature=0.0, ignore_eos=True)
    start = time.perf_counter()
    for u in range(users):
        prompt = [rng.randrange(200, vocab) for _ in range(input_len)]
        sched.add_request(ipc.TokenizedGenerateReq(
            rid=f"u{seed}-{u}", input_ids=prompt, sampling_params=params,
            max_new_tokens=output_len, seed=u, stream=True))  # fmt: skip
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    tokens = 0
    steps0 = sched.stats["num_forward_steps"]
    while not sched.is_idle():
        for up in sched.step():
            now = time.perf_counter()
            tokens += len(up.new_ids)
            if up.new_ids and up.rid not in first:
                first[up.rid] = now
            if up.finished:
                done[up.rid] = now
    elapsed = time.perf_counter() - start
    if len(done) != users:
        raise RuntimeError(f"{users - len(done)} requests did not finish")
    tpot = [(done[r] - first[r]) / (output_len - 1) for r in done] if output_len > 1 else [0.0]
    ttft = [first[r] - start for r in done]
    sched.flush_cache()
    return {
        "users": users,
        "output_tokens": tokens,
        "elapsed_s": round(elapsed, 3),
        "output_tok_per_s": round(tokens / elapsed, 1),
        "mean_tpot_ms": round(1000 * sum(tpot) / len(tpot), 3),
        "mean_ttft_ms": round(1000 * sum(ttft) / len(ttft), 2),
        "forward_steps": sched.stats["num_forward_steps"] - steps0,
    }


def bench(args: argparse.Namespace, graphs: bool) -> list[dict[str, Any]]:
    from radixserve.args import ServerArgs
    from radixserve.engine.scheduler import build_scheduler

    users = [int(u) for u in args.users.split(",")]
    server_args = ServerArgs(
        model_path=args.model_path, device=args.device, dtype=args.dtype,
        max_running_requests=max(users), max_total_tokens=args.max_total_tokens,
        attention_backend=args.attention_backend, grammar_backend="none",
        disable_cuda_graph=not graphs, disable_overlap_schedule=args.no_overlap,
        num_threads=args.num_threads,
    )  # fmt: skip
    t0 = time.perf_counter()
    sched = build_scheduler(server_args)
    runner = sched.runner
    log(f"engine ready in {time.perf_counter() - t0:.1f} s on {runner.device} "
        f"(graphs {'on' if runner.graph_runner is not None else 'off'}, "
        f"overlap {'on' if sched.overlap else 'off'})")  # fmt: skip
    run_users(sched, 1, 16, 8, seed=999)  # warm-up
    rows = []
    for n in users:
        row = run_users(sched, n, args.input_len, args.output_len, seed=n)
        row.update(
            device=str(runner.device),
            dtype=args.dtype,
            attention_backend=runner.attention_backend_name,
            cuda_graphs=runner.graph_runner is not None,
            overlap=sched.overlap,
            lookahead_steps=sched.stats["num_lookahead_steps"],
            input_len=args.input_len,
            output_len=args.output_len,
        )
        log(json.dumps(row))
        print(json.dumps(row), flush=True)
        rows.append(row)
    del sched, runner
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-path", default=None, help="default: the default model")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--attention-backend", default="native")
    p.add_argument("--users", default="1,64")
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--graphs", default="on,off", help="on, off or on,off (CUDA graphs)")
    p.add_argument("--no-overlap", action="store_true", help="--disable-overlap-schedule")
    p.add_argument("--max-total-tokens", type=int, default=65536)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--out", default=None, help="write every row here as a JSON list")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for mode in args.graphs.split(","):
        rows += bench(args, graphs=mode.strip() == "on")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
