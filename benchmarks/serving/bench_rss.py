"""Memory and start-up of a radixserve server: time to ready, peak RSS per process and in all.

    python benchmarks/serving/bench_rss.py --duration 0 --repeat 3        # start-up only
    python benchmarks/serving/bench_rss.py --duration 120 --concurrency 8  # then a steady load
    python benchmarks/serving/bench_rss.py --base-url http://127.0.0.1:30000 --pid 1234

Without --base-url the server is started here (`python -m radixserve.serve` with the flags of
--server-args: none serves the default model with a KV pool sized from free memory) and measured
from launch: `ready_s` is the time until /health answers 200 (polled every 50 ms), the processes'
RSS (the server and all its descendants: HTTP process, scheduler, multiprocessing's resource
tracker) is sampled every 100 ms, `peak_mib` per process is the kernel's VmHWM and
`peak_total_mib` the largest sum of one sample. Then clients loop over streamed chat requests
with varied prompts for --duration seconds; a JSON line per --interval, and a summary (start,
end, peak, growth in the second half: a leak keeps growing there). With --repeat N the server
is started N times (start-up figures of each, and their median).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import httpx

SAMPLE_S = 0.1


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in KiB ({} once it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    return proc_status(pid).get("VmRSS", 0)


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def role(pid: int, server_pid: int) -> str:
    if pid == server_pid:
        return "http"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return str(pid)
    if "resource_tracker" in cmd:
        return "resource_tracker"
    return "scheduler" if "spawn_main" in cmd else str(pid)


class TreeSampler:
    """Peak RSS of a process tree: per process (VmHWM) and of the summed tree; and the CPU
    time each process used (on a busy host, start-up CPU seconds say what wall time a quiet
    host would see better than the wall time itself)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_total_kib = 0
        self.peak_kib: dict[str, int] = {}
        self.cpu_s: dict[str, float] = {}

    def sample(self) -> int:
        total = 0
        for p in [self.pid, *descendants(self.pid)]:
            st = proc_status(p)
            total += st.get("VmRSS", 0)
            name = role(p, self.pid)
            self.peak_kib[name] = max(self.peak_kib.get(name, 0), st.get("VmHWM", 0))
            self.cpu_s[name] = max(self.cpu_s.get(name, 0.0), cpu_seconds(p))
        self.peak_total_kib = max(self.peak_total_kib, total)
        return total

    def report(self) -> dict[str, Any]:
        return {"peak_mib": {k: round(v / 1024) for k, v in sorted(self.peak_kib.items())},
                "peak_total_mib": round(self.peak_total_kib / 1024),
                "cpu_s": {k: round(v, 2) for k, v in sorted(self.cpu_s.items())}}  # fmt: skip


def start_server(server_args: list[str]) -> tuple[subprocess.Popen[bytes], str, float]:
    """Launch the server; return it, its URL and the time of launch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "radixserve.serve", "--port", str(port),
           "--log-level", "warning", *server_args]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}", t0


async def wait_ready(url: str, proc: subprocess.Popen[bytes], t0: float,
                     tree: TreeSampler) -> float:  # fmt: skip
    """Seconds from launch to the first /health 200, sampling RSS meanwhile."""
    async with httpx.AsyncClient(base_url=url, timeout=2) as c:
        next_sample = 0.0
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode} while starting")
            if time.monotonic() >= next_sample:
                tree.sample()
                next_sample = time.monotonic() + SAMPLE_S
            try:
                if (await c.get("/health")).status_code == 200:
                    ready = time.monotonic() - t0
                    tree.sample()
                    return ready
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)


async def client_loop(c: httpx.AsyncClient, stop: float, rng: random.Random, counts: list[int]
                      ) -> None:  # fmt: skip
    while time.monotonic() < stop:
        words = " ".join(rng.choice(("cat", "river", "stone", "light", "song")) for _ in
                         range(rng.randrange(5, 60)))  # fmt: skip
        body = {"messages": [{"role": "user", "content": words}], "stream": True,
                "max_tokens": rng.randrange(4, 32), "temperature": 0.7}  # fmt: skip
        try:
            async with c.stream("POST", "/v1/chat/completions", json=body) as r:
                async for _ in r.aiter_lines():
                    pass
            counts[0 if r.status_code == 200 else 1] += 1
        except httpx.HTTPError:
            counts[1] += 1


async def sampler(tree: TreeSampler, stop: float, interval: float,
                  samples: list[dict[str, float]], counts: list[int]) -> None:  # fmt: skip
    t0 = time.monotonic()
    next_line = t0
    while time.monotonic() < stop:
        total = tree.sample()
        if time.monotonic() >= next_line:
            sample = {"t_s": round(time.monotonic() - t0, 1), "rss_mib": round(total / 1024, 1),
                      "http_mib": round(rss_kib(tree.pid) / 1024, 1), "ok": counts[0],
                      "errors": counts[1]}  # fmt: skip
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            next_line += interval
        await asyncio.sleep(SAMPLE_S)


async def load(url: str, tree: TreeSampler, args: argparse.Namespace) -> list[dict[str, float]]:
    stop = time.monotonic() + args.duration
    samples: list[dict[str, float]] = []
    counts = [0, 0]
    async with httpx.AsyncClient(base_url=url, timeout=600) as c:
        await asyncio.gather(
            sampler(tree, stop, args.interval, samples, counts),
            *[client_loop(c, stop, random.Random(i), counts) for i in range(args.concurrency)],
        )
    return samples


def load_summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    half = samples[len(samples) // 2]
    return {"samples": len(samples), "start_mib": samples[0]["rss_mib"],
            "end_mib": samples[-1]["rss_mib"], "peak_mib": max(s["rss_mib"] for s in samples),
            "second_half_growth_mib": round(samples[-1]["rss_mib"] - half["rss_mib"], 1),
            "requests_ok": samples[-1]["ok"], "errors": samples[-1]["errors"]}  # fmt: skip


def measure_once(args: argparse.Namespace) -> dict[str, Any]:
    """Start a server, time its start-up, optionally load it; its figures."""
    proc, url, t0 = start_server(shlex.split(args.server_args))
    tree = TreeSampler(proc.pid)
    try:
        ready = asyncio.run(wait_ready(url, proc, t0, tree))
        result: dict[str, Any] = {"ready_s": round(ready, 2), "at_ready": tree.report()}
        if args.duration > 0:
            result["load"] = load_summary(asyncio.run(load(url, tree, args)))
            result["with_load"] = tree.report()
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", default=None, help="measure a running server (no start-up)")
    p.add_argument("--pid", type=int, default=None, help="server pid (with --base-url)")
    p.add_argument("--server-args", default="", help="extra flags for radixserve.serve")
    p.add_argument("--repeat", type=int, default=1, help="start the server this many times")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of load (0: none)")
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    if args.base_url is not None:
        if args.pid is None:
            p.error("--pid is needed with --base-url")
        tree = TreeSampler(args.pid)
        samples = asyncio.run(load(args.base_url, tree, args))
        print(json.dumps({"summary": load_summary(samples), "peaks": tree.report()}))
        return
    runs = []
    for i in range(args.repeat):
        runs.append(measure_once(args))
        print(json.dumps({"run": i, **runs[-1]}), flush=True)
    summary = {"ready_s_median": statistics.median(r["ready_s"] for r in runs),
               "peak_total_mib_at_ready_median":
                   statistics.median(r["at_ready"]["peak_total_mib"] for r in runs)}  # fmt: skip
    if args.duration > 0:
        summary["peak_total_mib_with_load_median"] = statistics.median(
            r["with_load"]["peak_total_mib"] for r in runs
        )
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
