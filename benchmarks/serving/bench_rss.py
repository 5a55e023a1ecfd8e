"""RSS of a radixserve server (HTTP process + scheduler) over time under a steady load.

    python benchmarks/serving/bench_rss.py --duration 120 --concurrency 8
    python benchmarks/serving/bench_rss.py --base-url http://127.0.0.1:30000 --pid 1234

Without --base-url a server is started (default model, --max-total-tokens 4096). Clients
loop over streamed chat requests with varied prompts; every --interval seconds the RSS of
the server and its child processes is sampled from /proc. Prints a JSON line per sample and
a summary (start, end, peak, growth in the second half: a leak keeps growing there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import httpx


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                kids.append(int(entry.name))
    return kids


def start_server(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "radixserve.serve", "--port", str(port),
           "--max-total-tokens", "4096", "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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


async def sampler(pid: int, stop: float, interval: float, samples: list[dict[str, float]],
                  counts: list[int]) -> None:  # fmt: skip
    t0 = time.monotonic()
    while time.monotonic() < stop:
        procs = [pid, *children(pid)]
        sample = {"t_s": round(time.monotonic() - t0, 1),
                  "rss_mib": round(sum(rss_kib(p) for p in procs) / 1024, 1),
                  "http_mib": round(rss_kib(pid) / 1024, 1), "ok": counts[0],
                  "errors": counts[1]}  # fmt: skip
        samples.append(sample)
        print(json.dumps(sample), flush=True)
        await asyncio.sleep(interval)


async def run(url: str, pid: int, args: argparse.Namespace) -> list[dict[str, float]]:
    stop = time.monotonic() + args.duration
    samples: list[dict[str, float]] = []
    counts = [0, 0]
    async with httpx.AsyncClient(base_url=url, timeout=600) as c:
        await asyncio.gather(
            sampler(pid, stop, args.interval, samples, counts),
            *[client_loop(c, stop, random.Random(i), counts) for i in range(args.concurrency)],
        )
    return samples


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", default=None)
    p.add_argument("--pid", type=int, default=None, help="server pid (with --base-url)")
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    proc = None
    if args.base_url is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = start_server(port)
        url, pid = f"http://127.0.0.1:{port}", proc.pid
        while True:
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
    else:
        if args.pid is None:
            p.error("--pid is needed with --base-url")
        url, pid = args.base_url, args.pid
    try:
        samples = asyncio.run(run(url, pid, args))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    half = samples[len(samples) // 2]
    summary = {"samples": len(samples), "start_mib": samples[0]["rss_mib"],
               "end_mib": samples[-1]["rss_mib"], "peak_mib": max(s["rss_mib"] for s in samples),
               "second_half_growth_mib": round(samples[-1]["rss_mib"] - half["rss_mib"], 1),
               "requests_ok": samples[-1]["ok"], "errors": samples[-1]["errors"]}  # fmt: skip
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
