"""N-gram speculative decoding on the default model, 1 user, on an input-grounded workload:
chat prompts that ask the instruct model to repeat, quote, extract or lightly edit passages of
the prompt (what prompt-lookup decoding is for). One request at a time, in process, one
thread; wall time and thread CPU time per mode, acceptance per prompt, and the forward's CPU
cost by row count (a verify step of 1 + k rows against a 1-row decode step).

Modes: plain (no speculation), ngram (adaptive drafting, engine/speculative/policy.py),
ngram-fixed (every step drafts all the n-gram match offers, up to --num-draft) and ngram-ref
(adaptive, drafts verified by the PyTorch definition rejection.verify_ref). Every mode is a
scheduler in this one process; they take turns request by request (the order reversed every
other prompt), so each pair of runs sees the same machine load. A warm-up pass caches every
prompt first (the timed runs are decode, plus a one-token extend). Requests stop at EOS or
--output-len; sampled requests are seeded per (round, prompt).

    PYTHONPATH=python python benchmarks/serving/bench_ngram.py --repeat 3
    PYTHONPATH=python python benchmarks/serving/bench_ngram.py --temperature 0.7 --top-p 0.9 \
        --modes plain,ngram,ngram-fixed --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

PASSAGE = (
    "The Great Barrier Reef is the world's largest coral reef system, composed of over 2,900 "
    "individual reefs and 900 islands stretching for over 2,300 kilometres over an area of "
    "approximately 344,400 square kilometres. The reef is located in the Coral Sea, off the "
    "coast of Queensland, Australia."
)
CODE = (
    "def read_config(path):\n    with open(path) as f:\n        lines = f.readlines()\n"
    '    config = {}\n    for line in lines:\n        key, value = line.strip().split("=", 1)\n'
    "        config[key] = value\n    return config\n"
)
NOTES = (
    "Meeting notes, 12 March. Attendees: Alice, Bob, Carol. Alice will send the budget to the "
    "finance team by Friday. Bob reported that the new build server is ready and that the "
    "nightly tests now finish in forty minutes. Carol asked everyone to review the design "
    "document before the next meeting. The next meeting is on 19 March at 10 am."
)
PROMPTS = {  # name: a chat request whose answer copies from its own prompt
    "repeat": "Repeat the following text exactly, word for word:\n\n" + PASSAGE,
    "type-hints": "Here is a Python function:\n\n"
    + CODE
    + "\nRewrite this function with type hints. Keep the body the same.",
    "quote": "Read the text below and quote the sentence that says where the reef is located."
    "\n\n" + PASSAGE,
    "summary": "Summarize the following text in two sentences, reusing its wording:\n\n" + PASSAGE,
    "extract": "From the meeting notes below, list every action item, quoting the notes."
    "\n\n" + NOTES,
    "copy-list": "Copy this list exactly:\n- apples: 3 kg\n- bananas: 2 kg\n- cherries: 500 g\n"
    "- dates: 1 kg\n- figs: 250 g\n",
}


def time_forward(sched: Any, costs: dict[int, list[float]]) -> None:
    """Records the thread CPU time of every forward of `sched.runner` by its input rows."""
    runner = sched.runner
    forward = runner.forward

    def timed(fb: Any, *a: Any, **kw: Any) -> Any:
        t0 = time.thread_time()
        out = forward(fb, *a, **kw)
        costs[int(fb.input_ids.shape[0])].append(time.thread_time() - t0)
        return out

    runner.forward = timed


class Mode:
    """One scheduler (speculation on or off, adaptive or fixed) and what its requests cost."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        from radixserve.args import ServerArgs
        from radixserve.engine.scheduler import build_scheduler

        self.name = name
        extra: dict[str, Any] = {"speculative_algorithm": "NGRAM"} if name != "plain" else {}
        self.sched = build_scheduler(
            ServerArgs(
                max_total_tokens=8192,
                num_threads=1,  # one thread: thread CPU time is the whole cost
                speculative_num_draft_tokens=args.num_draft,
                **extra,
            )
        )
        if self.sched.speculator is not None:
            self.sched.speculator.adaptive = name != "ngram-fixed"
        self.costs: dict[int, list[float]] = defaultdict(list)
        time_forward(self.sched, self.costs)
        self.runs: list[dict[str, Any]] = []  # one per (round, prompt)

    def generate(self, ids: list[int], seed: int, args: argparse.Namespace) -> dict[str, Any]:
        """One request alone, to its end; its CPU and wall time and speculation counts."""
        from radixserve.engine import ipc
        from radixserve.engine.sampling_params import SamplingParams
        from radixserve.engine.speculative import decode, rejection

        decode.verify_drafts = (  # type: ignore[attr-defined]
            rejection.verify_ref if self.name == "ngram-ref" else rejection.verify_drafts
        )
        sched = self.sched
        params = SamplingParams(
            max_new_tokens=args.output_len, temperature=args.temperature, top_p=args.top_p
        )
        before = dict(sched.stats)
        sched.add_request(
            ipc.TokenizedGenerateReq(
                rid=str(len(self.runs)),
                input_ids=ids,
                sampling_params=params,
                max_new_tokens=args.output_len,
                seed=seed,
            )
        )
        got: list[int] = []
        t0, w0 = time.thread_time(), time.perf_counter()
        while not sched.is_idle():
            for up in sched.step():
                got.extend(up.new_ids)
        cpu, wall = time.thread_time() - t0, time.perf_counter() - w0
        s = sched.stats
        return {
            "tokens": len(got),
            "cpu_s": cpu,
            "wall_s": wall,
            "steps": s["num_forward_steps"] - before["num_forward_steps"],
            "drafts": s["num_spec_draft_tokens"] - before["num_spec_draft_tokens"],
            "accepted": s["num_spec_accepted_tokens"] - before["num_spec_accepted_tokens"],
            "output_ids": got,
        }


def totals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    n, cpu, wall = (sum(r[k] for r in runs) for k in ("tokens", "cpu_s", "wall_s"))
    drafts, accepted, steps = (sum(r[k] for r in runs) for k in ("drafts", "accepted", "steps"))
    return {
        "tokens": n,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "tok_per_cpu_s": round(n / cpu, 2),
        "tok_per_wall_s": round(n / wall, 2),
        "drafts": drafts,
        "accepted": accepted,
        "accept_rate": round(accepted / drafts, 3) if drafts else None,
        # Every request's first token comes from its prefill step.
        "tokens_per_decode_step": round((n - len(runs)) / max(steps - len(runs), 1), 3),
    }


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-len", type=int, default=128, help="max new tokens per request")
    p.add_argument("--num-draft", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.0, help="> 0: rejection sampling")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--modes", default="plain,ngram", help="plain, ngram, ngram-fixed, ngram-ref")
    p.add_argument("--repeat", type=int, default=1, help="rounds over the prompts")
    args = p.parse_args()
    torch.set_num_threads(1)
    modes = [Mode(m, args) for m in args.modes.split(",")]
    tok = modes[0].sched.tokenizer
    prompts = {
        name: list(
            tok.encode(
                tok.apply_chat_template(
                    [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
                ),
                add_special_tokens=False,
            )
        )
        for name, text in PROMPTS.items()
    }
    for m in modes:  # warm-up: every prompt cached, first-call costs paid (not recorded)
        for i, ids in enumerate(prompts.values()):
            m.generate(ids, i, args)
        m.costs.clear()
    loads = []
    turn = 0
    for r in range(args.repeat):
        loads.append(round(os.getloadavg()[0], 2))
        for i, (name, ids) in enumerate(prompts.items()):
            # Modes take turns on the same prompt, the order reversed every other turn.
            for m in modes if turn % 2 == 0 else modes[::-1]:
                m.runs.append({"round": r, "prompt": name, **m.generate(ids, 1000 * r + i, args)})
            turn += 1
        print(f"[bench_ngram] round {r} done, load {loads[-1]}", file=sys.stderr)
    loads.append(round(os.getloadavg()[0], 2))
    plain = next((m for m in modes if m.name == "plain"), None)
    spec = [m for m in modes if m.name != "plain"]
    record: dict[str, Any] = {
        "bench": "ngram",
        "output_len": args.output_len,
        "num_draft": args.num_draft,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "repeat": args.repeat,
        "load_avg_1m": loads,
        "modes": {m.name: totals(m.runs) for m in modes},
        "rounds": {
            m.name: [totals([x for x in m.runs if x["round"] == r]) for r in range(args.repeat)]
            for m in modes
        },
        "per_prompt": {
            m.name: {name: totals([x for x in m.runs if x["prompt"] == name]) for name in prompts}
            for m in modes
        },
        # Median forward CPU ms by input rows: a verify step of 1 + k rows vs a decode step.
        "forward_ms_by_rows": {
            m.name: {
                rows: round(statistics.median(v) * 1e3, 2)
                for rows, v in sorted(m.costs.items())
                if rows <= 16
            }
            for m in modes
        },
    }
    if plain is not None:
        # Greedy only: the same tokens (sampled: the same distribution, not the same tokens).
        record["identical_outputs"] = {
            m.name: [x["output_ids"] for x in m.runs] == [x["output_ids"] for x in plain.runs]
            for m in spec
        }
        record["speedup"] = {
            m.name: {
                "cpu": round(
                    record["modes"][m.name]["tok_per_cpu_s"]
                    / record["modes"]["plain"]["tok_per_cpu_s"],
                    3,
                ),
                "wall": round(
                    record["modes"][m.name]["tok_per_wall_s"]
                    / record["modes"]["plain"]["tok_per_wall_s"],
                    3,
                ),
                "cpu_per_round": [
                    round(a["tok_per_cpu_s"] / b["tok_per_cpu_s"], 3)
                    for a, b in zip(
                        record["rounds"][m.name], record["rounds"]["plain"], strict=True
                    )
                ],
            }
            for m in spec
        }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
