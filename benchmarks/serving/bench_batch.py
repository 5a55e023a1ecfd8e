"""Batch API vs online: the same chat requests as one batch and online at concurrency 64,
and online time to first token while a batch runs vs when the server is idle.

TTFT is measured the same way idle and during the batch: rounds of --probe-requests streaming
chat requests at --probe-concurrency (closed loop), the same prompt template with numbers of the
same digit count (so the same token counts; each prompt is new, so no whole-prompt cache hit
either way); --probe-rounds rounds while the batch runs, and as many idle, half before and half
after the batch (bracketing the machine's load drift). Each round's first --probe-concurrency
requests arrive together while the engine is busy with the batch; later ones arrive while
other probes run. Reports sample counts, p50/p90/p95/p99/max. With the default 2 rounds of
64, p99 is the second-slowest of 128 probes per side; --probes N runs more rounds for a
steadier p99 (a batch stands still while probes run, so it is still running for them).

Needs a running server (with its --data-dir); prints one JSON line of results.

    PYTHONPATH=python python -m radixserve.serve --port 30000 --data-dir /tmp/bench-data &
    python benchmarks/serving/bench_batch.py --url http://127.0.0.1:30000 --num-lines 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import httpx
from server_util import cpu_flags

PROBE_PROMPTS = 1_000_000  # probe prompts are numbered from here: none repeats a batch line


def log(msg: str) -> None:
    print(f"[bench_batch] {msg}", file=sys.stderr, flush=True)


def body(i: int, max_tokens: int, salt: str = "") -> dict[str, Any]:
    text = f"Tell me a {salt}fact about the number {i}."
    return {"messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0}  # fmt: skip


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def one_online(client: httpx.AsyncClient, i: int, max_tokens: int) -> tuple[float, int]:
    """(time to first token, completion tokens) of one streaming chat request."""
    start = time.perf_counter()
    ttft = 0.0
    tokens = 0
    req = {**body(i, max_tokens), "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", "/v1/chat/completions", json=req) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if not ttft and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return ttft, tokens


async def online(url: str, n: int, concurrency: int, max_tokens: int,
                 first: int = 0) -> dict[str, Any]:  # fmt: skip
    """n streaming requests for prompts first.. at `concurrency`."""
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:

        async def run(i: int) -> tuple[float, int]:
            async with sem:
                return await one_online(client, i, max_tokens)

        start = time.perf_counter()
        results = await asyncio.gather(*(run(first + i) for i in range(n)))
        elapsed = time.perf_counter() - start
    ttfts = [r[0] for r in results]
    tokens = sum(r[1] for r in results)
    log(f"  {n} requests: {tokens / elapsed:.1f} tok/s, TTFT p50 {pct(ttfts, 0.5) * 1e3:.0f} ms, "
        f"p99 {pct(ttfts, 0.99) * 1e3:.0f} ms, max {max(ttfts) * 1e3:.0f} ms, load {machine_load()}")
    return {"requests": n, "concurrency": concurrency, "seconds": round(elapsed, 2), "ttfts": ttfts,
            "req_per_s": round(n / elapsed, 2), "output_tok_per_s": round(tokens / elapsed, 1),
            "ttft_p50_ms": round(pct(ttfts, 0.5) * 1e3, 1),
            "ttft_p99_ms": round(pct(ttfts, 0.99) * 1e3, 1)}  # fmt: skip


async def start_batch(url: str, n: int, max_tokens: int, salt: str = "") -> str:
    """`salt` changes every prompt (a second batch finds no whole prompt in the cache)."""
    lines = [json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": body(i, max_tokens, salt)}) for i in range(n)]  # fmt: skip
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        files = {"file": ("bench.jsonl", "\n".join(lines).encode())}
        fid = (await client.post("/v1/files", files=files, data={"purpose": "batch"})).json()["id"]
        batch = await client.post("/v1/batches", json={
            "input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
        return str(batch.json()["id"])


async def wait_batch(url: str, batch_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        while True:
            batch = (await client.get(f"/v1/batches/{batch_id}")).json()
            if batch["status"] in ("completed", "failed", "cancelled", "expired"):
                return dict(batch)
            await asyncio.sleep(0.5)


async def server_load(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        return dict((await client.get("/get_load")).json())


def machine_load() -> float:
    return round(os.getloadavg()[0], 2)


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ttfts = [t for r in runs for t in r["ttfts"]]
    return {"requests": len(ttfts), "ttft_p50_ms": round(pct(ttfts, 0.5) * 1e3, 1),
            "ttft_p90_ms": round(pct(ttfts, 0.9) * 1e3, 1),
            "ttft_p95_ms": round(pct(ttfts, 0.95) * 1e3, 1),
            "ttft_p99_ms": round(pct(ttfts, 0.99) * 1e3, 1),
            "ttft_max_ms": round(max(ttfts) * 1e3, 1) if ttfts else float("nan")}  # fmt: skip


async def compare_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """The requests online at --concurrency, then the same ones as a batch, nothing else running."""
    log(f"online: {args.num_lines} requests at concurrency {args.concurrency}")
    on = await online(args.url, args.num_lines, args.concurrency, args.max_tokens)
    del on["ttfts"]
    log(f"batch alone: {args.num_lines} lines")
    start = time.perf_counter()
    batch_id = await start_batch(args.url, args.num_lines, args.max_tokens, salt="batch ")
    batch = await wait_batch(args.url, batch_id)
    elapsed = time.perf_counter() - start
    log(f"  batch {batch['status']}: {batch['request_counts']} in {elapsed:.1f} s")
    done = batch["request_counts"]["completed"]
    batch_tok_s = done * args.max_tokens / elapsed
    return {
        "batch_status": batch["status"], "batch_completed": done,
        "batch_seconds": round(elapsed, 2), "batch_req_per_s": round(done / elapsed, 2),
        "batch_output_tok_per_s": round(batch_tok_s, 1),
        "batch_vs_online": round(batch_tok_s / on["output_tok_per_s"], 3), "online": on,
    }  # fmt: skip


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """idle probe, online run, the same requests as a batch (throughput), a second batch with
    probes while it runs (TTFT; the batch pauses for them), idle probe again: the idle probes
    before and after bracket the machine's load drift around the during-batch probes."""
    probe = {"n": args.probe_requests, "conc": args.probe_concurrency, "tok": args.max_tokens}
    loads = {"start": machine_load()}
    if args.warmup_requests:  # not counted: the first requests after a start are slow
        log(f"warm-up: {args.warmup_requests} requests")
        await online(args.url, args.warmup_requests, probe["conc"], probe["tok"], 2 * PROBE_PROMPTS)
    log(f"idle probe: {probe}")
    probes = iter(range(PROBE_PROMPTS, 10 * PROBE_PROMPTS, args.probe_requests))
    idle_rounds_before = (args.probe_rounds + 1) // 2
    idle = [await online(args.url, probe["n"], probe["conc"], probe["tok"], next(probes))
            for _ in range(idle_rounds_before)]  # fmt: skip
    throughput = {} if args.ttft_only else await compare_throughput(args)
    loads["after_throughput"] = machine_load()
    log(f"batch with probes: {args.num_lines} lines")
    before = await server_load(args.url)
    start = time.perf_counter()
    batch_id = await start_batch(args.url, args.num_lines, args.max_tokens, salt="probed ")
    waiter = asyncio.create_task(wait_batch(args.url, batch_id))
    during = []
    for _ in range(args.probe_rounds):
        await asyncio.sleep(args.probe_delay)  # let the batch fill the engine first
        if waiter.done():
            break
        during.append(await online(args.url, probe["n"], probe["conc"], probe["tok"], next(probes)))
        during[-1]["batch_running"] = not waiter.done()
    probed = await waiter
    probed_seconds = time.perf_counter() - start
    log(f"  batch {probed['status']}: {probed['request_counts']} in {probed_seconds:.1f} s")
    loads["after_probed_batch"] = machine_load()
    after = await server_load(args.url)
    preempted, paused = (after.get(k, 0) - before.get(k, 0)
                         for k in ("num_preemptions", "num_paused_steps"))  # fmt: skip
    log("idle probe again")
    for _ in range(args.probe_rounds - idle_rounds_before):
        idle.append(await online(args.url, probe["n"], probe["conc"], probe["tok"], next(probes)))
    loads["end"] = machine_load()
    idle_all, during_all = merge(idle), merge(during)
    for r in (*idle, *during):
        del r["ttfts"]
    return {
        "num_lines": args.num_lines, "max_tokens": args.max_tokens, **throughput,
        "probed_batch_status": probed["status"], "probed_batch_seconds": round(probed_seconds, 2),
        "preemptions_during_probed_batch": preempted, "paused_steps_during_probed_batch": paused,
        "probe_idle": idle_all, "probe_during_batch": during_all,
        "p99_during_vs_idle": round(during_all["ttft_p99_ms"] / idle_all["ttft_p99_ms"], 3),
        "p50_during_vs_idle": round(during_all["ttft_p50_ms"] / idle_all["ttft_p50_ms"], 3),
        "p95_during_vs_idle": round(during_all["ttft_p95_ms"] / idle_all["ttft_p95_ms"], 3),
        "probe_runs": {"idle": idle, "during_batch": during}, "load_average_1m": loads,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "cpu_flags": cpu_flags(),
    }  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:30000")
    p.add_argument("--num-lines", type=int, default=1000)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--probe-requests", type=int, default=64, help="per round")
    p.add_argument("--probe-concurrency", type=int, default=4)
    p.add_argument("--probe-delay", type=float, default=5.0)
    p.add_argument("--probe-rounds", type=int, default=2, help="probes while the batch runs")
    p.add_argument("--probes", type=int, default=None,
                   help="probes per side (idle, during the batch): sets --probe-rounds to "
                        "ceil(probes / probe-requests). The default (2 x 64 = 128) makes p99 the "
                        "second-slowest probe; more probes give a steadier p99")  # fmt: skip
    p.add_argument("--ttft-only", action="store_true", help="skip the throughput comparison")
    p.add_argument("--warmup-requests", type=int, default=8, help="sent first, not counted")
    args = p.parse_args()
    if args.probes is not None:
        args.probe_rounds = max(1, -(-args.probes // args.probe_requests))
    print(json.dumps(asyncio.run(main(args))))
