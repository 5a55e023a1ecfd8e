"""Structured output cost: TPOT of json_schema vs free requests at concurrency 1 and 16, and
grammar compile time (cold and cached).

TPOT = (last token time - first token time) / (tokens - 1), from streamed /generate requests.
Compile times are measured in this process with the scheduler's own GrammarCache.

    PYTHONPATH=python python benchmarks/serving/bench_structured.py --url http://127.0.0.1:30000 \
        --requests 16 --concurrency 1,16
(without --url a server is started on a free port and stopped at the end)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "scores": {"type": "array", "items": {"type": "integer", "maximum": 999},
                   "minItems": 4, "maxItems": 12},
        "level": {"enum": ["low", "mid", "high"]},
    },
    "required": ["name", "scores", "level"],
    "additionalProperties": False,
}  # fmt: skip


def one(url: str, constrained: bool, max_tokens: int, seed: int) -> tuple[float, int]:
    params: dict[str, Any] = {"max_new_tokens": max_tokens, "temperature": 0.8,
                              "sampling_seed": seed}  # fmt: skip
    if constrained:
        params["json_schema"] = json.dumps(SCHEMA)
    else:
        params["ignore_eos"] = True
    body = {"text": "Write a record:", "sampling_params": params, "stream": True}
    times = []
    with httpx.stream("POST", url + "/generate", json=body, timeout=1200) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                times.append(time.perf_counter())
    n = len(times)
    return ((times[-1] - times[0]) / (n - 1) if n > 1 else float("nan")), n


def tpot(url: str, constrained: bool, conc: int, n: int, max_tokens: int) -> dict[str, Any]:
    with concurrent.futures.ThreadPoolExecutor(conc) as pool:
        res = list(pool.map(lambda i: one(url, constrained, max_tokens, i), range(n)))
    vals = [t for t, k in res if k > 1]
    return {"tpot_ms_median": 1000 * statistics.median(vals), "tokens_mean":
            statistics.mean(k for _, k in res)}  # fmt: skip


def compile_times() -> dict[str, float]:
    from radixserve.constrained.grammar_cache import GrammarCache
    from radixserve.constrained.xgrammar_backend import XGrammarBackend
    from radixserve.models.tokenizer import load_tokenizer

    tok = load_tokenizer(None)
    backend = XGrammarBackend(tok, 49152, [int(tok.eos_token_id)])
    cache = GrammarCache(backend)
    key = ("json_schema", json.dumps(SCHEMA))
    t0 = time.perf_counter()
    cache.get(key).result()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(100):
        cache.get(key).result()
    cached = (time.perf_counter() - t0) / 100
    cache.shutdown()
    return {"compile_cold_ms": 1000 * cold, "compile_cached_ms": 1000 * cached}


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "radixserve.serve", "--port", str(port),
                             "--max-total-tokens", "16384", "--log-level", "warning"])  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine":
                              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
                              "loadavg_start": os.getloadavg()[0], **compile_times()}  # fmt: skip
    proc, url = (None, args.url) if args.url else start_server()
    try:
        one(url, True, 8, 0)  # warm-up
        for conc in (int(c) for c in args.concurrency.split(",")):
            n = max(conc, args.requests)
            for kind, constrained in (("free", False), ("json_schema", True)):
                result[f"c{conc}_{kind}"] = tpot(url, constrained, conc, n, args.max_tokens)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    result["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
