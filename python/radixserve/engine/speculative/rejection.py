"""Rejection sampling of n-gram drafts for sampled (temperature > 0) requests.

The target distribution p at each position is the sampler's own (layers/sampler.py: logits
/ temperature, then top-k / top-p / min-p truncation, renormalised). An n-gram draft is a
point mass q = 1{d}, so speculative sampling's rule (accept d with min(1, p(d) / q(d)), on
rejection draw from norm(max(0, p - q))) becomes: accept d with probability p(d); on rejection
draw from p with d removed and the rest renormalised. The output token then has probability
p(d) for d and (1 - p(d)) * p(x) / (1 - p(d)) = p(x) for every x != d: exactly p. Accepted
drafts move on to the next position, whose logits the verify forward computed with the drafts
in context (the conditional p given the accepted prefix); when every draft is accepted, the
token after them is drawn from the last position's p.

Randomness is counter based like the sampler's: the draw at output step s uses the sampler's
uniform of (seed, s) (so a bonus token is the very token the sampler would draw there), and the
accept test at step s uses a second, independent stream (seed ^ ACCEPT_SALT, s). Each step
index decides exactly one output token, so no uniform is reused: a seeded request stays
reproducible, with the same distribution as plain sampling (not the same tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from radixserve.layers.sampler import draw, penalised_logits, sampling_weights, uniform
from radixserve.layers.sampling_info import SamplingBatchInfo

ACCEPT_SALT = 0x5DEECE66D2545F49  # any constant: decorrelates the accept stream from the draws


def accept_uniform(seed: int, step: int) -> float:
    return uniform(seed ^ ACCEPT_SALT, step)


def expand_info(info: SamplingBatchInfo, num_drafts: Sequence[int]) -> SamplingBatchInfo:
    """Request i's row repeated for its 1 + num_drafts[i] verify positions, the step of
    position j being the request's step + j (per-position, so every draw has its own step)."""
    reps = torch.tensor([1 + k for k in num_drafts], dtype=torch.int64)
    starts = torch.cumsum(reps, dim=0) - reps
    offsets = torch.arange(int(reps.sum())) - starts.repeat_interleave(reps)

    def rows(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(reps, dim=0)

    if info.output_token_counts is not None:
        raise ValueError(
            "penalised requests cannot verify drafts (their counts change per position)"
        )
    return replace(
        info,
        temperatures=rows(info.temperatures),
        top_ps=rows(info.top_ps),
        top_ks=rows(info.top_ks),
        min_ps=rows(info.min_ps),
        seeds=rows(info.seeds),
        steps=rows(info.steps) + offsets,
        logit_bias=None if info.logit_bias is None else rows(info.logit_bias),
        return_logprob=False,
        top_logprobs_nums=None,
    )


def verify_sampled(
    logits: torch.Tensor, info: SamplingBatchInfo, drafts: Sequence[Sequence[int]]
) -> list[tuple[list[int], int]]:
    """Per request: (new tokens, drafts accepted). Request i owns 1 + len(drafts[i]) consecutive
    rows of `logits` [rows, vocab] (float32) and of `info` (from expand_info); every request
    has at least one draft and a temperature > 0."""
    weights, _ = sampling_weights(penalised_logits(logits, info), info)
    totals = weights.sum(dim=-1)
    # p(draft) at every draft position, in one gather.
    starts = [0]
    for d in drafts:
        starts.append(starts[-1] + len(d) + 1)
    pos = torch.tensor(
        [s + j for s, d in zip(starts[:-1], drafts, strict=True) for j in range(len(d))]
    )
    toks = torch.tensor([t for d in drafts for t in d], dtype=torch.int64)
    p_draft = (weights[pos, toks] / totals[pos]).nan_to_num(0.0).tolist()
    seeds, steps = info.seeds.tolist(), info.steps.tolist()
    accepted: list[list[int]] = []
    draw_rows: list[int] = []  # the row each request's last token is drawn from
    removed: list[int] = []  # the rejected draft zeroed in that row (-1: bonus draw, none)
    row = 0
    for i, d in enumerate(drafts):
        taken: list[int] = []
        for tok in d:
            p = p_draft[row - i]  # draft positions skip one (bonus) row per request
            if accept_uniform(seeds[row], steps[row]) < p:
                taken.append(tok)
                row += 1
                continue
            break
        accepted.append(taken)
        draw_rows.append(row)
        removed.append(d[len(taken)] if len(taken) < len(d) else -1)
        row += len(d) + 1 - len(taken)  # to the next request's first row
    idx = torch.tensor(draw_rows, dtype=torch.int64)
    w = weights[idx]
    for i, tok in enumerate(removed):
        if tok >= 0:
            w[i, tok] = 0.0  # the residual max(0, p - q) of a point-mass draft
    u = torch.tensor([uniform(seeds[r], steps[r]) for r in draw_rows], dtype=torch.float64)
    drawn = draw(w, u)
    # No kept weight left (cannot happen with finite logits): the sampler's fallback, argmax.
    last = torch.where(drawn >= 0, drawn, logits[idx].argmax(dim=-1)).tolist()
    return [(taken + [int(t)], len(taken)) for taken, t in zip(accepted, last, strict=True)]
