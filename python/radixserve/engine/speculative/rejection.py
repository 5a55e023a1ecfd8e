"""Verification of n-gram drafts: rejection sampling for sampled requests, argmax for greedy.

The target distribution p at each position is the sampler's own (layers/sampler.py: penalties
and logit bias, logits / temperature, then top-k / top-p / min-p truncation, renormalised),
with the drafts before the position counted as generated tokens for the penalties. An n-gram
draft is a point mass q = 1{d}, so speculative sampling's rule (accept d with
min(1, p(d) / q(d)), on rejection draw from norm(max(0, p - q))) becomes: accept d with
probability p(d); on rejection draw from p with d removed and the rest renormalised. The output
token then has probability p(d) for d and (1 - p(d)) * p(x) / (1 - p(d)) = p(x) for every
x != d: exactly p. Accepted drafts move on to the next position, whose logits the verify
forward computed with the drafts in context (the conditional p given the accepted prefix);
when every draft is accepted, the token after them is drawn from the last position's p.
Greedy rows (temperature 0) accept a draft exactly when it is the argmax of the penalised
logits, so their output is token for token plain greedy decoding's.

Randomness is counter based like the sampler's: the draw at output step s uses the sampler's
uniform of (seed, s) (so a bonus token is the very token the sampler would draw there), and the
accept test at step s uses a second, independent stream (seed ^ ACCEPT_SALT, s). Each step
index decides exactly one output token, so no uniform is reused: a seeded request stays
reproducible, with the same distribution as plain sampling (not the same tokens).

Two implementations of one definition: `_C.verify_drafts` (csrc/cpu/sampling.h, every position
of every request in one native call) and `verify_ref` here in PyTorch, which the tests hold the
native one to and which runs under --kernel-backend torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from radixserve.layers.backend import native_ops, use_native
from radixserve.layers.sampler import draw, penalised_logits, sampling_weights, uniform
from radixserve.layers.sampling_info import SamplingBatchInfo

ACCEPT_SALT = 0x5DEECE66D2545F49  # csrc/cpu/sampling.h kAcceptSalt

Verified = list[tuple[list[int], int]]  # per request: (new tokens, drafts accepted)


def accept_uniform(seed: int, step: int) -> float:
    return uniform(seed ^ ACCEPT_SALT, step)


def _check(logits: torch.Tensor, info: SamplingBatchInfo, drafts: Sequence[Sequence[int]]) -> None:
    rows = sum(1 + len(d) for d in drafts)
    if info.batch_size != len(drafts) or logits.shape[0] != rows:
        raise ValueError(
            f"verify: {len(drafts)} requests with {rows} verify rows, got sampling rows "
            f"{info.batch_size} and logits rows {logits.shape[0]}"
        )
    if info.token_bitmask is not None or info.return_logprob:
        raise ValueError("verify: grammar masks and logprobs are not supported")


def expand_info(info: SamplingBatchInfo, drafts: Sequence[Sequence[int]]) -> SamplingBatchInfo:
    """Request i's row repeated for its 1 + len(drafts[i]) verify positions: position j has
    step + j, and (penalised batches) the output counts plus drafts[i][:j]."""
    reps = torch.tensor([1 + len(d) for d in drafts], dtype=torch.int64)
    starts = torch.cumsum(reps, dim=0) - reps
    offsets = torch.arange(int(reps.sum())) - starts.repeat_interleave(reps)

    def rows(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(reps, dim=0)

    def opt_rows(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else rows(t)

    counts = opt_rows(info.output_token_counts)
    if counts is not None:
        # Position j of request i has generated drafts[i][:j]: one count per (row, draft).
        first = starts.tolist()
        pairs = [
            (first[i] + j, t)
            for i, d in enumerate(drafts)
            for a, t in enumerate(d)
            for j in range(a + 1, len(d) + 1)
        ]
        counts = counts.clone()
        if pairs:
            at = torch.tensor(pairs, dtype=torch.int64)
            counts.index_put_(
                (at[:, 0], at[:, 1]), torch.ones(len(pairs), dtype=torch.int32), accumulate=True
            )
    return replace(
        info,
        temperatures=rows(info.temperatures),
        top_ps=rows(info.top_ps),
        top_ks=rows(info.top_ks),
        min_ps=rows(info.min_ps),
        seeds=rows(info.seeds),
        steps=rows(info.steps) + offsets,
        frequency_penalties=opt_rows(info.frequency_penalties),
        presence_penalties=opt_rows(info.presence_penalties),
        repetition_penalties=opt_rows(info.repetition_penalties),
        output_token_counts=counts,
        logit_bias=opt_rows(info.logit_bias),
        return_logprob=False,
        top_logprobs_nums=None,
    )


def verify_ref(
    logits: torch.Tensor, info: SamplingBatchInfo, drafts: Sequence[Sequence[int]]
) -> Verified:
    """The PyTorch definition. Request i owns 1 + len(drafts[i]) consecutive rows of `logits`
    [rows, vocab] (float32) and row i of `info` (one row per request, as build_sampling_info
    makes it)."""
    _check(logits, info, drafts)
    ex = expand_info(info, drafts)
    pen = penalised_logits(logits, ex)
    weights, m = sampling_weights(pen, ex)
    # Rows without a distribution take the argmax, as the sampler does.
    argmax_rows = (ex.temperatures == 0) | ~torch.isfinite(m)
    top = pen.argmax(dim=-1)
    totals = weights.sum(dim=-1)
    starts = [0]
    for d in drafts:
        starts.append(starts[-1] + len(d) + 1)
    pos = torch.tensor(
        [s + j for s, d in zip(starts[:-1], drafts, strict=True) for j in range(len(d))],
        dtype=torch.int64,
    )
    toks = torch.tensor([t for d in drafts for t in d], dtype=torch.int64)
    p_sampled = (weights[pos, toks] / totals[pos]).nan_to_num(0.0)
    p_draft = torch.where(argmax_rows[pos], (top[pos] == toks).double(), p_sampled).tolist()
    seeds, steps = ex.seeds.tolist(), ex.steps.tolist()
    accepted: list[list[int]] = []
    draw_rows: list[int] = []  # the row each request's last token is drawn from
    removed: list[int] = []  # the rejected draft zeroed in that row (-1: bonus draw, none)
    for i, d in enumerate(drafts):
        taken: list[int] = []
        for j, tok in enumerate(d):
            row = starts[i] + j
            if accept_uniform(seeds[row], steps[row]) < p_draft[starts[i] - i + j]:
                taken.append(tok)
                continue
            break
        accepted.append(taken)
        draw_rows.append(starts[i] + len(taken))
        removed.append(d[len(taken)] if len(taken) < len(d) else -1)
    idx = torch.tensor(draw_rows, dtype=torch.int64)
    w = weights[idx]
    for i, tok in enumerate(removed):
        if tok >= 0:
            w[i, tok] = 0.0  # the residual max(0, p - q) of a point-mass draft
    u = torch.tensor([uniform(seeds[r], steps[r]) for r in draw_rows], dtype=torch.float64)
    drawn = draw(w, u)
    last = torch.where(argmax_rows[idx] | (drawn < 0), top[idx], drawn).tolist()
    return [(taken + [int(t)], len(taken)) for taken, t in zip(accepted, last, strict=True)]


def verify_native(
    logits: torch.Tensor, info: SamplingBatchInfo, drafts: Sequence[Sequence[int]]
) -> Verified:
    """_C.verify_drafts: the same definition, every position of every request in one call."""
    _check(logits, info, drafts)
    accepted, nxt = native_ops().verify_drafts(
        logits,
        info.temperatures,
        info.top_ps,
        info.top_ks,
        info.min_ps,
        info.seeds,
        info.steps,
        torch.tensor([t for d in drafts for t in d], dtype=torch.int64),
        torch.tensor([len(d) for d in drafts], dtype=torch.int64),
        info.frequency_penalties,
        info.presence_penalties,
        info.repetition_penalties,
        info.output_token_counts,
        info.logit_bias,
    )
    return [
        ([*d[:a], t], a) for d, a, t in zip(drafts, accepted.tolist(), nxt.tolist(), strict=True)
    ]


def verify_drafts(
    logits: torch.Tensor, info: SamplingBatchInfo, drafts: Sequence[Sequence[int]]
) -> Verified:
    """Per request: (new tokens, drafts accepted). The rows are verified on the host (device
    logits are copied: `info` lives there), natively unless --kernel-backend torch."""
    host = logits.cpu()
    if use_native():
        return verify_native(host, info, drafts)
    return verify_ref(host, info, drafts)
