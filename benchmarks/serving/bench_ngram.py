"""N-gram speculative decoding on the default model: one request at a time, in process, one
thread, thread CPU time; prompts whose answers copy from them (code edits, lists).

    PYTHONPATH=python python benchmarks/serving/bench_ngram.py --output-len 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

PROMPTS = [
    "Here is a function:\n\ndef add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n"
    "\ndef mul(a, b):\n    return a * b\n\nRepeat the three functions exactly, with type hints.\n",
    "Count from 1 to 40, separated by commas: 1, 2, 3,",
    "The quick brown fox jumps over the lazy dog. Write that sentence three times.",
]


def run(spec: bool, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from radixserve.args import ServerArgs
    from radixserve.engine import ipc
    from radixserve.engine.sampling_params import SamplingParams
    from radixserve.engine.scheduler import build_scheduler

    torch.set_num_threads(1)
    extra: dict[str, Any] = {"speculative_algorithm": "NGRAM"} if spec else {}
    sched = build_scheduler(
        ServerArgs(
            max_total_tokens=8192,
            speculative_num_draft_tokens=args.num_draft,
            **extra,
        )
    )
    tok = sched.tokenizer
    params = SamplingParams(
        max_new_tokens=args.output_len,
        temperature=args.temperature,
        top_p=args.top_p,
        ignore_eos=True,
    )
    outs: list[list[int]] = []
    cpu = 0.0
    for i, text in enumerate(PROMPTS):
        chat = tok.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        ids = list(tok.encode(chat, add_special_tokens=False))
        sched.add_request(
            ipc.TokenizedGenerateReq(
                rid=str(i),
                input_ids=ids,
                sampling_params=params,
                max_new_tokens=args.output_len,
                seed=0,
            )
        )
        got: list[int] = []
        t0 = time.thread_time()
        while not sched.is_idle():
            for up in sched.step():
                got.extend(up.new_ids)
        cpu += time.thread_time() - t0
        outs.append(got)
    n = sum(len(o) for o in outs)
    s = sched.stats
    print(f"[bench_ngram] spec {spec}: {n} tokens, {cpu:.2f} s CPU", file=sys.stderr)
    return {
        "cpu_s": round(cpu, 3),
        "output_tokens_per_cpu_s": round(n / cpu, 2),
        "forward_steps": s["num_forward_steps"],
        "draft_tokens": s["num_spec_draft_tokens"],
        "accepted_tokens": s["num_spec_accepted_tokens"],
        "output_ids": outs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--num-draft", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.0, help="> 0: rejection sampling")
    p.add_argument("--top-p", type=float, default=1.0)
    args = p.parse_args()
    res = {name: run(name == "ngram", args) for name in ("plain", "ngram")}
    same = res["plain"].pop("output_ids") == res["ngram"].pop("output_ids")
    rate = res["ngram"]["accepted_tokens"] / max(res["ngram"]["draft_tokens"], 1)
    record = {
        "bench": "ngram",
        "output_len": args.output_len,
        "num_draft": args.num_draft,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "identical_outputs": same,  # expected only when greedy (sampling: same distribution)
        "accept_rate": round(rate, 3),
        "speedup": round(
            res["ngram"]["output_tokens_per_cpu_s"] / res["plain"]["output_tokens_per_cpu_s"], 3
        ),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "results": res,
    }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
