"""RadixCache: the prefix cache the scheduler uses (wraps `_C.RadixTree` and a KVAllocator).

Keys are token ids, values KV slots. Only whole pages of `page_size` tokens are matched and
inserted: `match_prefix` of 10 tokens with page_size 4 matches at most 8, and `insert` caches
`aligned_len(len(tokens))` tokens; the caller keeps (and frees) the slots of the unaligned tail.
LRU order is deterministic: each match/insert is one tick of a clock, nodes on its path take
that tick, and `evict` removes unlocked leaves oldest first (ties: older node first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, TypeAlias, Union

import torch

import radixserve._C as _C
from radixserve.cache.kv_allocator import KVAllocator

NodeHandle: TypeAlias = _C.RadixNodeHandle  # opaque; compare with ==, never build one
TokensLike = Union[torch.Tensor, Sequence[int]]


class MatchResult(NamedTuple):
    slots: torch.Tensor  # int64, one slot per matched token
    node: NodeHandle  # the node holding the last matched token (the root if none)


class InsertResult(NamedTuple):
    cached_len: int  # leading tokens that were already cached: their slots are the caller's
    node: NodeHandle  # the node holding the last inserted token (the root if none)


class RadixCache:
    """Prefix cache over a KVAllocator (--disable-radix-cache builds none: the scheduler's
    tree is None then)."""

    def __init__(self, allocator: KVAllocator, page_size: int = 1) -> None:
        if int(page_size) != allocator.page_size:
            raise ValueError(
                f"RadixCache page_size {page_size} != allocator page_size {allocator.page_size}"
            )
        self.allocator = allocator
        self.page_size: int = int(page_size)
        self._tree = _C.RadixTree(self.page_size)

    @property
    def root(self) -> NodeHandle:
        """The root's handle; locking or unlocking it is a no-op."""
        return self._tree.root

    def aligned_len(self, n: int) -> int:
        """How many of n tokens match_prefix/insert consider (whole pages only)."""
        return n // self.page_size * self.page_size

    def match_prefix(self, tokens: TokensLike) -> MatchResult:
        """Slots of the longest cached whole-page prefix of `tokens`, and its last node."""
        slots, node = self._tree.match_prefix(tokens)
        return MatchResult(slots, node)

    def insert(self, tokens: TokensLike, slots: TokensLike) -> InsertResult:
        """Cache tokens[:aligned_len] with their slots.

        The tree keeps slots[cached_len:aligned_len]. slots[:cached_len] were already cached:
        the caller frees those it allocated itself (not the ones a match gave it), and frees
        slots[aligned_len:] too. Raises ValueError if tokens and slots differ in length.
        """
        cached_len, node = self._tree.insert(tokens, slots)
        return InsertResult(int(cached_len), node)

    def lock(self, node: NodeHandle) -> None:
        """Protect root..node from eviction (one more reference on each node)."""
        self._tree.lock(node)

    def unlock(self, node: NodeHandle) -> None:
        """Drop one reference on root..node; ValueError if node is not locked."""
        self._tree.unlock(node)

    def evict(self, num_tokens: int) -> int:
        """Evict LRU unlocked leaves until num_tokens slots are freed (or nothing is left).

        The slots go back to the allocator; returns how many were freed.
        """
        slots = self._tree.evict(int(num_tokens))
        if slots.numel():
            self.allocator.free(slots)
        return int(slots.numel())

    def evict_slots(self, num_tokens: int) -> torch.Tensor:
        """Like evict, but returns the evicted slots without freeing them (tests, tools)."""
        out: torch.Tensor = self._tree.evict(int(num_tokens))
        return out

    def flush(self) -> bool:
        """Empty the cache, freeing every cached slot; False (and no change) if any is locked."""
        if self._tree.protected_size() > 0:
            return False
        slots = self._tree.reset()
        if slots.numel():
            # Sorted, so the allocator's free order does not depend on the tree's hash order.
            self.allocator.free(torch.sort(slots).values)
        return True

    def all_slots(self) -> torch.Tensor:
        """Every slot the tree holds (for accounting checks)."""
        out: torch.Tensor = self._tree.all_slots()
        return out

    def lock_ref(self, node: NodeHandle) -> int:
        return int(self._tree.lock_ref(node))

    def num_nodes(self) -> int:
        return int(self._tree.num_nodes())

    def total_size(self) -> int:
        return int(self._tree.total_size())

    def evictable_size(self) -> int:
        return int(self._tree.evictable_size())

    def protected_size(self) -> int:
        return int(self._tree.protected_size())
