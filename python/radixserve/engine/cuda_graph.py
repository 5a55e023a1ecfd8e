"""Decode at fixed, padded batch sizes: CUDA graphs captured once, replayed every decode step.

A CUDA graph replays the kernels it recorded on the exact buffers it recorded them with, so each
captured batch size owns static input buffers. A decode batch of `bs` requests runs on the
smallest captured size >= bs: its index tensors are copied into the static buffers' first rows
and the rest are PADDING requests, which

- read one key through row `pad_row` of req_to_token (any row: every entry of the table is a
  valid slot, so the read is finite) at seq_len 1, position 0, token 0, and
- write their K/V into slot 0, the KV pool's padding sink (the allocator never hands it out).

Their logits rows are dropped. Everything here but `torch.cuda.graph` is device-agnostic: with
`capture=False` (the CPU tests) `run` executes the same padded batch eagerly, which is how the
padding is proven harmless without a GPU. Capture needs attention kernels that take all sizes
from device tensors (the native `_cuda` ops do; the torch backend reads `.tolist()`, FlashInfer
needs its own graph wrappers): other backends run decode eagerly.
"""

from __future__ import annotations

import bisect
import logging
from typing import Any, Optional

import torch

from radixserve.forward_batch import ForwardBatch

logger = logging.getLogger(__name__)

MAX_GRAPH_BS = 256  # beyond this, capture time and memory outweigh launch savings


def graph_batch_sizes(max_bs: int) -> list[int]:
    """Captured sizes up to max_bs: 1, 2, 4, 8, then every 8 to 64, every 16 beyond; max_bs last.

    Small sizes are dense (1-user latency), large ones coarse (padding is a few % of the batch).
    """
    if max_bs < 1:
        raise ValueError(f"the largest graph batch size must be >= 1, got {max_bs}")
    max_bs = min(max_bs, MAX_GRAPH_BS)
    sizes = [1, 2, 4] + list(range(8, 65, 8)) + list(range(80, MAX_GRAPH_BS + 1, 16))
    return sorted({s for s in sizes if s < max_bs} | {max_bs})


def padded_batch_size(bs: int, sizes: list[int]) -> Optional[int]:
    """The smallest captured size that holds bs requests, or None (run eagerly)."""
    if bs < 1:
        return None
    i = bisect.bisect_left(sizes, bs)
    return sizes[i] if i < len(sizes) else None


class DecodeGraphRunner:
    """Runs decode batches padded to `sizes` on static buffers, replaying a CUDA graph per size
    when `capture` (CUDA), eagerly otherwise. `forward(batch) -> logits [bs, vocab]` or None when
    the batch is not a plain decode that fits (the caller then runs it eagerly)."""

    def __init__(
        self, model: Any, sizes: list[int], device: torch.device, capture: bool, pad_row: int = 0
    ) -> None:
        if capture and device.type != "cuda":
            raise ValueError("CUDA graphs are captured on a CUDA device only")
        self.model = model
        self.sizes = sizes
        self.device = device
        self.capture = capture
        n = max(sizes)

        def buf(value: int) -> torch.Tensor:
            return torch.full((n,), value, dtype=torch.int64, device=device)

        # One set of buffers for every size: a size-b graph reads their first b rows.
        self.input_ids = buf(0)
        self.positions = buf(0)
        self.out_cache_loc = buf(0)  # 0: the KV pool's padding sink
        self.req_pool_indices = buf(pad_row)
        self.seq_lens = buf(1)
        self.ones = buf(1)
        self.arange = torch.arange(n, dtype=torch.int64, device=device)
        self.pad_row = pad_row
        self.graphs: dict[int, Any] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.num_replays = 0  # decode steps served from these buffers (graph or eager)

    def static_batch(self, size: int) -> ForwardBatch:
        """The ForwardBatch view of the first `size` rows of the static buffers."""
        return ForwardBatch(
            input_ids=self.input_ids[:size],
            positions=self.positions[:size],
            out_cache_loc=self.out_cache_loc[:size],
            req_pool_indices=self.req_pool_indices[:size],
            seq_lens=self.seq_lens[:size],
            extend_prefix_lens=self.seq_lens[:size] - 1,
            extend_seq_lens=self.ones[:size],
            extend_start_loc=self.arange[:size],
            is_decode=True,
        )

    def _eager(self, size: int) -> torch.Tensor:
        batch = self.static_batch(size)
        logits: torch.Tensor = self.model.compute_logits(self.model(batch))
        return logits

    def capture_all(self) -> None:
        """Record one graph per size (largest first, so smaller ones reuse its memory pool)."""
        if not self.capture:
            return
        pool = None
        with torch.inference_mode():
            for size in sorted(self.sizes, reverse=True):
                for _ in range(2):  # warm up: lazy inits and allocator growth stay out of the graph
                    self._eager(size)
                torch.cuda.synchronize(self.device)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    self.outputs[size] = self._eager(size)
                pool = graph.pool()
                self.graphs[size] = graph
        torch.cuda.synchronize(self.device)
        logger.info("captured decode CUDA graphs at batch sizes %s", self.sizes)

    def can_run(self, batch: ForwardBatch) -> bool:
        return (
            batch.is_decode
            and batch.logits_indices is None
            and batch.token_type_ids is None
            and batch.cascade is None
            and padded_batch_size(batch.batch_size, self.sizes) is not None
        )

    def load(self, batch: ForwardBatch, size: int) -> None:
        """Copy the batch (on self.device) into the static buffers; reset the padding rows."""
        bs = batch.batch_size
        self.input_ids[:bs].copy_(batch.input_ids)
        self.positions[:bs].copy_(batch.positions)
        self.out_cache_loc[:bs].copy_(batch.out_cache_loc)
        self.req_pool_indices[:bs].copy_(batch.req_pool_indices)
        self.seq_lens[:bs].copy_(batch.seq_lens)
        if size > bs:
            self.input_ids[bs:size].zero_()
            self.positions[bs:size].zero_()
            self.out_cache_loc[bs:size].zero_()
            self.req_pool_indices[bs:size].fill_(self.pad_row)
            self.seq_lens[bs:size].fill_(1)

    def forward(self, batch: ForwardBatch) -> Optional[torch.Tensor]:
        if not self.can_run(batch):
            return None
        size = padded_batch_size(batch.batch_size, self.sizes)
        assert size is not None
        self.load(batch, size)
        self.num_replays += 1
        if size in self.graphs:
            self.graphs[size].replay()
            return self.outputs[size][: batch.batch_size]
        return self._eager(size)[: batch.batch_size]
