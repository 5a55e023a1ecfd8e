"""Load generator for an OpenAI-compatible or SGLang-native server (radixserve, SGLang, ...).

    python benchmarks/serving/bench_serving.py --base-url http://127.0.0.1:30000 \
        --backend native --num-prompts 64 --input-len 128 --output-len 32 --concurrency 16
    python benchmarks/serving/bench_serving.py --compare-native-openai

Every request streams; TTFT is the arrival of the first chunk carrying output, ITL the gaps
between later output chunks, e2e the whole request. Prompts are random token ids turned into
text by the server's /detokenize (exact lengths) or, if it has none, random words. Prints one
JSON line and a short table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import httpx

WORDS = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot"
).split()


@dataclass
class Result:
    ok: bool = False
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    e2e: float = 0.0
    output_tokens: int = 0
    error: str = ""


# -- prompts -------------------------------------------------------------------------------------


async def make_prompts(c: httpx.AsyncClient, args: argparse.Namespace) -> list[str]:
    rng = random.Random(args.seed)
    vocab = 0
    try:  # the server's own tokenizer: exact token counts
        r = await c.post("/tokenize", json={"prompt": " ".join(WORDS)})
        if r.status_code == 200:
            info = (await c.get("/get_server_info")).json()
            vocab = int(info.get("vocab_size") or 0)
    except (httpx.HTTPError, ValueError):
        vocab = 0

    async def text_of(n: int) -> str:
        if vocab:
            ids = [rng.randrange(1000, min(vocab, 30000)) for _ in range(n)]
            r = await c.post("/detokenize", json={"tokens": ids})
            if r.status_code == 200:
                return str(r.json()["text"])
        return " ".join(rng.choice(WORDS) for _ in range(n))

    if args.dataset == "random":
        return [await text_of(args.input_len) for _ in range(args.num_prompts)]
    # shared-prefix: groups of prompts share a long system prefix, then a short question
    prefixes = [await text_of(args.prefix_len) for _ in range(args.num_groups)]
    return [
        prefixes[i % args.num_groups] + " " + await text_of(args.input_len)
        for i in range(args.num_prompts)
    ]


# -- one request ------------------------------------------------------------------------------------


def request_for(backend: str, prompt: str, output_len: int) -> tuple[str, dict[str, Any]]:
    if backend == "native":
        sp = {"max_new_tokens": output_len, "ignore_eos": True, "temperature": 0}
        return "/generate", {"text": prompt, "sampling_params": sp, "stream": True}
    common = {"max_tokens": output_len, "ignore_eos": True, "temperature": 0, "stream": True,
              "stream_options": {"include_usage": True}, "model": "default"}  # fmt: skip
    if backend == "openai-chat":
        return "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}],
                                        **common}  # fmt: skip
    return "/v1/completions", {"prompt": prompt, **common}


def has_output(backend: str, ev: dict[str, Any]) -> tuple[bool, Optional[int]]:
    """(does this event carry output, completion tokens if it says)."""
    if backend == "native":
        return bool(ev.get("output_ids")), ev.get("meta_info", {}).get("completion_tokens")
    usage = ev.get("usage")
    tokens = usage.get("completion_tokens") if usage else None
    for ch in ev.get("choices", []):
        if (ch.get("delta") or {}).get("content") or ch.get("text"):
            return True, tokens
    return False, tokens


async def run_one(c: httpx.AsyncClient, backend: str, prompt: str, output_len: int) -> Result:
    path, body = request_for(backend, prompt, output_len)
    res = Result()
    start = last = time.perf_counter()
    try:
        async with c.stream("POST", path, json=body) as r:
            if r.status_code != 200:
                res.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return res
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                ev = json.loads(line[6:])
                if "error" in ev:
                    res.error = str(ev["error"])
                    return res
                out, tokens = has_output(backend, ev)
                now = time.perf_counter()
                if out:
                    if res.ttft == 0.0:
                        res.ttft = now - start
                    else:
                        res.itl.append(now - last)
                    last = now
                if tokens is not None:
                    res.output_tokens = tokens
    except httpx.HTTPError as e:
        res.error = f"{type(e).__name__}: {e}"
        return res
    res.e2e = time.perf_counter() - start
    res.ok = res.ttft > 0
    return res


# -- a run ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, backend: str, prompts: list[str]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=max(args.concurrency or 0, 256))
    async with httpx.AsyncClient(base_url=args.base_url, timeout=args.timeout,
                                 limits=limits) as c:  # fmt: skip
        sem = asyncio.Semaphore(args.concurrency) if args.concurrency else None
        rng = random.Random(args.seed + 1)

        async def limited(p: str) -> Result:
            if sem is None:
                return await run_one(c, backend, p, args.output_len)
            async with sem:
                return await run_one(c, backend, p, args.output_len)

        tasks = []
        start = time.perf_counter()
        for p in prompts:
            tasks.append(asyncio.create_task(limited(p)))
            if args.request_rate and args.request_rate != float("inf"):
                await asyncio.sleep(rng.expovariate(args.request_rate))
        results = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
    return summarize(backend, args, results, duration)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def stats(xs: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in xs]
    values = {"mean": statistics.fmean(ms) if ms else 0.0, "p50": pct(ms, 50),
              "p90": pct(ms, 90), "p99": pct(ms, 99)}  # fmt: skip
    return {k: round(v, 2) for k, v in values.items()}


def summarize(backend: str, args: argparse.Namespace, results: list[Result],
              duration: float) -> dict[str, Any]:  # fmt: skip
    ok = [r for r in results if r.ok]
    out_tokens = sum(r.output_tokens for r in ok)
    errors = [r.error for r in results if not r.ok]
    return {
        "backend": backend, "dataset": args.dataset, "num_prompts": len(results),
        "completed": len(ok), "failed": len(errors), "first_error": errors[0] if errors else None,
        "input_len": args.input_len, "output_len": args.output_len,
        "concurrency": args.concurrency, "request_rate": args.request_rate,
        "duration_s": round(duration, 3),
        "request_throughput": round(len(ok) / duration, 3),
        "output_throughput_tok_s": round(out_tokens / duration, 2),
        "ttft_ms": stats([r.ttft for r in ok]),
        "itl_ms": stats([x for r in ok for x in r.itl]),
        "e2e_ms": stats([r.e2e for r in ok]),
    }  # fmt: skip


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'backend':<20}{'ok':>6}{'req/s':>9}{'tok/s':>9}"
          f"{'TTFT p50':>10}{'p99':>9}{'ITL p50':>9}{'p99':>9}{'E2E p50':>9}{'p99':>9}  (ms)",
          file=sys.stderr)  # fmt: skip
    for r in rows:
        t, i, e = r["ttft_ms"], r["itl_ms"], r["e2e_ms"]
        print(f"{r['backend']:<20}{r['completed']:>6}{r['request_throughput']:>9.2f}"
              f"{r['output_throughput_tok_s']:>9.1f}{t['p50']:>10.1f}{t['p99']:>9.1f}"
              f"{i['p50']:>9.1f}{i['p99']:>9.1f}{e['p50']:>9.1f}{e['p99']:>9.1f}",
              file=sys.stderr)  # fmt: skip


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:30000")
    p.add_argument("--backend", choices=("native", "openai-chat", "openai-completions"),
                   default="native")  # fmt: skip
    p.add_argument("--dataset", choices=("random", "shared-prefix"), default="random")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--input-len", type=int, default=128, help="tokens (words) per prompt")
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--prefix-len", type=int, default=512, help="shared-prefix: prefix tokens")
    p.add_argument("--num-groups", type=int, default=4, help="shared-prefix: distinct prefixes")
    p.add_argument("--concurrency", type=int, default=None, help="max requests in flight")
    p.add_argument("--request-rate", type=float, default=float("inf"),
                   help="Poisson arrivals per second (inf: all at once)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare-native-openai", action="store_true",
                   help="p99 TTFT of /generate vs /v1/chat/completions, concurrency 64, "
                        "max_tokens=1")  # fmt: skip
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=args.base_url, timeout=60) as c:
        prompts = await make_prompts(c, args)
    if not args.compare_native_openai:
        return [await run(args, args.backend, prompts)]
    args.concurrency, args.output_len = 64, 1
    rows = []
    for backend in ("native", "openai-chat", "native", "openai-chat"):  # interleaved, twice
        rows.append(await run(args, backend, prompts))
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    rows = asyncio.run(amain(args))
    for r in rows:
        print(json.dumps(r))
    print_table(rows)


if __name__ == "__main__":
    main()
