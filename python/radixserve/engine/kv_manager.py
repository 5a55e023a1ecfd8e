"""KVManager: who owns which KV slot (allocator, radix tree, each request's req_to_token row).

A request's row holds `kv_len` slots: the first `prefix_len` are the radix tree's (its node is
locked while the request runs), the rest are the request's own until it finishes and inserts
its sequence into the tree. Slots the tree already held for the same tokens are freed then.
"""

from __future__ import annotations

from typing import Optional

import torch

from radixserve.cache.kv_allocator import KVAllocator
from radixserve.cache.memory_pool import ReqToTokenPool
from radixserve.cache.radix_cache import NodeHandle, RadixCache
from radixserve.engine.request import Req


def make_allocator(num_slots: int) -> KVAllocator:
    """An allocator handing out exactly slots 1..num_slots (the KV pool has num_slots + 1 rows,
    row 0 being the padding sink)."""
    alloc = KVAllocator(num_slots + 1)
    if alloc.size != num_slots:  # an allocator whose constructor counts usable slots
        alloc = KVAllocator(num_slots)
    if alloc.size != num_slots:
        raise RuntimeError(f"KVAllocator gives {alloc.size} slots, expected {num_slots}")
    return alloc


class KVManager:
    def __init__(
        self,
        allocator: KVAllocator,
        tree: Optional[RadixCache],  # None: --disable-radix-cache
        req_to_token_pool: ReqToTokenPool,
    ) -> None:
        self.allocator = allocator
        self.tree = tree
        self.pool = req_to_token_pool
        self.req_to_token: torch.Tensor = req_to_token_pool.req_to_token

    # -- sizes ------------------------------------------------------------------------------
    def available(self) -> int:
        return int(self.allocator.available())

    def evictable(self) -> int:
        return int(self.tree.evictable_size()) if self.tree is not None else 0

    def cached(self) -> int:
        return int(self.tree.total_size()) if self.tree is not None else 0

    def size(self) -> int:
        return int(self.allocator.size)

    def free_rows(self) -> int:
        return int(self.pool.available())

    # -- allocation -------------------------------------------------------------------------
    def alloc(self, n: int) -> Optional[torch.Tensor]:
        """n slots, evicting unlocked cache leaves if needed; None if memory is short."""
        if n == 0:
            return torch.empty(0, dtype=torch.int64)
        short = n - self.available()
        if short > 0 and self.tree is not None:
            self.tree.evict(short)
        if self.available() < n:
            return None
        slots = self.allocator.alloc(n)
        return None if slots is None else slots.to(torch.int64)

    def match(self, tokens: list[int]) -> tuple[int, Optional[torch.Tensor], Optional[NodeHandle]]:
        if self.tree is None or not tokens:
            return 0, None, None
        slots, node = self.tree.match_prefix(tokens)
        return int(slots.numel()), slots, node

    def admit(self, req: Req) -> bool:
        """Give `req` a row and lock its longest cached prefix (at least one token stays new)."""
        row = self.pool.alloc()
        if row is None:
            return False
        req.req_pool_idx = int(row)
        fill = req.fill_ids
        # Cached KV yields no logits: input logprobs limit the reused prefix (as SGLang does).
        limit = req.next_input_lp_position()
        n, slots, node = self.match(fill[: len(fill) - 1 if limit is None else limit])
        if node is not None and self.tree is not None:
            self.tree.lock(node)
        req.last_node = node
        if n:
            assert slots is not None
            self.pool.write(req.req_pool_idx, 0, slots)
        req.prefix_len = req.kv_len = n
        return True

    def write_slots(self, req: Req, start: int, slots: torch.Tensor) -> None:
        assert req.req_pool_idx is not None
        self.pool.write(req.req_pool_idx, start, slots)

    def _row(self, req: Req, start: int, end: int) -> torch.Tensor:
        assert req.req_pool_idx is not None
        return self.req_to_token[req.req_pool_idx, start:end].to(torch.int64)

    def _insert(self, req: Req) -> None:
        """Insert fill_ids[:kv_len] into the tree and free this request's duplicate slots."""
        assert self.tree is not None
        tokens = req.fill_ids[: req.kv_len]
        cached, _ = self.tree.insert(tokens, self._row(req, 0, req.kv_len))
        if cached > req.prefix_len:
            self.allocator.free(self._row(req, req.prefix_len, cached))

    def cache_unfinished(self, req: Req) -> None:
        """After a prefill chunk: move its KV into the tree and lock the new deepest node."""
        if self.tree is None or req.kv_len == 0:
            return
        self._insert(req)
        n, slots, node = self.match(req.fill_ids[: req.kv_len])
        assert slots is not None and n == req.kv_len, "radix tree lost a just-inserted prefix"
        self.write_slots(req, 0, slots)
        self.tree.lock(node)
        if req.last_node is not None:
            self.tree.unlock(req.last_node)
        req.last_node = node
        req.prefix_len = n

    def release(self, req: Req) -> None:
        """Give back everything `req` holds (finished, aborted or retracted)."""
        if req.req_pool_idx is None:
            return
        if self.tree is not None and req.kv_len > 0:
            self._insert(req)
        elif req.kv_len > req.prefix_len:
            self.allocator.free(self._row(req, req.prefix_len, req.kv_len))
        if req.last_node is not None:
            assert self.tree is not None
            self.tree.unlock(req.last_node)
        self.pool.free(req.req_pool_idx)
        req.req_pool_idx = None
        req.last_node = None
        req.kv_len = req.prefix_len = 0

    def flush(self) -> None:
        if self.tree is not None:
            self.tree.flush()
