"""The pausable LM head's cost: the default model's LM head over M hidden rows computed whole
(LogitsProcessor.forward) vs in HEAD_SLICES vocabulary slices with a pause check between them
that never pauses (forward_pausable, as a background step with no online work runs it).
Cases alternate call by call so the machine's load hits both alike. Prints one JSON line per
row count (median and minimum ms per call, their ratios, and the median of the ratios of
neighbouring calls).

    PYTHONPATH=python python benchmarks/kernels/bench_lm_head_slices.py [--dtype auto|float32]
        [--m 64] [--threads 1] [--repeats 30] [--cpu-time]

--cpu-time (one thread) times with this thread's CPU time, which a loaded machine's preemptions
do not inflate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from radixserve.layers.backend import set_kernel_backend
from radixserve.layers.logits import HEAD_SLICES
from radixserve.models.loader import load_model, load_model_config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dtype", default="auto", help="auto: the GGUF's quantized weights")
    p.add_argument("--m", type=int, nargs="+", default=[64])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--cpu-time", action="store_true", help="thread CPU time (needs --threads 1)")
    args = p.parse_args()
    if args.cpu_time and args.threads != 1:
        p.error("--cpu-time needs --threads 1")
    clock = time.thread_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(args.threads)
    set_kernel_backend("native")
    model = load_model(load_model_config(None, args.dtype, native_kernels=True))
    head = model.logits_processor
    quant = head.lm_head.quant_packed is not None
    for m in args.m:
        gen = torch.Generator().manual_seed(m)
        hidden = torch.randn(m, model.config.hidden_size, generator=gen).to(model.config.dtype)
        times: dict[str, list[float]] = {"whole": [], "sliced": []}
        with torch.inference_mode():
            whole = head(hidden)
            sliced, paused = head.forward_pausable(hidden, lambda: False)
            assert paused is None and torch.equal(sliced, whole), "sliced logits differ"
            for _ in range(args.repeats):
                for name in ("whole", "sliced"):
                    t0 = clock()
                    if name == "whole":
                        head(hidden)
                    else:
                        head.forward_pausable(hidden, lambda: False)
                    times[name].append((clock() - t0) * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        pairs = [s / w for s, w in zip(times["sliced"], times["whole"], strict=True)]
        print(json.dumps({
            "case": "lm_head", "dtype": args.dtype, "quantized": quant, "m": m,
            "vocab": head.lm_head.out_features, "slices": HEAD_SLICES, "threads": args.threads,
            "repeats": args.repeats, "clock": "thread_cpu" if args.cpu_time else "wall",
            "whole_ms_median": round(med["whole"], 2), "sliced_ms_median": round(med["sliced"], 2),
            "whole_ms_min": round(min(times["whole"]), 2),
            "sliced_ms_min": round(min(times["sliced"]), 2),
            "sliced_over_whole_median": round(med["sliced"] / med["whole"], 4),
            "sliced_over_whole_min": round(min(times["sliced"]) / min(times["whole"]), 4),
            "paired_ratio_median": round(statistics.median(pairs), 4),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
