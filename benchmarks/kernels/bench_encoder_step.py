"""Where a short sentence's scheduler step goes: all-MiniLM-L6-v2 run through the real
Scheduler (built as the server builds it), one request per step, on one thread.

Usage: PYTHONPATH=python python benchmarks/kernels/bench_encoder_step.py [--tokens 9]
       [--steps 200] [--rounds 3]
Prints, per round, the thread CPU time of one step (add_request until idle) split by component:
the linears, LayerNorm, attention, GELU, pooling + normalisation, the rest of the encoder
(embeddings, views, module calls), and the scheduler outside the forward (planning, KV slots,
the reply). Then the CPU time of one pass over the 36 linears with the weights cache-resident
(one layer's 4 linears repeated) vs streamed (all 6 layers, 42.5 MB of fp32 > 32 MiB L3): the
step's linears run streamed. Thread CPU time leaves out the time other jobs hold the core, so
the split holds on a loaded machine; cache and memory contention with those jobs remain.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

import radixserve.layers.linear as linear_mod
import radixserve.models.bert as bert
from radixserve.args import ServerArgs
from radixserve.engine import ipc
from radixserve.engine.model_runner import ModelRunner
from radixserve.engine.sampling_params import SamplingParams
from radixserve.engine.scheduler import build_scheduler

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "serving"))
from bench_embeddings import minilm_path  # noqa: E402

# Component -> (owner, attribute): the callables timed. Nested calls are timed once each; the
# encoder's own time is reported minus the components inside it.
_TIMED = {
    "linear": (linear_mod.Linear, "forward"),
    "layernorm": (bert.LayerNorm, "forward"),
    "attention": (bert, "encoder_attention"),
    "gelu": (bert, "gelu"),
    "pool": (bert, "pool"),
    "normalize": (bert, "normalize"),
    "encoder": (bert.BertEncoder, "forward"),
    "forward": (ModelRunner, "forward"),
}


def instrument(acc: collections.Counter[str]) -> None:
    for key, (owner, name) in _TIMED.items():
        fn = getattr(owner, name)

        def timed(*a: Any, _fn: Callable[..., Any] = fn, _key: str = key, **k: Any) -> Any:
            t = time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                acc[_key] += time.thread_time() - t

        setattr(owner, name, timed)


def linear_pass_ms(layers: list[Any], tokens: int, passes: int = 30) -> float:
    xs = {n: torch.randn(tokens, n) for n in (384, 1536)}
    with torch.inference_mode():
        for _ in range(3):
            for lin in layers:
                lin(xs[lin.in_features])
        t = time.thread_time()
        for _ in range(passes):
            for lin in layers:
                lin(xs[lin.in_features])
    return (time.thread_time() - t) / passes * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=9, help="tokens per sentence, [CLS] and [SEP] included")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    sched = build_scheduler(ServerArgs(model_path=minilm_path(), num_threads=1))
    acc: collections.Counter[str] = collections.Counter()
    instrument(acc)
    ids = [101] + [2000 + i for i in range(args.tokens - 2)] + [102]
    count = 0

    def step() -> None:
        nonlocal count
        count += 1
        sched.add_request(ipc.TokenizedGenerateReq(
            rid=str(count), input_ids=ids, sampling_params=SamplingParams(), max_new_tokens=0,
            seed=0, pooling=True))  # fmt: skip
        t = time.thread_time()
        while not sched.is_idle():
            sched.step()
        acc["step"] += time.thread_time() - t

    for _ in range(10):
        step()
    print(f"{args.tokens}-token sentence, 1 thread, load average {os.getloadavg()[0]:.1f}; "
          "thread CPU ms per step")
    for r in range(args.rounds):
        acc.clear()
        for _ in range(args.steps):
            step()
        ms = {k: v / args.steps * 1e3 for k, v in acc.items()}
        inner = sum(ms[k] for k in ("linear", "layernorm", "attention", "gelu"))
        split = {
            "step": ms["step"],
            "linears": ms["linear"],
            "layernorm": ms["layernorm"],
            "attention": ms["attention"],
            "gelu": ms["gelu"],
            "pool+normalize": ms["pool"] + ms["normalize"],
            "encoder rest": ms["encoder"] - inner,
            "scheduler outside forward": ms["step"] - ms["forward"],
        }
        print(f"round {r}: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))
    model = sched.runner.model
    every = [m for m in model.modules() if isinstance(m, linear_mod.Linear)]
    one_layer = [m for m in model.encoder.layers[0].modules() if isinstance(m, linear_mod.Linear)]
    resident, streamed = [], []
    for _ in range(args.rounds):
        resident.append(linear_pass_ms(one_layer * len(model.encoder.layers), args.tokens))
        streamed.append(linear_pass_ms(every, args.tokens))
    mb = sum(m.weight.numel() * m.weight.element_size() for m in every) / 1e6
    print(f"36 linears x {args.tokens} rows, CPU ms per pass (median of {args.rounds}): weights "
          f"cache-resident {statistics.median(resident):.2f}, streamed ({mb:.1f} MB) "
          f"{statistics.median(streamed):.2f}")


if __name__ == "__main__":
    main()
