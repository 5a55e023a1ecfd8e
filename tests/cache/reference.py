"""Pure-Python reference models of the KV allocator and the radix tree (csrc/cache/).

Same semantics as the C++ structures, written plainly: the property tests compare the two
step by step, and benchmarks/kernels/bench_radix_tree.py times one against the other. The
eviction heap is rebuilt per evict() call, as SGLang's Python radix cache does.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Optional


class RefKVAllocator:
    """Pages 1..num_slots/page_size-1 on a stack (most recently freed handed out first)."""

    def __init__(self, num_slots: int, page_size: int = 1) -> None:
        if page_size < 1 or num_slots < page_size or num_slots % page_size:
            raise ValueError("bad allocator shape")
        self.page_size = page_size
        self.num_slots = num_slots
        self.size = num_slots - page_size
        self.reset()

    def reset(self) -> None:
        self.num_pages = self.size // self.page_size
        self.free_pages = list(range(self.num_pages, 0, -1))
        self.is_free = [False] + [True] * self.num_pages

    def available(self) -> int:
        return len(self.free_pages) * self.page_size

    def alloc(self, n: int) -> Optional[list[int]]:
        if n < 0:
            raise ValueError("negative n")
        pages = -(-n // self.page_size)
        if pages > len(self.free_pages):
            return None
        out: list[int] = []
        for _ in range(pages):
            page = self.free_pages.pop()
            self.is_free[page] = False
            out.extend(range(page * self.page_size, (page + 1) * self.page_size))
        return out

    def free(self, slots: Sequence[int]) -> None:
        pages: list[int] = []
        seen: set[int] = set()
        for s in slots:
            page = s // self.page_size if s >= 0 else -1
            if not 1 <= page <= self.num_pages:
                raise ValueError(f"slot {s} out of range")
            if self.is_free[page] or (page in seen and self.page_size == 1):
                raise ValueError(f"double free of slot {s}")
            if page not in seen:
                seen.add(page)
                pages.append(page)
        for page in pages:
            self.is_free[page] = True
        self.free_pages.extend(pages)


class RefNode:
    __slots__ = ("key", "value", "parent", "children", "lock_ref", "last_access", "id")

    def __init__(self, parent: Optional[RefNode], node_id: int) -> None:
        self.key: list[int] = []
        self.value: list[int] = []
        self.parent = parent
        self.children: dict[tuple[int, ...], RefNode] = {}
        self.lock_ref = 0
        self.last_access = 0
        self.id = node_id


class RefRadixTree:
    """The radix tree; handles are the nodes themselves (no stale-handle checks)."""

    def __init__(self, page_size: int = 1) -> None:
        self.page_size = page_size
        self.next_id = 1
        self.clock = 0
        self.reset()

    def reset(self) -> list[int]:
        out = self.all_slots() if hasattr(self, "root") else []
        self.root = getattr(self, "root", None) or RefNode(None, 0)  # root handles stay valid
        self.root.children = {}
        self.evictable = 0
        self.protected = 0
        return out

    def total_size(self) -> int:
        return self.evictable + self.protected

    def evictable_size(self) -> int:
        return self.evictable

    def protected_size(self) -> int:
        return self.protected

    def all_slots(self) -> list[int]:
        out: list[int] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            out.extend(node.value)
            stack.extend(node.children.values())
        return out

    def _page(self, tokens: Sequence[int], pos: int) -> tuple[int, ...]:
        return tuple(tokens[pos : pos + self.page_size])

    def _match_len(self, key: list[int], tokens: Sequence[int], pos: int, n: int) -> int:
        i = 0
        limit = min(len(key), n - pos)
        while i < limit and key[i] == tokens[pos + i]:
            i += 1
        return i // self.page_size * self.page_size

    def _new_node(self, parent: RefNode) -> RefNode:
        node = RefNode(parent, self.next_id)
        self.next_id += 1
        return node

    def _split(self, child: RefNode, length: int) -> RefNode:
        parent = child.parent
        assert parent is not None
        prefix = self._new_node(parent)
        prefix.key, child.key = child.key[:length], child.key[length:]
        prefix.value, child.value = child.value[:length], child.value[length:]
        prefix.lock_ref = child.lock_ref
        prefix.last_access = child.last_access
        parent.children[tuple(prefix.key[: self.page_size])] = prefix
        child.parent = prefix
        prefix.children[tuple(child.key[: self.page_size])] = child
        return prefix

    def _walk(self, tokens: Sequence[int], n: int, stop_on_partial: bool) -> tuple[RefNode, int]:
        """Follow tokens[:n] down the tree, splitting and touching; returns (node, matched)."""
        node, pos = self.root, 0
        while pos < n:
            child = node.children.get(self._page(tokens, pos))
            if child is None:
                break
            m = self._match_len(child.key, tokens, pos, n)
            partial = m < len(child.key)
            if partial:
                child = self._split(child, m)
            child.last_access = self.clock
            node, pos = child, pos + m
            if partial and stop_on_partial:
                break
        return node, pos

    def match_prefix(self, tokens: Sequence[int]) -> tuple[list[int], RefNode]:
        self.clock += 1
        n = len(tokens) // self.page_size * self.page_size
        node, _ = self._walk(tokens, n, stop_on_partial=True)
        slots: list[int] = []
        path = node
        while path is not self.root:
            slots[:0] = path.value
            assert path.parent is not None
            path = path.parent
        return slots, node

    def insert(self, tokens: Sequence[int], slots: Sequence[int]) -> tuple[int, RefNode]:
        if len(tokens) != len(slots):
            raise ValueError("tokens and slots differ in length")
        self.clock += 1
        n = len(tokens) // self.page_size * self.page_size
        node, pos = self._walk(tokens, n, stop_on_partial=False)
        cached = pos
        if pos < n:
            leaf = self._new_node(node)
            leaf.key = list(tokens[pos:n])
            leaf.value = list(slots[pos:n])
            leaf.last_access = self.clock
            node.children[tuple(leaf.key[: self.page_size])] = leaf
            self.evictable += n - pos
            node = leaf
        return cached, node

    def lock(self, node: RefNode) -> None:
        while node is not self.root:
            if node.lock_ref == 0:
                self.evictable -= len(node.key)
                self.protected += len(node.key)
            node.lock_ref += 1
            assert node.parent is not None
            node = node.parent

    def unlock(self, node: RefNode) -> None:
        if node is self.root:
            return
        if node.lock_ref <= 0:
            raise ValueError("node is not locked")
        while node is not self.root:
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self.protected -= len(node.key)
                self.evictable += len(node.key)
            assert node.parent is not None
            node = node.parent

    def _leaves(self) -> list[RefNode]:
        out, stack = [], [self.root]
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(node.children.values())
            elif node is not self.root and node.lock_ref == 0:
                out.append(node)
        return out

    def evict(self, num_tokens: int) -> list[int]:
        if num_tokens < 0:
            raise ValueError("negative num_tokens")
        out: list[int] = []
        if num_tokens == 0:
            return out
        heap = [(n.last_access, n.id, n) for n in self._leaves()]
        heapq.heapify(heap)
        while len(out) < num_tokens and heap:
            _, _, leaf = heapq.heappop(heap)
            out.extend(leaf.value)
            self.evictable -= len(leaf.key)
            parent = leaf.parent
            assert parent is not None
            del parent.children[tuple(leaf.key[: self.page_size])]
            if parent is not self.root and not parent.children and parent.lock_ref == 0:
                heapq.heappush(heap, (parent.last_access, parent.id, parent))
        return out
