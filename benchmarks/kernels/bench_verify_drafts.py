"""Draft verification cost: the native _C.verify_drafts vs the PyTorch verify_ref, interleaved.

One request, 4 drafts (5 rows of a 49,152-token vocabulary, the default model's), temperature
0.7 and top-p 0.9, one thread, thread CPU time per call.

    PYTHONPATH=python python benchmarks/kernels/bench_verify_drafts.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from radixserve.engine.speculative.rejection import verify_native, verify_ref
from radixserve.layers.sampling_info import SamplingBatchInfo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--num-draft", type=int, default=4)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    k = args.num_draft
    logits = torch.randn(k + 1, args.vocab, generator=g) * 2.5
    info = SamplingBatchInfo(
        temperatures=torch.full((1,), 0.7),
        top_ps=torch.full((1,), 0.9),
        top_ks=torch.full((1,), args.vocab, dtype=torch.int32),
        min_ps=torch.zeros(1),
        seeds=torch.zeros(1, dtype=torch.int64),
        steps=torch.zeros(1, dtype=torch.int64),
        is_all_greedy=False,
    )
    drafts = [[int(logits[j].argmax()) for j in range(k)]]
    times: dict[str, list[float]] = {"native": [], "torch": []}
    for _ in range(args.rounds):
        for name, verify in (("native", verify_native), ("torch", verify_ref)):
            t0 = time.thread_time()
            for i in range(args.calls):
                info.steps[0] = i
                verify(logits, info, drafts)
            times[name].append(round((time.thread_time() - t0) / args.calls * 1e3, 3))
    print(json.dumps({
        "bench": "verify_drafts", "vocab": args.vocab, "num_draft": k, "dtype": "float32 logits",
        "ms_per_call": times, "load_avg_1m": round(os.getloadavg()[0], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
