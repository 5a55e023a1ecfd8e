"""Per-request sampler inputs kept up to date incrementally, not rebuilt every step.

Penalties need each request's output-token counts as a dense row of the vocabulary; the
logit bias (user logit_bias, -inf on stop tokens below min_new_tokens) is a dense row too.
Rebuilding them each step from the whole output made every step O(output length) per
request (quadratic over a generation). Here each request keeps its own rows on the Req:
counts get only the tokens appended since the last step (they survive retraction, which
keeps output_ids), and the two possible bias rows are built once.
"""

from __future__ import annotations

from typing import Optional

import torch

from radixserve.engine.request import Req


def uses_penalty(r: Req) -> bool:
    p = r.params
    return p.frequency_penalty != 0.0 or p.presence_penalty != 0.0 or p.repetition_penalty != 1.0


def _counts_row(r: Req, vocab_size: int) -> torch.Tensor:
    row: Optional[torch.Tensor] = getattr(r, "_token_counts", None)
    if row is None:
        row = torch.zeros(vocab_size, dtype=torch.int32)
        r._token_counts = row  # type: ignore[attr-defined]
        r._counted = 0  # type: ignore[attr-defined]
    counted: int = r._counted  # type: ignore[attr-defined]
    new = r.output_ids[counted:]
    if new:  # usually the one token sampled last step
        ids = torch.tensor(new, dtype=torch.int64)
        row.index_add_(0, ids, torch.ones(len(new), dtype=torch.int32))
        r._counted = len(r.output_ids)  # type: ignore[attr-defined]
    return row


def output_token_counts(reqs: list[Req], vocab_size: int) -> torch.Tensor:
    """[bs, vocab] int32 counts; rows of requests without penalties are zero (unused)."""
    zero: Optional[torch.Tensor] = None
    rows = []
    for r in reqs:
        if uses_penalty(r):
            rows.append(_counts_row(r, vocab_size))
        else:
            zero = torch.zeros(vocab_size, dtype=torch.int32) if zero is None else zero
            rows.append(zero)
    return torch.stack(rows)


def _bias_rows(r: Req, vocab_size: int) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(row while below min_new_tokens, row after); None where the request has no bias."""
    cached = getattr(r, "_bias_rows", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    base = {int(k): float(v) for k, v in (r.params.logit_bias or {}).items()}
    early = dict(base)
    if r.min_new_tokens > 0:
        early.update({t: float("-inf") for t in r.stop_token_ids if 0 <= t < vocab_size})

    def dense(entries: dict[int, float]) -> Optional[torch.Tensor]:
        if not entries:
            return None
        row = torch.zeros(vocab_size, dtype=torch.float32)
        row[torch.tensor(list(entries), dtype=torch.int64)] = torch.tensor(
            list(entries.values()), dtype=torch.float32
        )
        return row

    late = dense(base)
    rows = (dense(early) if early != base else late, late)
    r._bias_rows = rows  # type: ignore[attr-defined]
    return rows


def logit_bias(reqs: list[Req], vocab_size: int) -> Optional[torch.Tensor]:
    """[bs, vocab] float32 additive bias, or None when no request of the batch has any."""
    picked = []
    for r in reqs:
        early, late = _bias_rows(r, vocab_size)
        picked.append(early if len(r.output_ids) < r.min_new_tokens else late)
    if all(p is None for p in picked):
        return None
    zero = torch.zeros(vocab_size, dtype=torch.float32)
    return torch.stack([zero if p is None else p for p in picked])
