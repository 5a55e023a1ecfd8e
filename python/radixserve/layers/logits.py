"""Logits: float32 [n, vocab] for the selected hidden states (by default one row per request)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
from torch import nn

from radixserve.forward_batch import ForwardBatch
from radixserve.layers.linear import COLUMN_BLOCK, Linear

# A pausable LM head (forward_pausable) runs in this many vocabulary slices, asking whether to
# pause between them. Each slice reads its rows of the weight once for all hidden rows, so the
# slices cost only their calls (slicing by hidden rows re-read the whole weight per slice:
# benchmarks/results/batch.md). For the default model a slice is ~the work of one decoder layer
# (the LM head is ~8 layers' FLOPs), the grain the forward already pauses at.
HEAD_SLICES = 8


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

    def forward_pausable(
        self,
        hidden: torch.Tensor,
        should_pause: Optional[Callable[[], bool]],
        logits: Optional[torch.Tensor] = None,
        begin: int = 0,
    ) -> tuple[torch.Tensor, Optional[int]]:
        """forward(hidden) in HEAD_SLICES vocabulary slices, asking `should_pause` between them.
        Returns (logits, None) when done: bit-identical to forward(hidden). A True returns
        (partial logits, next column) instead: columns [0, next column) are done (all of them
        when it is asked after the last slice: next column == vocab), and passing both back as
        (logits, begin) computes the rest. An LM head that cannot be split that
        way (lm_head.can_split_columns) runs whole."""
        head = self.lm_head
        if logits is None and (should_pause is None or not head.can_split_columns(hidden)):
            return self.forward(hidden), None
        vocab = head.out_features
        width = -(-vocab // HEAD_SLICES)
        width = -(-width // COLUMN_BLOCK) * COLUMN_BLOCK
        while begin < vocab:
            end = min(begin + width, vocab)
            logits = head.forward_columns(hidden, logits, begin, end)
            begin = end
            # Also after the last slice: what follows (the float copy, sampling, the step's
            # output) then waits too, and resuming at `vocab` computes no column again.
            if should_pause is not None and should_pause():
                return logits, begin
        assert logits is not None
        return logits.float(), None
