"""Server-side latency of one short sentence, A/B: several radixserve servers on the same model
(e.g. the native EncoderStack vs the per-op modules), all up at once, measured in interleaved
rounds (the order rotates each round) so that a shared machine's load hits every variant alike.

    PYTHONPATH=python python benchmarks/serving/bench_embeddings_short.py --rounds 6 \
        --variant "per-op=--disable-encoder-stack" --variant "stack="

Per variant: server-side mean (sum / count of radixserve:http_request_duration_seconds) and p50
(interpolated in its histogram bucket) over all rounds, the median of the rounds' client p50s,
and the server's CPU time per request (all its processes). Prints a markdown table with the
command, date, CPU flags and load.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
from typing import Any

from bench_embeddings import duration_histogram, histogram_p50, minilm_path, short_latency
from server_util import add_variant_args, cpu_flags, start_variants, variant_flags


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-path", default=None)
    add_variant_args(p, "per-op vs stack")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--per-round", type=int, default=40, help="requests per variant per round")
    p.add_argument("--num-threads", type=int, default=2)
    p.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "inherit"])
    args = p.parse_args()
    if args.omp_wait_policy != "inherit":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    variants = args.variant or ["per-op=--disable-encoder-stack", "stack="]
    model = args.model_path or minilm_path()
    servers: dict[str, Any] = {}
    load_before = os.getloadavg()
    try:
        start_variants(servers, variants, args.pythonpath,
                       ["--model-path", model, "--num-threads", str(args.num_threads)])
        labels = list(servers)
        for proc, url in servers.values():
            short_latency(url, 10, proc.pid)  # warm-up
        start = {k: duration_histogram(url) for k, (_, url) in servers.items()}
        client: dict[str, list[float]] = {k: [] for k in labels}
        cpu: dict[str, list[float]] = {k: [] for k in labels}
        loads = []
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for label in labels[r % len(labels):] + labels[: r % len(labels)]:
                proc, url = servers[label]
                lat = short_latency(url, args.per_round, proc.pid)
                client[label].append(lat["client_p50"])
                cpu[label].append(lat["server_cpu"])
                # Times in ms; the share within 5 ms in percent.
                shown = {k: round(v * (100 if k == "server_within_5ms" else 1e3), 2)
                         for k, v in lat.items()}  # fmt: skip
                print(label, shown, file=sys.stderr)
        end = {k: duration_histogram(url) for k, (_, url) in servers.items()}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    load_after = os.getloadavg()
    lines = [
        f"- Command: `PYTHONPATH=python python benchmarks/serving/bench_embeddings_short.py "
        f"--rounds {args.rounds} --per-round {args.per_round} --num-threads {args.num_threads} "
        f"--omp-wait-policy {args.omp_wait_policy} "
        + variant_flags(variants, args.pythonpath) + "`",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='minutes')}; "
        f"{os.cpu_count()} CPUs, flags: {cpu_flags()}; sentence 'The cat sat on the mat.' (9 tokens)",
        f"- Load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in load_before)}, after: "
        f"{'/'.join(f'{x:.1f}' for x in load_after)}; 1-min load per round: "
        f"{', '.join(f'{x:.1f}' for x in loads)}",
        "",
        "| variant | server p50 ms | server mean ms | within 5 ms | client p50 ms (median of "
        "rounds) | server CPU ms per request |",
        "|---|---|---|---|---|---|",
    ]
    for label in labels:
        (b0, s0, c0), (b1, s1, c1) = start[label], end[label]
        n = max(c1 - c0, 1.0)
        lines.append(
            f"| {label} | {histogram_p50(b0, b1) * 1e3:.1f} | {(s1 - s0) / n * 1e3:.1f} | "
            f"{(b1[0.005] - b0.get(0.005, 0.0)) / n:.0%} | "
            f"{statistics.median(client[label]) * 1e3:.1f} | "
            f"{statistics.median(cpu[label]) * 1e3:.1f} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
