"""How long an online request can wait for a running batch step to pause: the scheduler (the
real engine, default model, no HTTP) runs 64 batch lines' decode steps, and the time between
consecutive pause checks (Scheduler.online_arrived, which never pauses here) is recorded, from
the step's start to its end. The largest gap bounds that wait. The gap before the first check
is the step's set-up (before the check ahead of the first layer: its set-up and first layer);
the one after the last check is what no pause can shorten: the float copy of the logits, the
sampling and the step's output (before the check after the last LM head slice, that slice
too; before the pausable LM head, the whole LM head).
Thread CPU time by default (one thread): a loaded machine's preemptions left out.

    PYTHONPATH=python python benchmarks/serving/bench_pause_gaps.py [--rows 64] [--steps 20]
        [--wall]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from radixserve.args import ServerArgs
from radixserve.engine import ipc
from radixserve.engine.sampling_params import SamplingParams
from radixserve.engine.scheduler import build_scheduler


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=64, help="batch lines decoding together")
    p.add_argument("--steps", type=int, default=20, help="decode steps measured")
    p.add_argument("--wall", action="store_true", help="wall time instead of thread CPU time")
    args = p.parse_args()
    clock = time.perf_counter if args.wall else time.thread_time
    server = ServerArgs(max_total_tokens=16384, max_running_requests=args.rows, num_threads=1,
                        online_recent_window=0.0, grammar_backend="none",
                        background_prefill_size=4096)  # fmt: skip
    s = build_scheduler(server)
    torch.set_num_threads(1)
    rng = random.Random(0)
    new_tokens = 1000  # none finishes before the measured steps (the process just ends)
    for i in range(args.rows):
        ids = [rng.randrange(100, 40_000) for _ in range(40)]
        params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True)
        s.add_request(ipc.TokenizedGenerateReq(rid=f"bg{i}", input_ids=ids, sampling_params=params,
                                               max_new_tokens=new_tokens, seed=i, background=True))  # fmt: skip
    for _ in range(100):  # the prefills
        if not s.waiting and s.chunked is None and len(s.running) == args.rows:
            break
        s.step()
    assert len(s.running) == args.rows, "the lines did not all start decoding"
    checks: list[float] = []

    def check() -> bool:
        checks.append(clock())
        return False

    s.online_arrived = check
    largest, first, last, steps, counts = [], [], [], [], []
    for _ in range(args.steps):
        checks.clear()
        t0 = clock()
        s.step()
        t1 = clock()
        marks = [t0, *checks, t1]
        gaps = [b - a for a, b in zip(marks[:-1], marks[1:], strict=True)]
        largest.append(max(gaps) * 1e3)
        first.append(gaps[0] * 1e3)
        last.append(gaps[-1] * 1e3)
        steps.append((t1 - t0) * 1e3)
        counts.append(len(checks))
    print(json.dumps({
        "rows": args.rows, "steps": args.steps, "clock": "wall" if args.wall else "thread_cpu",
        "pause_checks_per_step": statistics.median(counts),
        "step_ms_median": round(statistics.median(steps), 2),
        "largest_gap_ms_median": round(statistics.median(largest), 2),
        "largest_gap_ms_max": round(max(largest), 2),
        "gap_before_first_check_ms_median": round(statistics.median(first), 2),
        "gap_after_last_check_ms_median": round(statistics.median(last), 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
