"""ForwardBatch: what one model forward needs, as tensors (built by the scheduler's batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class CascadeGroups:
    """group_ids int64 [bs] (-1: attends alone) and prefix_lens int64 [num_groups]."""

    group_ids: torch.Tensor
    prefix_lens: torch.Tensor

    @property
    def num_groups(self) -> int:
        return int(self.prefix_lens.shape[0])


@dataclass
class ForwardBatch:
    """A batch of requests, each extending its KV by `extend_seq_lens[i]` new tokens.

    A decode is an extend of one token; one batch may mix prefill chunks and decodes. Tokens are
    packed request after request: request i's new tokens are
    `input_ids[extend_start_loc[i] : extend_start_loc[i] + extend_seq_lens[i]]`.
    """

    input_ids: torch.Tensor  # [num_tokens] int64
    positions: torch.Tensor  # [num_tokens] int64, position of each new token in its sequence
    out_cache_loc: torch.Tensor  # [num_tokens] int64, KV slot for each new token
    req_pool_indices: torch.Tensor  # [bs] int64, row of each request in req_to_token
    seq_lens: torch.Tensor  # [bs] int64, cached prefix + new tokens
    extend_prefix_lens: torch.Tensor  # [bs] int64, tokens already in the KV pool
    extend_seq_lens: torch.Tensor  # [bs] int64, new tokens (1 for a decode)
    extend_start_loc: torch.Tensor  # [bs] int64, offset of each request's first new token
    is_decode: bool  # every request adds exactly one token (fast decode kernels apply)
    # Which packed token positions produce logits: by default the last new token of each
    # request; with input logprobs, more (the runner returns them in this order).
    logits_indices: Optional[torch.Tensor] = None
    # Python copies, to avoid device syncs in the model code.
    seq_lens_list: Optional[list[int]] = None
    extend_seq_lens_list: Optional[list[int]] = None
    extend_prefix_lens_list: Optional[list[int]] = None
    # BERT segment ids [num_tokens] int64 (cross-encoder pairs); None means all zeros.
    token_type_ids: Optional[torch.Tensor] = None
    # Decode batches only: shared-prefix groups for cascade attention (engine/cascade.py);
    # None when nothing is shared (or cascade attention is disabled).
    cascade: Optional[CascadeGroups] = None

    @property
    def batch_size(self) -> int:
        return int(self.seq_lens.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class PausedForward:
    """A forward stopped between decoder layers (a background step that gave way to online work):
    the staged batch and what layer `next_layer` takes. The KV its layers wrote stays valid;
    `ModelRunner.forward(batch, resume=this)` runs the remaining layers. Stopped between the LM
    head's vocabulary slices instead, `h` is the final hidden rows (no residual), and `logits`
    holds the columns before `next_column`."""

    batch: ForwardBatch
    h: torch.Tensor
    residual: Optional[torch.Tensor]
    next_layer: int
    logits: Optional[torch.Tensor] = None
    next_column: int = 0
