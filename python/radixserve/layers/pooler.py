"""Pooling of per-token hidden states into one vector per sequence (embedding models).

Methods: "mean" (average over the sequence's tokens), "cls" (first token), "last" (last token,
for decoder embedding models). Embeddings are L2-normalised unless the model says otherwise.
Sequences are packed: sequence i is rows `starts[i] : starts[i] + lens[i]` of `hidden`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POOLING_METHODS = ("mean", "cls", "last")


def pool(hidden: torch.Tensor, starts: list[int], lens: list[int], method: str) -> torch.Tensor:
    """hidden [T, H] -> [bs, H] in float32."""
    if method not in POOLING_METHODS:
        raise ValueError(f"pooling method must be one of {POOLING_METHODS}, got {method!r}")
    h = hidden.float()
    if method == "cls":
        return h[torch.tensor(starts, dtype=torch.int64)]
    if method == "last":
        return h[torch.tensor([s + n - 1 for s, n in zip(starts, lens, strict=True)])]
    if len(set(lens)) == 1:  # equal lengths (one request, a uniform batch): one reduction,
        return h.reshape(len(lens), lens[0], h.shape[1]).mean(1)  # 8 us vs 70 us at 9 tokens
    # Mean: one segment-sum (index_add) instead of a Python loop over sequences.
    seg = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens, dtype=torch.int64))
    sums = torch.zeros(len(lens), h.shape[1], dtype=torch.float32).index_add_(0, seg, h)
    return sums / torch.tensor(lens, dtype=torch.float32).unsqueeze(1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), p=2.0, dim=-1)
