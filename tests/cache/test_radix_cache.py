"""RadixCache (C++ tree + KVAllocator) against the pure-Python reference, plus error cases.

The random programs drive both implementations the way the scheduler does: match and lock a
prompt's cached prefix, allocate the rest (evicting when short), insert finished or chunked
sequences and free the duplicates, evict, flush. After every step they must agree exactly
(slots, node ids, cached lengths, evicted slots in LRU order, sizes, the allocator's free set)
and every slot must be in exactly one place: free, in the tree, or held by a running request.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from radixserve.cache import KVAllocator, RadixCache


def _load_reference():  # by path: a bare `import reference` could pick another folder's file
    name = "radixserve_tests_cache_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("reference.py")
        )
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


ref = _load_reference()


class Pair:
    """The C++ cache and the reference model side by side, plus the requests the test holds."""

    def __init__(self, page_size: int, num_pages: int) -> None:
        self.p = page_size
        num_slots = (num_pages + 1) * page_size
        self.cache = RadixCache(KVAllocator(num_slots, page_size), page_size)
        self.rt = ref.RefRadixTree(page_size)
        self.ra = ref.RefKVAllocator(num_slots, page_size)
        self.running: list[dict[str, Any]] = []

    def match(self, tokens: list[int]) -> tuple[Any, Any, list[int]]:
        m = self.cache.match_prefix(tokens)
        rs, rn = self.rt.match_prefix(tokens)
        assert m.slots.dtype == torch.int64 and m.slots.tolist() == rs
        assert len(rs) <= len(tokens) // self.p * self.p
        assert m.node.id == rn.id
        return m.node, rn, rs

    def evict(self, n: int, via_cache: bool) -> None:
        want = self.rt.evict(n)
        self.ra.free(want)
        if via_cache:
            assert self.cache.evict(n) == len(want)
        else:
            got = self.cache.evict_slots(n)
            assert got.tolist() == want  # same slots in the same LRU order
            self.cache.allocator.free(got)
        if len(want) < n:
            assert self.cache.evictable_size() == 0

    def alloc(self, n: int, via_cache: bool) -> list[int] | None:
        short = -(-n // self.p) * self.p - self.cache.allocator.available()
        if short > 0:
            self.evict(short, via_cache)
        got = self.cache.allocator.alloc(n)
        want = self.ra.alloc(n)
        assert (got is None) == (want is None)
        assert got is None or got.tolist() == want
        return want

    def insert(self, tokens: list[int], slots: list[int]) -> tuple[int, Any, Any]:
        cached, node = self.cache.insert(tokens, torch.tensor(slots, dtype=torch.int64))
        rcached, rnode = self.rt.insert(tokens, slots)
        assert cached == rcached and node.id == rnode.id
        return cached, node, rnode

    def free(self, slots: list[int]) -> None:
        if slots:
            self.cache.allocator.free(slots)
            self.ra.free(slots)

    def check(self) -> None:
        c, rt = self.cache, self.rt
        sizes = (c.total_size(), c.evictable_size(), c.protected_size())
        assert sizes == (rt.total_size(), rt.evictable_size(), rt.protected_size())
        assert sizes[0] == sizes[1] + sizes[2]
        tree = sorted(c.all_slots().tolist())
        assert tree == sorted(rt.all_slots()) and len(tree) == sizes[0]
        free = sorted(c.allocator.free_slots().tolist())
        assert c.allocator.available() == self.ra.available() == len(free)
        held = [s for r in self.running for s in r["slots"][r["prefix"] :]]
        everything = tree + free + held
        assert len(set(everything)) == len(everything) == c.allocator.size
        in_tree = set(tree)
        for r in self.running:  # locked prefixes are still cached
            assert c.lock_ref(r["node"]) >= 1 or r["node"].id == 0
            assert in_tree.issuperset(r["slots"][: r["prefix"]])


tokens_st = st.lists(st.integers(0, 2), max_size=14)
op_st = st.tuples(st.sampled_from("sssfcimeeF"), tokens_st, st.integers(0, 1000))


@settings(max_examples=300, deadline=None)
@given(page_size=st.sampled_from([1, 1, 2, 4]), num_pages=st.integers(3, 24), ops=st.lists(op_st))
def test_cache_matches_reference(page_size: int, num_pages: int, ops: list) -> None:
    t = Pair(page_size, num_pages)
    for op, tokens, pick in ops:
        via_cache = pick % 2 == 0
        if op == "s":  # a request starts: lock its cached prefix, allocate the rest
            node, rnode, prefix = t.match(tokens)
            t.cache.lock(node)
            t.rt.lock(rnode)
            new = t.alloc(len(tokens) - len(prefix), via_cache)
            if new is None:
                t.cache.unlock(node)
                t.rt.unlock(rnode)
            else:
                r = {"tokens": tokens, "slots": prefix + new, "prefix": len(prefix)}
                t.running.append({**r, "node": node, "rnode": rnode})
        elif op in "fc" and t.running:  # finish, or cache a prefill chunk and keep running
            r = t.running.pop(pick % len(t.running))
            n, aligned = len(r["tokens"]), len(r["tokens"]) // page_size * page_size
            cached, node, rnode = t.insert(r["tokens"], r["slots"][:n])
            assert r["prefix"] <= cached <= aligned
            t.free(r["slots"][r["prefix"] : cached])  # duplicates of what was already cached
            if op == "f":
                t.free(r["slots"][aligned:])
            else:
                node2, rnode2, slots = t.match(r["tokens"])
                assert len(slots) == aligned and node2 == node
                t.cache.lock(node2)
                t.rt.lock(rnode2)
                r2 = {"tokens": r["tokens"], "slots": slots + r["slots"][aligned:]}
                t.running.append({**r2, "prefix": aligned, "node": node2, "rnode": rnode2})
            t.cache.unlock(r["node"])
            t.rt.unlock(r["rnode"])
        elif op == "i":  # insert freshly computed KV without a match first
            slots = t.alloc(len(tokens), via_cache)
            if slots is not None:
                cached, _, _ = t.insert(tokens, slots[: len(tokens)])
                t.free(slots[:cached] + slots[len(tokens) // page_size * page_size :])
        elif op == "m":
            t.match(tokens)
        elif op == "e":
            t.evict(pick % 20, via_cache)
        elif op == "F":
            ok = t.cache.flush()
            assert ok == (t.rt.protected_size() == 0)
            if ok:
                t.ra.free(sorted(t.rt.reset()))
        t.check()
    for r in t.running:  # everything comes back once the requests finish and the cache flushes
        t.cache.unlock(r["node"])
        t.cache.allocator.free(r["slots"][r["prefix"] :])
    assert t.cache.flush() and t.cache.total_size() == 0
    assert t.cache.allocator.available() == t.cache.allocator.size


def make(page_size: int = 1, num_slots: int = 65) -> RadixCache:
    return RadixCache(KVAllocator(num_slots, page_size), page_size)


def test_match_split_and_insert_report() -> None:
    c = make()
    s = c.allocator.alloc(6)
    assert s is not None
    res = c.insert([1, 2, 3, 4, 5, 6], s)
    assert res.cached_len == 0 and c.total_size() == 6
    m = c.match_prefix([1, 2, 3, 9])
    assert m.slots.tolist() == s[:3].tolist() and c.num_nodes() == 2  # split at 3
    assert c.match_prefix(torch.tensor([1, 2, 3, 4], dtype=torch.int32)).slots.numel() == 4
    s2 = c.allocator.alloc(2)
    assert s2 is not None
    res = c.insert([1, 2, 7, 8], torch.cat([s[:2], s2]))
    assert res.cached_len == 2 and c.total_size() == 8


def test_pages_match_and_insert_whole_pages_only() -> None:
    c = make(page_size=4, num_slots=64)
    s = c.allocator.alloc(10)
    assert s is not None and s.numel() == 12
    toks = list(range(10))
    assert c.aligned_len(10) == 8
    assert c.insert(toks, s[:10]).cached_len == 0 and c.total_size() == 8
    c.allocator.free(s[8:])  # the tail page stays the caller's
    assert c.match_prefix(toks).slots.tolist() == s[:8].tolist()
    assert c.match_prefix(toks[:7]).slots.tolist() == s[:4].tolist()
    assert c.match_prefix([0, 1, 2, 9, 4]).slots.numel() == 0  # first page differs
    assert c.match_prefix([0, 1, 2, 3, 4, 5, 6, 0]).slots.numel() == 4


def test_lru_order_and_parent_becomes_leaf() -> None:
    c = make()
    a, b, d = (c.allocator.alloc(n) for n in (4, 2, 2))
    assert a is not None and b is not None and d is not None
    c.insert([1, 2, 3, 4], a)  # clock 1
    c.insert([1, 2, 3, 4, 5, 6], torch.cat([a, b]))  # clock 2: child [5, 6]
    c.insert([9, 9], d)  # clock 3
    c.match_prefix([1, 2, 3, 4, 5, 6])  # clock 4: [1..4] and [5, 6] are newest now
    assert c._tree.evict(1).tolist() == d.tolist()
    assert c._tree.evict(1).tolist() == b.tolist()  # the leaf goes first, then its parent
    assert c._tree.evict(1).tolist() == a.tolist()
    assert c.total_size() == 0


def test_locks_protect_paths() -> None:
    c = make()
    s = c.allocator.alloc(6)
    assert s is not None
    node = c.insert([1, 2, 3, 4, 5, 6], s).node
    m = c.match_prefix([1, 2, 3])
    c.lock(m.node)
    assert (c.evictable_size(), c.protected_size()) == (3, 3)
    assert c.evict(100) == 3 and c.total_size() == 3  # only the unlocked suffix goes
    with pytest.raises(ValueError, match="evicted"):
        c.lock(node)
    c.lock(m.node)
    assert c.lock_ref(m.node) == 2
    c.unlock(m.node)
    c.unlock(m.node)
    with pytest.raises(ValueError, match="not locked"):
        c.unlock(m.node)
    c.lock(c.root)
    c.unlock(c.root)  # no-ops
    assert c.evict(1) == 3 and c.allocator.available() == c.allocator.size


def test_flush_refuses_while_locked_and_stales_handles() -> None:
    c = make()
    s = c.allocator.alloc(4)
    assert s is not None
    node = c.insert([1, 2, 3, 4], s).node
    c.lock(node)
    assert c.flush() is False and c.total_size() == 4
    c.unlock(node)
    assert c.flush() is True and c.total_size() == 0
    assert c.allocator.available() == c.allocator.size
    with pytest.raises(ValueError, match="reset"):
        c.lock(node)
    c.lock(c.root)


def test_bad_inputs_raise() -> None:
    c = make()
    s = c.allocator.alloc(3)
    assert s is not None
    with pytest.raises(ValueError, match="tokens but"):
        c.insert([1, 2], s)
    with pytest.raises(ValueError):
        c.match_prefix(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError):
        c.match_prefix(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int32"):
        c.match_prefix([2**40])
    with pytest.raises(ValueError):
        c.match_prefix([1, "a"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        c.evict(-1)
    with pytest.raises((ValueError, TypeError)):
        c.lock("node")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="page_size"):
        RadixCache(KVAllocator(16, 4), page_size=2)
    with pytest.raises(ValueError):
        RadixCache(KVAllocator(16, 4), page_size=0)
    assert c.total_size() == 0


def test_deep_chain_is_freed_without_recursion() -> None:
    n = 6_000
    c = make(num_slots=n + 1)
    s = c.allocator.alloc(n)
    assert s is not None
    toks = torch.arange(n, dtype=torch.int32)
    for k in range(1, n + 1, 2):  # each insert extends the last one: a chain of n/2 nodes
        c.insert(toks[:k], s[:k])
    assert c.num_nodes() == n // 2
    c.allocator.free(s[n - 1 :])
    assert c.flush() and c.allocator.available() == n
