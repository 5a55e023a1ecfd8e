"""Sampler microbenchmark: native radixserve._C.sample vs the plain-PyTorch sample_ref, and vs
the sampler a PyTorch user would write (`torch_user_sample`: topk + sort/cumsum top-p +
softmax + torch.multinomial, as HF transformers' logits warpers do).

One JSON line per case (bs 1/16/64 x vocab 49152; greedy, top-p/top-k sampling, sampling with
penalties and logit bias). `ref_us` is the exact reference (same tokens as the kernel, checked);
`user_us` the usual torch sampler (other random draws, so its tokens are only checked to lie
in each row's top-k / top-p set). Logits are randn * 3 (an LLM-like spread: top-p 0.9 keeps on the
order of a thousand tokens, so the partial selection is exercised, not bypassed). Bytes counted:
logits read (+ counts and bias when present).

    PYTHONPATH=python python benchmarks/kernels/bench_sampling.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import case, emit, machine_info, time_us  # noqa: E402

from radixserve.layers.sampler import sample_native, sample_ref  # noqa: E402
from radixserve.layers.sampling_info import SamplingBatchInfo  # noqa: E402

VOCAB = 49152


def make_case(mode: str, bs: int, gen: torch.Generator) -> tuple[torch.Tensor, SamplingBatchInfo]:
    logits = torch.randn(bs, VOCAB, generator=gen) * 3
    greedy = mode == "greedy"
    info = SamplingBatchInfo(
        temperatures=torch.full((bs,), 0.0 if greedy else 0.8),
        top_ps=torch.full((bs,), 1.0 if greedy else 0.9),
        # Half the rows also use top-k 50 (SGLang's common combination), half top-p alone.
        top_ks=torch.tensor([50 if i % 2 else VOCAB for i in range(bs)], dtype=torch.int32),
        min_ps=torch.zeros(bs),
        seeds=torch.arange(bs, dtype=torch.int64),
        steps=torch.full((bs,), 7, dtype=torch.int64),
        is_all_greedy=greedy,
    )
    if mode == "penalties":
        counts = torch.zeros(bs, VOCAB, dtype=torch.int32)
        seen = torch.randint(0, VOCAB, (bs, 256), generator=gen)
        counts.scatter_add_(1, seen, torch.ones_like(seen, dtype=torch.int32))
        info.output_token_counts = counts
        info.frequency_penalties = torch.full((bs,), 0.3)
        info.presence_penalties = torch.full((bs,), 0.2)
        info.repetition_penalties = torch.full((bs,), 1.1)
        bias = torch.zeros(bs, VOCAB)
        bias[:, :8] = float("-inf")  # e.g. stop tokens masked before min_new_tokens
        info.logit_bias = bias
    return logits, info


def torch_user_sample(logits: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
    """What a PyTorch user writes: penalties as tensor ops, temperature, per-row top-k via
    torch.topk, top-p via sort + cumsum, then softmax and torch.multinomial (fp32 throughout)."""
    x = logits.clone()
    if info.output_token_counts is not None:
        counts = info.output_token_counts.to(x.dtype)
        seen = counts > 0
        rep = info.repetition_penalties.unsqueeze(1)  # type: ignore[union-attr]
        x = torch.where(seen, torch.where(x > 0, x / rep, x * rep), x)
        x -= info.frequency_penalties.unsqueeze(1) * counts  # type: ignore[union-attr]
        x -= info.presence_penalties.unsqueeze(1) * seen.to(x.dtype)  # type: ignore[union-attr]
    if info.logit_bias is not None:
        x += info.logit_bias
    if info.is_all_greedy:
        return x.argmax(-1)
    x /= info.temperatures.unsqueeze(1)
    k_max = int(info.top_ks.max())
    if k_max < x.shape[1]:  # mask everything below each row's k-th largest
        kth = torch.topk(x, k_max, dim=-1).values.gather(1, (info.top_ks.long() - 1).unsqueeze(1))
        x = x.masked_fill(x < kth, float("-inf"))
    sorted_x, order = torch.sort(x, dim=-1, descending=True)
    cum = sorted_x.softmax(-1).cumsum(-1)
    drop = cum - sorted_x.softmax(-1) > info.top_ps.unsqueeze(1)  # keep the token crossing p
    x = x.scatter(1, order, sorted_x.masked_fill(drop, float("-inf")))
    return torch.multinomial(x.softmax(-1), 1).squeeze(1)


def in_kept_set(tokens: torch.Tensor, logits: torch.Tensor, info: SamplingBatchInfo) -> bool:
    """Each row's token is among its top-k (sampled rows: the candidates the cuts can keep)."""
    if info.is_all_greedy:
        return True
    top = torch.topk(logits, int(info.top_ks.max()), dim=-1).indices
    return bool((top == tokens.unsqueeze(1)).any(-1).all()) or info.logit_bias is not None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="bs 64 only")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    emit({"name": "machine", **machine_info()})
    gen = torch.Generator().manual_seed(0)
    sizes = [64] if args.quick else [1, 16, 64]
    for mode in ("greedy", "top_p_top_k", "penalties"):
        for bs in sizes:
            logits, info = make_case(mode, bs, gen)
            assert torch.equal(
                sample_native(logits, info).next_token_ids, sample_ref(logits, info).next_token_ids
            )
            assert in_kept_set(torch_user_sample(logits, info), logits, info)
            us = time_us(lambda x=logits, i=info: sample_native(x, i), min_seconds=0.5)
            ref_us = time_us(
                lambda x=logits, i=info: sample_ref(x, i), warmup=1, min_iters=3, min_seconds=0.5
            )
            user_us = time_us(lambda x=logits, i=info: torch_user_sample(x, i), min_seconds=0.5)
            nbytes = logits.numel() * 4
            if info.output_token_counts is not None:
                nbytes += info.output_token_counts.numel() * 4 * 2  # counts + bias
            rec = case(f"sample_{mode}", us, nbytes, ref_us=ref_us, bs=bs, vocab=VOCAB)
            rec.update(dtype="float32", user_us=user_us, speedup_vs_user=user_us / us)
            emit(rec)


if __name__ == "__main__":
    main()
