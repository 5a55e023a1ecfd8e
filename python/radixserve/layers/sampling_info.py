"""SamplingBatchInfo: per-request sampling parameters of a batch, as tensors for the sampler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class SamplingBatchInfo:
    """One row per request of the batch (the rows of the logits the sampler receives).

    Every request has a seed (a random one when the user gave none), and `steps` counts the
    tokens it has generated: the random draw depends only on (seed, step), so a seeded request
    samples the same tokens whatever else shares its batch.
    """

    temperatures: torch.Tensor  # [bs] float32; 0 means greedy for that row
    top_ps: torch.Tensor  # [bs] float32 in (0, 1]
    top_ks: torch.Tensor  # [bs] int32 in [1, vocab]
    min_ps: torch.Tensor  # [bs] float32 in [0, 1]
    seeds: torch.Tensor  # [bs] int64
    steps: torch.Tensor  # [bs] int64
    is_all_greedy: bool
    # Penalties; None when no request of the batch uses any.
    frequency_penalties: Optional[torch.Tensor] = None  # [bs] float32
    presence_penalties: Optional[torch.Tensor] = None  # [bs] float32
    repetition_penalties: Optional[torch.Tensor] = None  # [bs] float32
    # Counts of each generated token per request, [bs, vocab] int32 (penalties read it).
    output_token_counts: Optional[torch.Tensor] = None
    # Additive bias (logit_bias, and -inf on stop tokens before min_new_tokens); None if unused.
    logit_bias: Optional[torch.Tensor] = None  # [bs, vocab] float32
    # Grammar masks (constrained decoding), packed: bit t % 32 of word t // 32 is set where
    # token t is allowed; rows of free requests are all ones (the sampler skips them). None
    # when no request of the batch is constrained.
    token_bitmask: Optional[torch.Tensor] = None  # [bs, ceil(vocab / 32)] int32
    # Logprobs: rows that want them and how many top alternatives (0: just the chosen token).
    return_logprob: bool = False
    top_logprobs_nums: Optional[list[int]] = None

    @property
    def batch_size(self) -> int:
        return int(self.temperatures.shape[0])


@dataclass
class SampleOutput:
    next_token_ids: torch.Tensor  # [bs] int64
    # Log-softmax of the raw (temperature 1, unpenalised) logits at the chosen token, as SGLang.
    logprobs: Optional[torch.Tensor] = None  # [bs] float32
    top_logprobs_vals: Optional[torch.Tensor] = None  # [bs, max_top] float32
    top_logprobs_ids: Optional[torch.Tensor] = None  # [bs, max_top] int64
