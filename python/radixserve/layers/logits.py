"""Logits: float32 [n, vocab] for the selected hidden states (by default one row per request)."""

from __future__ import annotations

import torch
from torch import nn

from radixserve.forward_batch import ForwardBatch
from radixserve.layers.linear import Linear


def logits_indices(batch: ForwardBatch) -> torch.Tensor:
    """Packed token positions that produce logits: the batch's, or each request's last token."""
    if batch.logits_indices is not None:
        return batch.logits_indices
    return batch.extend_start_loc + batch.extend_seq_lens - 1


class LogitsProcessor(nn.Module):
    def __init__(self, lm_head: Linear) -> None:
        super().__init__()
        self.lm_head = lm_head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [n, H] (already selected and normed) -> float32 logits [n, vocab]."""
        return self.lm_head(hidden).float()
