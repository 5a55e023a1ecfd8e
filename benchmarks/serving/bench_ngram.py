"""N-gram speculative decoding on the default model: one request at a time, in process, one
thread, thread CPU time; prompts whose answers copy from them (code edits, lists).

Modes: plain (no speculation), ngram (drafts verified by the native _C.verify_drafts) and
ngram-ref (the same drafts verified by the PyTorch definition, rejection.verify_ref), run in
turn `--repeat` times.

    PYTHONPATH=python python benchmarks/serving/bench_ngram.py --output-len 64
    PYTHONPATH=python python benchmarks/serving/bench_ngram.py --temperature 0.7 --top-p 0.9 \
        --modes plain,ngram,ngram-ref --repeat 2
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


def run(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from radixserve.args import ServerArgs
    from radixserve.engine import ipc
    from radixserve.engine.sampling_params import SamplingParams
    from radixserve.engine.scheduler import build_scheduler
    from radixserve.engine.speculative import decode, rejection

    torch.set_num_threads(1)
    spec = mode != "plain"
    decode.verify_drafts = (  # type: ignore[attr-defined]
        rejection.verify_ref if mode == "ngram-ref" else rejection.verify_drafts
    )
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
    print(f"[bench_ngram] {mode}: {n} tokens, {cpu:.2f} s CPU", file=sys.stderr)
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
    p.add_argument("--modes", default="plain,ngram", help="plain, ngram, ngram-ref")
    p.add_argument("--repeat", type=int, default=1, help="rounds of the modes, interleaved")
    args = p.parse_args()
    modes = args.modes.split(",")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    loads = []
    for _ in range(args.repeat):
        for m in modes:
            runs[m].append(run(m, args))
            loads.append(round(os.getloadavg()[0], 2))
    outputs = {m: [r.pop("output_ids") for r in rs] for m, rs in runs.items()}
    res = {m: rs[0] if args.repeat == 1 else rs for m, rs in runs.items()}
    spec = [m for m in modes if m != "plain"]
    rate = {
        m: round(
            sum(r["accepted_tokens"] for r in runs[m])
            / max(sum(r["draft_tokens"] for r in runs[m]), 1),
            3,
        )
        for m in spec
    }
    speed = {m: sum(r["output_tokens_per_cpu_s"] for r in rs) / len(rs) for m, rs in runs.items()}
    record = {
        "bench": "ngram",
        "output_len": args.output_len,
        "num_draft": args.num_draft,
        "temperature": args.temperature,
        "top_p": args.top_p,
        # Expected only when greedy (sampling: the same distribution, not the same tokens).
        "identical_outputs": {m: all(o == outputs["plain"][0] for o in outputs[m]) for m in spec}
        if "plain" in modes
        else None,
        # Native and PyTorch verification draw the same tokens from the same seeds.
        "native_equals_ref": outputs["ngram"] == outputs["ngram-ref"]
        if {"ngram", "ngram-ref"} <= set(modes)
        else None,
        "accept_rate": rate,
        "speedup_vs_plain": {m: round(speed[m] / speed["plain"], 3) for m in spec}
        if "plain" in modes
        else None,
        "load_avg_1m": loads,
        "results": res,
    }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
