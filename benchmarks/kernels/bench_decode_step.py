"""The fused decode step (_C.DecoderStack.decode, all layers of one token per request) of the
default model, timed with each threading mode of _C.set_decoder_threading, interleaved.

"step" opens one OpenMP region per call (barriers between ops); "per_call" lets every kernel
open its own region (the reference). The same decode step (same position, same KV slot) runs
again and again after a prefill of --context tokens, so every sample does identical work.

    PYTHONPATH=python python benchmarks/kernels/bench_decode_step.py --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import torch

from radixserve.cache.memory_pool import KVPool, ReqToTokenPool
from radixserve.forward_batch import ForwardBatch
from radixserve.layers.attention import create_attention_backend
from radixserve.layers.backend import native_ops, set_kernel_backend
from radixserve.layers.linear import Linear
from radixserve.models.loader import load_model, load_model_config

MODES = ("per_call", "step")


def _batch(tokens: list[int], start_pos: int, slots: list[int]) -> ForwardBatch:
    n = len(tokens)
    t = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
    return ForwardBatch(
        input_ids=t(tokens),
        positions=t(list(range(start_pos, start_pos + n))),
        out_cache_loc=t(slots),
        req_pool_indices=t([0]),
        seq_lens=t([start_pos + n]),
        extend_prefix_lens=t([start_pos]),
        extend_seq_lens=t([n]),
        extend_start_loc=t([0]),
        is_decode=n == 1,
        seq_lens_list=[start_pos + n],
        extend_seq_lens_list=[n],
        extend_prefix_lens_list=[start_pos],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=256, help="prompt tokens before the step")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of every mode")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per mode and round")
    ap.add_argument("--mode", choices=MODES, action="append", help="default: both")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ops = native_ops()
    model: Any = load_model(load_model_config(None, "auto", native_kernels=True))
    set_kernel_backend("native")
    for module in model.modules():
        if isinstance(module, Linear):
            module.post_load()
    cfg = model.config
    req_pool = ReqToTokenPool(1, cfg.context_len)
    kv = KVPool(args.context + 8, cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, torch.bfloat16)
    backend = create_attention_backend(
        "native", req_pool.req_to_token, kv, cfg.layer_sliding_windows
    )
    model.attn_backend = backend
    row = req_pool.alloc()
    assert row == 0
    n = args.context
    req_pool.req_to_token[0, : n + 1] = torch.arange(1, n + 2)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, cfg.vocab_size, (n,), generator=gen).tolist()
    step = _batch([prompt[-1]], n, [n + 1])
    with torch.inference_mode():
        model(_batch(prompt, 0, list(range(1, n + 1))))
        emb = model._embed(step)
        stack = model._fused_decoder(step, emb)
        assert stack, "the fused decode step is not available for this model"
        ref: dict[str, torch.Tensor] = {}

        def run() -> torch.Tensor:
            h, _ = stack.decode(
                emb.clone(), step.positions, kv.k_buffers, kv.v_buffers, step.out_cache_loc,
                backend.req_to_token, step.req_pool_indices, step.seq_lens,
            )
            return h  # type: ignore[no-any-return]

        modes = args.mode or list(MODES)
        samples: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.rounds):
            for mode in modes:
                ops.set_decoder_threading(mode)
                out = run()
                if mode in ref:
                    assert torch.equal(out, ref[mode])
                ref[mode] = out
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    run()
                    samples[mode].append((time.perf_counter() - t0) * 1e6)
        ops.set_decoder_threading("step")
    if len(modes) == 2:
        assert torch.equal(ref["step"], ref["per_call"]), "the two modes' outputs differ"
    base = statistics.median(samples[modes[0]])
    for mode in modes:
        med = statistics.median(samples[mode])
        print(json.dumps({
            "bench": "decode_step", "mode": mode, "threads": args.threads,
            "context": n, "layers": cfg.num_layers, "median_us": round(med, 1),
            "p10_us": round(statistics.quantiles(samples[mode], n=10)[0], 1),
            f"vs_{modes[0]}": round(med / base, 3), "loadavg": os.getloadavg()[0],
        }))


if __name__ == "__main__":
    main()
