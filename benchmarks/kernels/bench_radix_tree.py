"""Radix prefix cache replay: the C++ tree (through RadixCache, as the scheduler uses it) against
the pure-Python reference model (tests/cache/reference.py).

Workload (seeded): ~100 system prompts of 512..2048 tokens, and requests that each pick one
(skewed towards popular prompts) and add a distinct 32..256-token suffix. Each request is
replayed as the scheduler would: match_prefix, lock, allocate the uncached part (evicting LRU
leaves when the bounded pool is short), insert, free duplicates, unlock. The reference is slow,
so it replays only the first --python-requests requests; the speedup compares both sides on
exactly those requests (the C++ side's ops_per_s is from the full run). An op is one tree
call: match_prefix, lock, insert, unlock or evict.

    python benchmarks/kernels/bench_radix_tree.py [--requests 20000] [--python-requests 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import emit, machine_info

from radixserve.cache import KVAllocator, RadixCache

_REF = Path(__file__).resolve().parents[2] / "tests" / "cache" / "reference.py"


def load_reference() -> Any:
    spec = importlib.util.spec_from_file_location("radixserve_tests_cache_reference", _REF)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def make_requests(n: int, num_prompts: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    vocab = 49152
    prompts = [
        [rng.randrange(vocab) for _ in range(rng.randint(512, 2048))] for _ in range(num_prompts)
    ]
    weights = [1.0 / (k + 1) ** 0.8 for k in range(num_prompts)]  # a few prompts are popular
    picks = rng.choices(range(num_prompts), weights=weights, k=n)
    return [prompts[p] + [rng.randrange(vocab) for _ in range(rng.randint(32, 256))] for p in picks]


def replay_native(reqs: list[list[int]], pool: int, progress: bool) -> tuple[float, int, int]:
    """Returns (seconds, tree calls, cached tokens)."""
    cache = RadixCache(KVAllocator(pool + 1))
    alloc = cache.allocator
    calls = hit = 0
    t0 = time.perf_counter()
    for i, toks in enumerate(reqs):
        m = cache.match_prefix(toks)
        cache.lock(m.node)
        prefix = m.slots.numel()
        need = len(toks) - prefix
        if alloc.available() < need:
            cache.evict(need - alloc.available())
            calls += 1
        new = alloc.alloc(need)
        assert new is not None, "pool too small for one request"
        cached = cache.insert(toks, torch.cat([m.slots, new])).cached_len
        if cached > prefix:
            alloc.free(new[: cached - prefix])
        cache.unlock(m.node)
        calls += 4
        hit += prefix
        if progress and (i + 1) % 2000 == 0:
            print(f"native: {i + 1}/{len(reqs)} requests", file=sys.stderr, flush=True)
    return time.perf_counter() - t0, calls, hit


def replay_python(ref: Any, reqs: list[list[int]], pool: int) -> tuple[float, int]:
    tree, alloc = ref.RefRadixTree(1), ref.RefKVAllocator(pool + 1)
    hit = 0
    t0 = time.perf_counter()
    for i, toks in enumerate(reqs):
        slots, node = tree.match_prefix(toks)
        tree.lock(node)
        need = len(toks) - len(slots)
        if alloc.available() < need:
            alloc.free(tree.evict(need - alloc.available()))
        new = alloc.alloc(need)
        assert new is not None, "pool too small for one request"
        cached, _ = tree.insert(toks, slots + new)
        if cached > len(slots):
            alloc.free(new[: cached - len(slots)])
        tree.unlock(node)
        hit += len(slots)
        if (i + 1) % 200 == 0:
            print(f"python: {i + 1}/{len(reqs)} requests", file=sys.stderr, flush=True)
    return time.perf_counter() - t0, hit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--python-requests", type=int, default=2_000)
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--pool", type=int, default=65_536, help="usable KV slots")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print("generating requests...", file=sys.stderr, flush=True)
    reqs = make_requests(args.requests, args.prompts, args.seed)
    n_py = min(args.python_requests, args.requests)
    tokens = sum(len(r) for r in reqs)

    sec, calls, hit = replay_native(reqs, args.pool, progress=True)
    sec_small, _, hit_small = replay_native(reqs[:n_py], args.pool, progress=False)
    py_sec, py_hit = replay_python(load_reference(), reqs[:n_py], args.pool)
    assert py_hit == hit_small, f"reference disagrees: {py_hit} vs {hit_small} cached tokens"

    emit(
        {
            "name": "radix_tree_replay",
            "requests": args.requests,
            "python_requests": n_py,
            "pool_size": args.pool,
            "prompt_tokens": tokens,
            "cache_hit_rate": hit / tokens,
            "ops_per_s": calls / sec,
            "requests_per_s": args.requests / sec,
            "native_us_per_request": sec / args.requests * 1e6,
            "python_us_per_request": py_sec / n_py * 1e6,
            "speedup_vs_python": py_sec / sec_small,
            "speedup_note": f"both sides on the first {n_py} requests",
            **machine_info(),
        }
    )


if __name__ == "__main__":
    main()
