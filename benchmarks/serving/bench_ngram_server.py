"""N-gram speculative decoding through the HTTP server, 1 user: two servers (plain and
`--speculative-algorithm NGRAM`) on the default model, one scheduler thread each, take turns
on bench_ngram.py's input-grounded chat prompts (/v1/chat/completions, the order reversed
every other prompt). Per request: wall time, and the CPU time of the server's whole process
tree (HTTP, tokenizer, scheduler), so a loaded machine's waits do not count.

    PYTHONPATH=python python benchmarks/serving/bench_ngram_server.py --repeat 3
    PYTHONPATH=python python benchmarks/serving/bench_ngram_server.py --temperature 0.7 \
        --top-p 0.9 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import httpx
from bench_ngram import PROMPTS
from server_util import cpu_flags, start_server

TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """utime + stime of `pid` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, par in parents.items() if par == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(times.get(p, 0.0) for p in tree)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--num-draft", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    common = ["--num-threads", "1", "--max-total-tokens", "8192"]
    spec = ["--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens",
            str(args.num_draft)]  # fmt: skip
    servers = {"plain": start_server(common), "ngram": start_server(common + spec)}
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in servers}
    loads = []
    try:
        with httpx.Client(timeout=600) as client:

            def ask(mode: str, text: str, seed: int) -> dict[str, Any]:
                proc, url = servers[mode]
                body = {
                    "model": "default",
                    "messages": [{"role": "user", "content": text}],
                    "max_tokens": args.output_len,
                    "temperature": args.temperature,
                    "top_p": args.top_p,
                    "seed": seed,
                }
                c0, w0 = tree_cpu_s(proc.pid), time.perf_counter()
                r = client.post(url + "/v1/chat/completions", json=body)
                wall, cpu = time.perf_counter() - w0, tree_cpu_s(proc.pid) - c0
                r.raise_for_status()
                return {"tokens": r.json()["usage"]["completion_tokens"], "wall_s": wall,
                        "cpu_s": cpu}  # fmt: skip

            for i, text in enumerate(PROMPTS.values()):  # warm-up: prompts cached, not timed
                for mode in servers:
                    ask(mode, text, i)
            turn = 0
            for r in range(args.repeat):
                loads.append(round(os.getloadavg()[0], 2))
                for i, text in enumerate(PROMPTS.values()):
                    for mode in list(servers) if turn % 2 == 0 else list(servers)[::-1]:
                        runs[mode].append({"round": r, **ask(mode, text, 1000 * r + i)})
                    turn += 1
            metrics = client.get(servers["ngram"][1] + "/metrics").text
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)

    def rate(rs: list[dict[str, Any]], key: str) -> float:
        return sum(x["tokens"] for x in rs) / sum(x[key] for x in rs)

    def rounds(mode: str, key: str) -> list[float]:
        return [round(rate([x for x in runs[mode] if x["round"] == r], key), 2)
                for r in range(args.repeat)]  # fmt: skip

    spec_lines = [ln for ln in metrics.splitlines() if "spec" in ln and not ln.startswith("#")]
    print(json.dumps({
        "bench": "ngram_server",
        "output_len": args.output_len,
        "num_draft": args.num_draft,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "cpu_flags": cpu_flags(),
        "load_avg_1m": loads,
        "tokens": {m: sum(x["tokens"] for x in rs) for m, rs in runs.items()},
        "tok_per_wall_s": {m: round(rate(rs, "wall_s"), 2) for m, rs in runs.items()},
        "tok_per_cpu_s": {m: round(rate(rs, "cpu_s"), 2) for m, rs in runs.items()},
        "speedup_wall": round(rate(runs["ngram"], "wall_s") / rate(runs["plain"], "wall_s"), 3),
        "speedup_cpu": round(rate(runs["ngram"], "cpu_s") / rate(runs["plain"], "cpu_s"), 3),
        "speedup_cpu_per_round": [round(a / b, 3) for a, b in zip(
            rounds("ngram", "cpu_s"), rounds("plain", "cpu_s"), strict=True)],
        "speedup_wall_per_round": [round(a / b, 3) for a, b in zip(
            rounds("ngram", "wall_s"), rounds("plain", "wall_s"), strict=True)],
        "ngram_metrics": spec_lines,
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
