"""1-user decode time per output token (TPOT) of the offline Engine, per --dtype.

TPOT = (time of a greedy request with 1 + N new tokens - time with 1 new token) / N, best of
--repeat runs each (the best resists other jobs' preemptions on a shared machine). Prints one
JSON line per dtype. `auto` keeps a GGUF's quantization; `float32` dequantises it at load.

    PYTHONPATH=python python benchmarks/serving/bench_tpot.py --dtype auto --dtype float32

`--cpu-time` instead runs the model in this process on one thread (no scheduler, no IPC) and
reports the median thread CPU time of a decode step (forward + logits), which a loaded machine's
preemptions do not inflate: the per-token compute cost of the model itself.

`--kv-cache-dtype` (repeatable) measures each KV pool dtype per --dtype; `--rounds N` repeats the
whole set N times, interleaved (A B A B ...), for A-vs-B comparisons on a loaded machine;
`--prompt-repeat N` repeats the prompt text N times (a longer context for attention to read).

    PYTHONPATH=python python benchmarks/serving/bench_tpot.py --dtype auto \
        --kv-cache-dtype auto --kv-cache-dtype bfloat16 --rounds 3 --prompt-repeat 25
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

PROMPT = "Write a long story about a robot who learns to paint."


def generate_seconds(eng: Any, prompt: str, new_tokens: int) -> float:
    """Wall seconds of one greedy request of new_tokens tokens on an empty prefix cache."""
    params = {"max_new_tokens": new_tokens, "ignore_eos": True, "temperature": 0.0}
    eng.flush_cache()
    t0 = time.perf_counter()
    eng.generate(prompt, sampling_params=params)
    return time.perf_counter() - t0


def measure(
    dtype: str, kv_dtype: str, prompt: str, new_tokens: int, repeat: int, threads: int | None
) -> dict[str, Any]:
    from radixserve.engine.engine import Engine

    kw: dict[str, Any] = {"dtype": dtype, "kv_cache_dtype": kv_dtype}
    if threads:
        kw["num_threads"] = threads
    with Engine(None, **kw) as eng:

        def run(n: int) -> float:
            return generate_seconds(eng, prompt, n)

        run(4)  # warm-up
        short = min(run(1) for _ in range(repeat))
        long = min(run(1 + new_tokens) for _ in range(repeat))
    return {
        "dtype": dtype,
        "kv_cache_dtype": kv_dtype,
        "tpot_ms": round((long - short) / new_tokens * 1e3, 2),
        "first_token_ms": round(short * 1e3, 1),
        "new_tokens": new_tokens,
        "repeat": repeat,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def measure_cpu_time(dtype: str, kv_dtype: str, prompt: str, new_tokens: int) -> dict[str, Any]:
    import statistics

    import torch

    from radixserve.cache.memory_pool import KVPool, ReqToTokenPool, resolve_kv_cache_dtype
    from radixserve.forward_batch import ForwardBatch
    from radixserve.layers.attention import create_attention_backend
    from radixserve.layers.backend import set_kernel_backend
    from radixserve.layers.linear import Linear
    from radixserve.models.loader import load_model, load_model_config
    from radixserve.models.tokenizer import load_tokenizer

    torch.set_num_threads(1)
    set_kernel_backend("native")
    model = load_model(load_model_config(None, dtype, native_kernels=True))
    for mod in model.modules():
        if isinstance(mod, Linear):
            mod.post_load()
    cfg = model.config
    req_pool = ReqToTokenPool(2, cfg.context_len)
    tokens: list[int] = list(load_tokenizer(None).encode(prompt))
    slots = len(tokens) + new_tokens + 1
    kv_torch_dtype = resolve_kv_cache_dtype(kv_dtype, cfg.dtype, "cpu")
    kv = KVPool(slots, cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, kv_torch_dtype)
    model.attn_backend = create_attention_backend(
        "native", req_pool.req_to_token, kv, cfg.layer_sliding_windows
    )
    row = req_pool.alloc()
    assert row is not None
    t = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731

    def step(new: list[int]) -> int:
        n0 = len(tokens) - len(new)
        locs = list(range(1 + n0, 1 + n0 + len(new)))
        req_pool.req_to_token[row, n0 : n0 + len(new)] = torch.tensor(locs)
        batch = ForwardBatch(
            input_ids=t(new),
            positions=t(list(range(n0, n0 + len(new)))),
            out_cache_loc=t(locs),
            req_pool_indices=t([row]),
            seq_lens=t([len(tokens)]),
            extend_prefix_lens=t([n0]),
            extend_seq_lens=t([len(new)]),
            extend_start_loc=t([0]),
            is_decode=len(new) == 1,
            seq_lens_list=[len(tokens)],
            extend_seq_lens_list=[len(new)],
            extend_prefix_lens_list=[n0],
            logits_indices=None,
        )
        with torch.inference_mode():
            return int(model.compute_logits(model(batch)).argmax(-1)[0])

    nxt = step(tokens)
    samples = []
    for _ in range(new_tokens):
        tokens.append(nxt)
        t0 = time.thread_time()
        nxt = step([nxt])
        samples.append(time.thread_time() - t0)
    return {
        "dtype": dtype,
        "kv_cache_dtype": kv_dtype,
        "context_tokens": len(tokens),
        "clock": "thread_cpu, 1 thread, in process",
        "decode_step_ms": round(statistics.median(samples) * 1e3, 2),
        "new_tokens": new_tokens,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", action="append", help="auto | float32 | bfloat16 (repeatable)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--num-threads", type=int, default=None)
    ap.add_argument("--cpu-time", action="store_true", help="in-process, 1 thread, CPU time")
    ap.add_argument("--kv-cache-dtype", action="append", help="auto | float32 | bfloat16")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every variant, interleaved")
    ap.add_argument("--prompt-repeat", type=int, default=1, help="the prompt text N times")
    args = ap.parse_args()
    prompt = " ".join([PROMPT] * args.prompt_repeat)
    for rnd in range(args.rounds):
        for dtype in args.dtype or ["auto", "float32"]:
            for kv_dtype in args.kv_cache_dtype or ["auto"]:
                if args.cpu_time:
                    row = measure_cpu_time(dtype, kv_dtype, prompt, args.new_tokens)
                else:
                    row = measure(
                        dtype, kv_dtype, prompt, args.new_tokens, args.repeat, args.num_threads
                    )
                print(json.dumps({"round": rnd, **row}), flush=True)


if __name__ == "__main__":
    main()
