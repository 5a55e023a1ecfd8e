"""Per-step cost of the scheduler around the model, in process (no server, no IPC).

Builds the scheduler of the default model (or --model-path), queues one greedy request of
--prompt-tokens tokens with --new-tokens to generate, and runs step() until it finishes, timing
each decode step (wall and this thread's CPU). `--profile` prints a cProfile of the decode steps
(tottime), which shows the Python and small-tensor work between the native calls.
`--fixed-logits` replaces the model forward by fixed logits after the prefill: what is left is
the scheduler's own per-step cost (batch build, sampling, result processing, update encoding)
with warm caches (in serving, the forward streams the weights through the caches between steps,
so the same work costs 2-4x more; benchmarks/serving/step_phases measures it there).

    PYTHONPATH=python python benchmarks/serving/bench_sched_step.py --rounds 3 --profile
    PYTHONPATH=python python benchmarks/serving/bench_sched_step.py --fixed-logits --new-tokens 2000
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-path", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=300)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--fixed-logits", action="store_true")
    a = ap.parse_args()

    import torch

    from radixserve.args import ServerArgs
    from radixserve.engine import ipc
    from radixserve.engine.sampling_params import SamplingParams
    from radixserve.engine.scheduler import build_scheduler

    torch.set_num_threads(a.threads)
    args = ServerArgs(model_path=a.model_path)
    sched = build_scheduler(args)
    walls: list[float] = []
    cpus: list[float] = []
    prof = cProfile.Profile() if a.profile else None
    for rnd in range(a.rounds):
        ids = [(rnd * 7919 + i * 31) % 40000 + 100 for i in range(a.prompt_tokens)]
        params = SamplingParams(max_new_tokens=a.new_tokens, temperature=0.0, ignore_eos=True)
        sched.add_request(ipc.TokenizedGenerateReq(
            rid=f"r{rnd}", input_ids=ids, sampling_params=params, max_new_tokens=a.new_tokens,
            seed=rnd, stream=True))  # fmt: skip
        sched.step()  # prefill
        if a.fixed_logits:
            logits = torch.randn(1, sched.vocab_size)
            sched.runner.forward = lambda fb, logits=logits: logits
        while not sched.is_idle():
            w0, c0 = time.perf_counter(), time.thread_time()
            if prof is not None and rnd > 0:
                prof.enable()
            updates = sched.step()
            ipc.encode(ipc.BatchOut(updates))
            if prof is not None:
                prof.disable()
            walls.append(time.perf_counter() - w0)
            cpus.append(time.thread_time() - c0)
    print(json.dumps({
        "decode_steps": len(walls),
        "wall_ms_median": round(statistics.median(walls) * 1e3, 3),
        "wall_ms_p10": round(sorted(walls)[len(walls) // 10] * 1e3, 3),
        "thread_cpu_ms_median": round(statistics.median(cpus) * 1e3, 3),
        "threads": a.threads,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }))
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(35)


if __name__ == "__main__":
    main()
