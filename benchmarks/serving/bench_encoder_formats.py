"""A/B of the encoder linears' format through the server: one radixserve server per
--encoder-linear-format (float32, int16), both up at once, the same 128-token sentences sent to
each at concurrency 32 in alternation for --rounds rounds (a shared machine's load drifts, so
the two are measured back to back). Prints sentences/s (wall) and the server's CPU time per
sentence (its whole process tree: does not depend on how much CPU other jobs leave).

    PYTHONPATH=python python benchmarks/serving/bench_encoder_formats.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from bench_embeddings import http_run, make_sentences, minilm_path, tree_cpu_seconds
from server_util import start_server

FORMATS = ("float32", "int16")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-path", default=None)
    p.add_argument("--num-sentences", type=int, default=128)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--num-threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_embeddings.py's default
    from transformers import AutoTokenizer

    model = args.model_path or minilm_path()
    sentences = make_sentences(AutoTokenizer.from_pretrained(model), args.num_sentences,
                               args.tokens, 0)  # fmt: skip
    n = len(sentences)
    servers = {}
    runs: dict[str, list[tuple[float, float, float]]] = {f: [] for f in FORMATS}
    try:
        for fmt in FORMATS:
            servers[fmt] = start_server(["--model-path", model, "--num-threads",
                                         str(args.num_threads), "--encoder-linear-format", fmt])  # fmt: skip
        for _, url in servers.values():
            asyncio.run(http_run(url, sentences[:8], 4))  # warm-up
        for _ in range(args.rounds):
            for fmt, (proc, url) in servers.items():
                load = os.getloadavg()[0]
                c0, w0 = tree_cpu_seconds(proc.pid), time.perf_counter()
                asyncio.run(http_run(url, sentences, args.concurrency))
                wall, cpu = time.perf_counter() - w0, tree_cpu_seconds(proc.pid) - c0
                runs[fmt].append((n / wall, cpu / n * 1e3, load))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    print(f"{n} sentences of {args.tokens} tokens, concurrency {args.concurrency}, "
          f"{args.num_threads} server threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")  # fmt: skip
    print()
    print("| format | sentences/s (median) | each round | server CPU ms per sentence (median) "
          "| each round | 1-min load per round |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for fmt, r in runs.items():
        print(f"| {fmt} | {statistics.median(x[0] for x in r):.1f} | "
              f"{', '.join(f'{x[0]:.1f}' for x in r)} | {statistics.median(x[1] for x in r):.1f} | "
              f"{', '.join(f'{x[1]:.1f}' for x in r)} | {', '.join(f'{x[2]:.1f}' for x in r)} |")  # fmt: skip


if __name__ == "__main__":
    main()
