"""Where a batch's encoder forward goes, in process: all-MiniLM-L6-v2 on --batch sequences of
--tokens tokens (the c32 bench's 32 x 128 by default), sentence-transformers' BertModel beside it.

Usage: OMP_WAIT_POLICY=PASSIVE PYTHONPATH=python python benchmarks/kernels/bench_encoder_parts.py
       [--batch 32] [--tokens 128] [--threads 2] [--rounds 4]
Prints, per round (variants interleaved): the EncoderStack forward warm (heap as the previous
forward left it) and after malloc_trim (what the server's scheduler does when a burst ends), and
sentence-transformers' forward: wall ms, user and system CPU ms of the process, minor page
faults. Then the per-op path with each part timed (process CPU and wall ms per forward): the
linears, attention, LayerNorm, GELU, pooling + normalisation; the per-op path runs the same
kernels as the stack.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

import radixserve.layers.linear as linear_mod
import radixserve.models.bert as bert
from radixserve.engine.heap import trim_heap

sys.path.insert(0, os.path.dirname(__file__))
from bench_encoder_forward import minilm_path, packed, radix_model  # noqa: E402


def usage() -> tuple[float, float, float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime, r.ru_stime, r.ru_minflt


def measured(fn: Callable[[], Any]) -> str:
    w0, u0, s0, f0 = usage()
    fn()
    w1, u1, s1, f1 = usage()
    return (f"wall {(w1 - w0) * 1e3:6.0f}  user {(u1 - u0) * 1e3:5.0f}  sys {(s1 - s0) * 1e3:4.0f}  "
            f"faults {f1 - f0:6d}")  # fmt: skip


def time_parts(acc: collections.Counter[str]) -> None:
    parts = {"linear": (linear_mod.Linear, "forward"), "layernorm": (bert.LayerNorm, "forward"),
             "attention": (bert, "encoder_attention"), "gelu": (bert, "gelu"),
             "pool": (bert, "pool"), "normalize": (bert, "normalize")}  # fmt: skip
    for key, (owner, name) in parts.items():
        fn = getattr(owner, name)

        def timed(*a: Any, _fn: Callable[..., Any] = fn, _key: str = key, **k: Any) -> Any:
            w, c = time.perf_counter(), time.process_time()
            try:
                return _fn(*a, **k)
            finally:
                acc[_key + " cpu"] += time.process_time() - c
                acc[_key + " wall"] += time.perf_counter() - w

        setattr(owner, name, timed)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    path = minilm_path()
    hf = SentenceTransformer(path, device="cpu")[0].auto_model.eval()
    model = radix_model(path, "int16")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 29000, (args.batch, args.tokens), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    batch = packed(ids)

    def trimmed() -> None:
        trim_heap()
        model(batch)

    print(f"{args.batch} x {args.tokens} tokens, {args.threads} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {os.getloadavg()[0]:.1f}; ms")
    with torch.inference_mode():
        model(batch)
        hf(input_ids=ids, attention_mask=mask)
        for r in range(args.rounds):
            print(f"round {r}: stack warm     {measured(lambda: model(batch))}")
            print(f"round {r}: stack trimmed  {measured(trimmed)}")
            print(f"round {r}: ST BertModel   "
                  f"{measured(lambda: hf(input_ids=ids, attention_mask=mask))}")  # fmt: skip
        model.encoder.fused = False  # the per-op modules: the same kernels, each one timed
        acc: collections.Counter[str] = collections.Counter()
        time_parts(acc)
        model(batch)
        acc.clear()
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.rounds):
            model(batch)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = args.rounds
    print(f"per-op forward: cpu {cpu / n * 1e3:.0f} wall {wall / n * 1e3:.0f}; parts (cpu / wall):")
    for key in ("linear", "attention", "gelu", "layernorm", "pool", "normalize"):
        print(f"  {key:10s} {acc[key + ' cpu'] / n * 1e3:7.1f} / {acc[key + ' wall'] / n * 1e3:7.1f}")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
