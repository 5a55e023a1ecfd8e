"""Offline throughput: N random-token prompts through radixserve.Engine (ignore_eos, greedy).

Prints one JSON line with output tokens/s and total (prompt + output) tokens/s per backend;
progress goes to stderr. `--compare-transformers` also times transformers' batched `generate`
on the same model and prompts, in the same run.

    PYTHONPATH=python python benchmarks/serving/bench_offline.py --num-prompts 64 \
        --input-len 256 --output-len 64 --backends native,torch --compare-transformers
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from typing import Any, Optional

import torch


def log(msg: str) -> None:
    print(f"[bench_offline] {msg}", file=sys.stderr, flush=True)


def make_prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    # Skip the lowest ids: special and control tokens live there in most vocabularies.
    return [[rng.randrange(200, vocab) for _ in range(length)] for _ in range(n)]


def run_engine(args: argparse.Namespace, backend: str, prompts: list[list[int]]) -> dict[str, Any]:
    from radixserve.engine.engine import Engine

    log(f"starting engine (backend {backend})")
    kw: dict[str, Any] = {
        "kernel_backend": backend,
        "attention_backend": backend,
        "max_running_requests": args.max_running_requests,
        "dtype": args.dtype,
    }
    if args.max_total_tokens:
        kw["max_total_tokens"] = args.max_total_tokens
    if args.num_threads:
        kw["num_threads"] = args.num_threads
    with Engine(args.model_path, **kw) as eng:
        params = {"max_new_tokens": args.output_len, "ignore_eos": True, "temperature": 0.0}
        eng.generate(input_ids=prompts[0][:16], sampling_params={**params, "max_new_tokens": 4})
        eng.flush_cache()  # random prompts share nothing; keep the warm-up out of the cache
        log(f"running {len(prompts)} prompts")
        start = time.perf_counter()
        outs = eng.generate(input_ids=prompts, sampling_params=params)
        elapsed = time.perf_counter() - start
        load = eng.get_load()
    out_tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
    in_tokens = sum(o["meta_info"]["prompt_tokens"] for o in outs)
    log(f"{backend}: {out_tokens} output tokens in {elapsed:.2f} s")
    return {
        "elapsed_s": round(elapsed, 3),
        "output_tokens": out_tokens,
        "output_tokens_per_s": round(out_tokens / elapsed, 2),
        "total_tokens_per_s": round((in_tokens + out_tokens) / elapsed, 2),
        "num_retractions": load.get("num_retractions", 0),
        "forward_steps": load.get("num_forward_steps", 0),
    }


def run_transformers(args: argparse.Namespace, prompts: list[list[int]]) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from radixserve.models.default_model import default_model_path

    path = args.model_path or default_model_path()
    log("loading the transformers model")
    if os.path.isfile(path):
        # from_pretrained(gguf_file=...) needs accelerate; dequantise the checkpoint directly.
        from transformers import AutoConfig
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        folder, name = os.path.split(path)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        state = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
        missing, _ = model.load_state_dict(state, strict=False)
        if [k for k in missing if k != "lm_head.weight"]:
            raise RuntimeError(f"GGUF tensors missing for {missing[:5]}")
        if "lm_head.weight" in missing:
            model.tie_weights()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    ids = torch.tensor(prompts)  # equal lengths: no padding needed
    mask = torch.ones_like(ids)
    gen = {"do_sample": False, "pad_token_id": 0, "min_new_tokens": args.output_len}
    with torch.inference_mode():
        model.generate(ids[:1, :16], attention_mask=mask[:1, :16], max_new_tokens=2, **gen)
        log(f"transformers generate: batch {len(prompts)}")
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=mask, max_new_tokens=args.output_len, **gen)
        elapsed = time.perf_counter() - start
    out_tokens = int((out.shape[1] - ids.shape[1]) * ids.shape[0])
    log(f"transformers: {out_tokens} output tokens in {elapsed:.2f} s")
    return {
        "elapsed_s": round(elapsed, 3),
        "output_tokens": out_tokens,
        "output_tokens_per_s": round(out_tokens / elapsed, 2),
        "total_tokens_per_s": round((ids.numel() + out_tokens) / elapsed, 2),
    }


def vocab_size(model_path: Optional[str]) -> int:
    from radixserve.models.tokenizer import load_tokenizer

    return int(len(load_tokenizer(model_path)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-path", default=None)
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--backends", default="native", help="comma list of native,torch")
    p.add_argument("--compare-transformers", action="store_true")
    p.add_argument("--max-running-requests", type=int, default=64)
    p.add_argument("--max-total-tokens", type=int, default=None)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    prompts = make_prompts(args.num_prompts, args.input_len, vocab_size(args.model_path), args.seed)
    results: dict[str, Any] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        results[backend] = run_engine(args, backend, prompts)
    if args.compare_transformers:
        results["transformers"] = run_transformers(args, prompts)
    record = {
        "bench": "offline",
        "model": args.model_path or "default (SmolLM2-135M-Instruct Q4_1)",
        "num_prompts": args.num_prompts,
        "input_len": args.input_len,
        "output_len": args.output_len,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.num_threads or os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "results": results,
    }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
