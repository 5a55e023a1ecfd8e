"""Structured output cost: time per output token of json_schema requests vs free requests at
concurrency 1 and 16, with and without jump-forward, and grammar compile time (cold, cached).

TPOT = (last chunk time - first chunk time) / (tokens at the last chunk - tokens at the first
chunk), from streamed /generate requests (with jump-forward one chunk may carry several
tokens, so chunks are not tokens). Two servers run side by side, one with
--no-grammar-jump-forward (the free and the plain json_schema cases) and one with the default
jump-forward, and the cases are interleaved round by round (--rounds), so that the load of the
machine falls on all of them alike; a case's figure is the median over its requests of all
rounds. Only one server works at a time.

Schemas: `record` (a short name, 4-12 integers, an enum: mostly free content) and `heavy`
(long key names and enums: mostly text the grammar forces). `valid` counts outputs that parse
and validate (a request cut by --max-tokens does not).

    PYTHONPATH=python python benchmarks/serving/bench_structured.py --concurrency 1,16
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Optional

import httpx
import jsonschema
from server_util import cpu_flags, start_server

SCHEMAS: dict[str, dict[str, Any]] = {
    "record": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 16},
            "scores": {"type": "array", "items": {"type": "integer", "maximum": 999},
                       "minItems": 4, "maxItems": 12},
            "level": {"enum": ["low", "mid", "high"]},
        },
        "required": ["name", "scores", "level"],
        "additionalProperties": False,
    },
    "heavy": {
        "type": "object",
        "properties": {
            "customer_account_identifier": {"type": "integer", "minimum": 0, "maximum": 9999},
            "customer_subscription_tier": {"enum": ["standard_monthly_plan",
                                                    "premium_annual_plan"]},
            "preferred_contact_channel": {"enum": ["electronic_mail", "telephone_call"]},
            "has_outstanding_support_tickets": {"type": "boolean"},
            "account_manager_assigned": {"type": "boolean"},
        },
        "required": ["customer_account_identifier", "customer_subscription_tier",
                     "preferred_contact_channel", "has_outstanding_support_tickets",
                     "account_manager_assigned"],
        "additionalProperties": False,
    },
}  # fmt: skip


# What both servers of a run get (the structured server keeps a small KV pool).
COMMON = ["--max-total-tokens", "16384"]


def one(url: str, schema: Optional[str], max_tokens: int, seed: int) -> dict[str, Any]:
    params: dict[str, Any] = {"max_new_tokens": max_tokens, "temperature": 0.8,
                              "sampling_seed": seed}  # fmt: skip
    if schema is not None:
        params["json_schema"] = json.dumps(SCHEMAS[schema])
    else:
        params["ignore_eos"] = True
    body = {"text": "Write a record:", "sampling_params": params, "stream": True}
    chunks: list[tuple[float, int]] = []
    text = ""
    start = time.perf_counter()
    with httpx.stream("POST", url + "/generate", json=body, timeout=1200) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out = json.loads(line[6:])
                chunks.append((time.perf_counter(), int(out["meta_info"]["completion_tokens"])))
                text = out["text"]
    latency = time.perf_counter() - start
    (t0, n0), (t1, n1) = chunks[0], chunks[-1]
    valid = False
    if schema is not None:
        try:
            jsonschema.validate(json.loads(text), SCHEMAS[schema])
            valid = True
        except (ValueError, jsonschema.ValidationError):
            pass
    return {"tpot": (t1 - t0) / (n1 - n0) if n1 > n0 else float("nan"), "tokens": n1,
            "latency": latency, "valid": valid}  # fmt: skip


def run_case(url: str, schema: Optional[str], conc: int, n: int, max_tokens: int,
             seed0: int) -> list[dict[str, Any]]:  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(conc) as pool:
        return list(pool.map(lambda i: one(url, schema, max_tokens, seed0 + i), range(n)))


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    tpots = [r["tpot"] for r in results if r["tpot"] == r["tpot"]]
    return {
        "tpot_ms_median": round(1000 * statistics.median(tpots), 2),
        "latency_s_median": round(statistics.median(r["latency"] for r in results), 3),
        "tokens_mean": round(statistics.mean(r["tokens"] for r in results), 1),
        "valid": f"{sum(r['valid'] for r in results)}/{len(results)}",
        "requests": len(results),
    }


def compile_times() -> dict[str, float]:
    from radixserve.constrained.grammar_cache import GrammarCache
    from radixserve.constrained.xgrammar_backend import XGrammarBackend
    from radixserve.models.tokenizer import load_tokenizer

    tok = load_tokenizer(None)
    backend = XGrammarBackend(tok, 49152, [int(tok.eos_token_id)])
    cache = GrammarCache(backend)
    key = ("json_schema", json.dumps(SCHEMAS["record"]))
    t0 = time.perf_counter()
    cache.get(key).result()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(100):
        cache.get(key).result()
    cached = (time.perf_counter() - t0) / 100
    cache.shutdown()
    return {"compile_cold_ms": 1000 * cold, "compile_cached_ms": 1000 * cached}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=4, help="requests per case and round "
                    "(at least the concurrency)")  # fmt: skip
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the compile-time figures")
    args = ap.parse_args()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                   f"flags: {cpu_flags()}",
        "loadavg_start": os.getloadavg(),
    }  # fmt: skip
    if not args.no_compile:
        result.update(compile_times())
    servers = [start_server([*COMMON, "--no-grammar-jump-forward"]), start_server(COMMON)]
    plain, jump = servers[0][1], servers[1][1]
    cases = [("free", plain, None), ("record", plain, "record"), ("record+jf", jump, "record"),
             ("heavy", plain, "heavy"), ("heavy+jf", jump, "heavy")]  # fmt: skip
    try:
        for url in (plain, jump):  # warm-up: compile both grammars, touch every path once
            for schema in ("record", "heavy"):
                one(url, schema, 8, 0)
        raw: dict[str, list[dict[str, Any]]] = {}
        for rnd in range(args.rounds):
            for conc in (int(c) for c in args.concurrency.split(",")):
                n = max(conc, args.requests)
                for label, url, schema in cases:
                    res = run_case(url, schema, conc, n, args.max_tokens, 1000 * rnd)
                    raw.setdefault(f"c{conc} {label}", []).extend(res)
                    print(f"round {rnd} c{conc} {label}: {summary(res)}", file=sys.stderr,
                          flush=True)  # fmt: skip
        for key, res in raw.items():
            result[key] = summary(res)
        result["jump_forward_tokens"] = httpx.get(jump + "/get_load").json().get(
            "num_jump_forward_tokens")
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(30)
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
