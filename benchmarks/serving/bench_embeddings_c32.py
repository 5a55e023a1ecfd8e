"""Concurrency-32 embedding throughput, A/B: several radixserve servers on the same model (e.g. two
trees through --pythonpath) and sentence-transformers' encode(batch_size=32) in this process,
measured in interleaved rounds (the order rotates each round) so a shared machine's load hits
every variant alike.

    PYTHONPATH=python python benchmarks/serving/bench_embeddings_c32.py --rounds 6 \
        --variant base= --variant new= --pythonpath base=<base tree>/python

Each round, per variant: --bursts bursts (default one), each of --num-sentences sentences of
--tokens tokens sent at concurrency 32 (POST /v1/embeddings, one sentence each, as
bench_embeddings.py does) after --idle-before seconds of idle (bench_embeddings.py's c32 row
follows seconds of other work, so by default the server has trimmed its heap before each
burst). Per variant: the median over bursts of the sentences/s, the server's CPU ms per sentence
(all its processes) and the ratio of each to sentence-transformers' in the same rounds. Prints
a markdown table with the command, date, CPU flags and load.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import sys
import time
from typing import Any

from bench_embeddings import http_run, make_sentences, minilm_path, tree_cpu_seconds
from server_util import add_variant_args, cpu_flags, start_variants, variant_flags

ST = "sentence-transformers batch 32"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-path", default=None)
    add_variant_args(p, "one server, no extra args")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--num-sentences", type=int, default=32)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--idle-before", type=float, default=1.0,
                   help="seconds of idle before each burst")  # fmt: skip
    p.add_argument("--bursts", type=int, default=1,
                   help="bursts per variant per round, one after another (each after "
                   "--idle-before): > 1 shows back-to-back bursts")  # fmt: skip
    p.add_argument("--num-threads", type=int, default=2)
    p.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "inherit"])
    args = p.parse_args()
    if args.omp_wait_policy != "inherit":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    torch.set_num_threads(args.num_threads)
    variants = args.variant or ["radixserve="]
    model = args.model_path or minilm_path()
    sentences = make_sentences(AutoTokenizer.from_pretrained(model), args.num_sentences,
                               args.tokens, 0)  # fmt: skip
    n = len(sentences)
    st = SentenceTransformer(model, device="cpu")
    st.encode(sentences[:8], batch_size=8)  # warm-up
    servers: dict[str, Any] = {}
    load_before = os.getloadavg()
    rates: dict[str, list[float]] = {}
    cpu_ms: dict[str, list[float]] = {}
    loads = []
    try:
        start_variants(servers, variants, args.pythonpath,
                       ["--model-path", model, "--num-threads", str(args.num_threads)])
        for _, url in servers.values():
            asyncio.run(http_run(url, sentences[:8], 4))  # warm-up
        labels = [*servers, ST]
        rates = {k: [] for k in labels}
        cpu_ms = {k: [] for k in labels}
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            turns = labels[r % len(labels):] + labels[: r % len(labels)]
            for label in (label for label in turns for _ in range(args.bursts)):
                time.sleep(args.idle_before)
                if label == ST:
                    c0, w0 = time.process_time(), time.perf_counter()
                    st.encode(sentences, batch_size=32)
                    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                else:
                    proc, url = servers[label]
                    c0, w0 = tree_cpu_seconds(proc.pid), time.perf_counter()
                    asyncio.run(http_run(url, sentences, args.concurrency))
                    wall, cpu = time.perf_counter() - w0, tree_cpu_seconds(proc.pid) - c0
                rates[label].append(n / wall)
                cpu_ms[label].append(cpu / n * 1e3)
                print(f"round {r} {label}: {n / wall:.1f}/s, {cpu / n * 1e3:.1f} CPU ms each",
                      file=sys.stderr)  # fmt: skip
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    load_after = os.getloadavg()
    st_rate, st_cpu = statistics.median(rates[ST]), statistics.median(cpu_ms[ST])
    lines = [
        f"- Command: `PYTHONPATH=python python benchmarks/serving/bench_embeddings_c32.py "
        f"--rounds {args.rounds} --num-sentences {args.num_sentences} --tokens {args.tokens} "
        f"--concurrency {args.concurrency} --idle-before {args.idle_before} --bursts {args.bursts} "
        f"--num-threads {args.num_threads} --omp-wait-policy {args.omp_wait_policy} "
        + variant_flags(variants, args.pythonpath) + "`",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='minutes')}; "
        f"{os.cpu_count()} CPUs, flags: {cpu_flags()}; all-MiniLM-L6-v2 float32, "
        f"{n} sentences of {args.tokens} tokens",
        f"- Load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in load_before)}, after: "
        f"{'/'.join(f'{x:.1f}' for x in load_after)}; 1-min load per round: "
        f"{', '.join(f'{x:.1f}' for x in loads)}",
        "",
        "| variant | sentences/s (median) | each burst | vs ST | CPU ms per sentence (median) "
        "| ST CPU / this CPU |",
        "|---|---|---|---|---|---|",
    ]
    for label in rates:
        rate, cpu = statistics.median(rates[label]), statistics.median(cpu_ms[label])
        lines.append(f"| {label} | {rate:.1f} | {', '.join(f'{x:.1f}' for x in rates[label])} | "
                     f"{rate / st_rate:.2f}x | {cpu:.1f} | {st_cpu / cpu:.2f}x |")  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
