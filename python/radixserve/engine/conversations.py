"""The scheduler's memory of finished requests, so that POST /extend can continue them by rid.

Every request that finishes normally is recorded as `rid -> tokens` (prompt + output); an
/extend turn re-records its conversation's rid with the longer tokens. Entries live in memory
only: they are lost on restart, dropped after `idle_timeout` seconds without use, dropped
oldest-first beyond `max_entries` or beyond 4x the KV pool's tokens in all, and all dropped by
/flush_cache.

A plain /generate only leaves tokens behind (the radix cache keeps their KV while nothing else
needs the memory). A conversation continued by /extend also keeps its latest turn locked in
the radix tree, like a session, so the next turn finds the whole prefix; the locks of all
conversations together stay under `lock_budget` tokens (the oldest are unlocked first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

from radixserve.engine.kv_manager import KVManager


@dataclass
class Conversation:
    tokens: list[int]
    lock: Any = None  # the locked radix node, or None
    locked_len: int = 0
    last_used: float = 0.0


def lock_prefix(kv: KVManager, tokens: list[int]) -> tuple[Any, int]:
    """Lock the cached KV of `tokens` (all but the last, whose KV was never computed).

    Returns (node, locked tokens), or (None, 0) when nothing of it is cached."""
    if kv.tree is None or len(tokens) < 2:
        return None, 0
    n, _, node = kv.match(tokens[:-1])
    if n == 0:
        return None, 0
    kv.tree.lock(node)
    return node, n


def unlock(kv: KVManager, node: Any) -> None:
    if node is not None and kv.tree is not None:
        kv.tree.unlock(node)


class ConversationStore:
    def __init__(self, kv: KVManager, idle_timeout: float, max_entries: int = 4096) -> None:
        self.kv = kv
        self.idle_timeout = idle_timeout
        self.max_entries = max_entries
        self.lock_budget = max(1, kv.size() // 4)
        self.locked_total = 0
        self.max_tokens = 4 * kv.size()  # host memory: token lists of all entries together
        self.total_tokens = 0
        self.entries: OrderedDict[str, Conversation] = OrderedDict()

    def get(self, rid: str) -> Optional[Conversation]:
        entry = self.entries.get(rid)
        if entry is not None:
            entry.last_used = time.monotonic()
        return entry

    def record(self, rid: str, tokens: list[int], lock: bool) -> None:
        """Remember `rid`'s latest tokens (replacing older ones), locking them if asked."""
        self._drop(rid)
        entry = Conversation(tokens=tokens, last_used=time.monotonic())
        if lock:
            entry.lock, entry.locked_len = lock_prefix(self.kv, tokens)
            self.locked_total += entry.locked_len
        self.entries[rid] = entry
        self.total_tokens += len(tokens)
        while len(self.entries) > self.max_entries or self.total_tokens > self.max_tokens:
            self._drop(next(iter(self.entries)))
        for old in self.entries.values():  # oldest first
            if self.locked_total <= self.lock_budget:
                break
            self._unlock(old)

    def expire(self, now: float) -> None:
        if self.idle_timeout <= 0:
            return
        stale = [rid for rid, e in self.entries.items() if now - e.last_used > self.idle_timeout]
        for rid in stale:
            self._drop(rid)

    def clear(self) -> None:
        for rid in list(self.entries):
            self._drop(rid)

    def _unlock(self, entry: Conversation) -> None:
        unlock(self.kv, entry.lock)
        self.locked_total -= entry.locked_len
        entry.lock, entry.locked_len = None, 0

    def _drop(self, rid: str) -> None:
        entry = self.entries.pop(rid, None)
        if entry is not None:
            self._unlock(entry)
            self.total_tokens -= len(entry.tokens)
