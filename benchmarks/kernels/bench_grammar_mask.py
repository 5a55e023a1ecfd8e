"""Per-step cost of grammar masks in the sampler: bitmask fill + mask + sample, for a batch of
constrained rows, before and after the packed-bitmask path.

- `dense` (the old path): each row's xgrammar bitmask filled on its own, expanded by xgrammar's
  apply_token_bitmask_inplace into a dense [bs, vocab] -inf logit bias, sampled with the bias.
- `packed` (now): one BatchGrammarMatcher fill of the int32 [bs, ceil(vocab / 32)] bitmask (the
  GrammarManager's path), applied inside the native sampler (`token_bitmask`).
- `free`: the same sampling with no grammar (the floor).
Matchers walk a real JSON output of the benchmark schema, one token per step, so the masks are
those of real positions. Sampling: temperature 0.8, top-p 0.9, vocab 49152 (SmolLM2).

    PYTHONPATH=python python benchmarks/kernels/bench_grammar_mask.py [--bs 1,16,64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine_info  # noqa: E402

from radixserve.constrained.xgrammar_backend import XGrammarBackend  # noqa: E402
from radixserve.layers.sampler import sample_native  # noqa: E402
from radixserve.layers.sampling_info import SamplingBatchInfo  # noqa: E402

VOCAB = 49152
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 16},
    "scores": {"type": "array", "items": {"type": "integer", "maximum": 999},
               "minItems": 4, "maxItems": 12},
    "level": {"enum": ["low", "mid", "high"]}},
    "required": ["name", "scores", "level"], "additionalProperties": False}  # fmt: skip
TEXT = '{"name": "Alice", "scores": [12, 34, 56, 78, 90], "level": "mid"}'


def info_for(bs: int) -> SamplingBatchInfo:
    return SamplingBatchInfo(
        temperatures=torch.full((bs,), 0.8), top_ps=torch.full((bs,), 0.9),
        top_ks=torch.full((bs,), VOCAB, dtype=torch.int32), min_ps=torch.zeros(bs),
        seeds=torch.arange(bs, dtype=torch.int64), steps=torch.zeros(bs, dtype=torch.int64),
        is_all_greedy=False)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bs", default="1,16,64")
    ap.add_argument("--repeats", type=int, default=5, help="walks over the text per case")
    args = ap.parse_args()
    import xgrammar as xgr

    from radixserve.models.tokenizer import load_tokenizer

    tok = load_tokenizer(None)
    backend = XGrammarBackend(tok, VOCAB, [int(tok.eos_token_id)])
    compiled = backend.compile(("json_schema", json.dumps(SCHEMA)))
    ids = tok.encode(TEXT, add_special_tokens=False)
    emit({"name": "machine", **machine_info()})
    gen = torch.Generator().manual_seed(0)
    for bs in (int(b) for b in args.bs.split(",")):
        logits = torch.randn(bs, VOCAB, generator=gen) * 3
        times: dict[str, list[float]] = {"free": [], "dense": [], "packed": []}
        for _ in range(args.repeats):
            old = [xgr.GrammarMatcher(compiled) for _ in range(bs)]
            new = [backend.matcher(compiled) for _ in range(bs)]
            packed = torch.empty(bs, (VOCAB + 31) // 32, dtype=torch.int32)
            rows = list(range(bs))
            for token in ids:  # interleaved per step: A, B and the floor see the same load
                info = info_for(bs)
                t0 = time.perf_counter()
                sample_native(logits, info)
                t1 = time.perf_counter()
                mask = xgr.allocate_token_bitmask(bs, VOCAB)
                for r, m in enumerate(old):
                    m.fill_next_token_bitmask(mask, r)
                info.logit_bias = torch.zeros(bs, VOCAB)
                xgr.apply_token_bitmask_inplace(info.logit_bias, mask, indices=rows)
                sample_native(logits, info)
                t2 = time.perf_counter()
                info = info_for(bs)
                packed.fill_(-1)
                backend.fill_bitmasks(new, packed, rows)
                info.token_bitmask = packed
                sample_native(logits, info)
                t3 = time.perf_counter()
                times["free"].append(t1 - t0)
                times["dense"].append(t2 - t1)
                times["packed"].append(t3 - t2)
                for m in old:
                    m.accept_token(token)
                for m in new:
                    m.accept_token(token)
        med = {k: 1e3 * sorted(v)[len(v) // 2] for k, v in times.items()}
        emit({"name": "grammar_mask_step", "bs": bs, "vocab": VOCAB, "steps": len(times["free"]),
              "free_ms": round(med["free"], 3), "dense_ms": round(med["dense"], 3),
              "packed_ms": round(med["packed"], 3),
              "dense_overhead_ms": round(med["dense"] - med["free"], 3),
              "packed_overhead_ms": round(med["packed"] - med["free"], 3)})  # fmt: skip


if __name__ == "__main__":
    main()
