"""KVAllocator (C++) against the pure-Python reference, plus every error case."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from radixserve.cache import KVAllocator


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


def _state(a: KVAllocator) -> tuple[int, list[int]]:
    return a.available(), sorted(a.free_slots().tolist())


@settings(max_examples=300, deadline=None)
@given(
    page_size=st.sampled_from([1, 2, 4]),
    num_pages=st.integers(1, 12),
    ops=st.lists(st.tuples(st.sampled_from("aafxr"), st.integers(0, 30), st.integers(0, 1000))),
)
def test_allocator_matches_reference(page_size: int, num_pages: int, ops: list) -> None:
    num_slots = (num_pages + 1) * page_size
    a = KVAllocator(num_slots, page_size)
    r = ref.RefKVAllocator(num_slots, page_size)
    held: list[list[int]] = []  # allocations the test owns
    for op, n, pick in ops:
        if op == "a":
            got = a.alloc(n)
            want = r.alloc(n)
            assert (got is None) == (want is None)
            if got is not None:
                assert got.dtype == torch.int64 and got.tolist() == want
                assert len(want) == -(-n // page_size) * page_size
                if want:
                    held.append(want)
        elif op == "f" and held:
            slots = held.pop(pick % len(held))
            if page_size > 1 and pick % 2:
                slots = slots[::page_size]  # one slot per page frees the same pages
            a.free(torch.tensor(slots, dtype=torch.int64) if pick % 3 else slots)
            r.free(slots)
        elif op == "x":
            # A bad free: a free slot, an out-of-range slot, or a good slot followed by a bad one.
            candidates = [-1, 0, page_size - 1, num_slots, num_slots + 7]
            candidates += a.free_slots().tolist()
            bad = [candidates[pick % len(candidates)]]
            if held and pick % 2:
                good = held[pick % len(held)][0]
                bad = [good, good] if page_size == 1 and pick % 4 == 1 else [good, *bad]
            before = _state(a)
            with pytest.raises(ValueError) as err_a:
                a.free(bad)
            with pytest.raises(ValueError):
                r.free(bad)
            assert "KVAllocator.free" in str(err_a.value)
            assert _state(a) == before
        elif op == "r":
            a.reset()
            r.reset()
            held.clear()
        assert a.available() == r.available()
        assert sorted(a.free_slots().tolist()) == sorted(
            s for p in r.free_pages for s in range(p * page_size, (p + 1) * page_size)
        )
        in_use = [s for h in held for s in h]
        assert len(set(in_use)) == len(in_use)
        assert not set(in_use) & set(a.free_slots().tolist())
        assert a.available() + len(in_use) == a.size == num_slots - page_size


def test_fresh_pool_and_padding_slot() -> None:
    a = KVAllocator(9)
    assert (a.size, a.num_slots, a.page_size, a.available()) == (8, 9, 1, 8)
    slots = a.alloc(8)
    assert slots is not None and sorted(slots.tolist()) == list(range(1, 9))
    assert a.alloc(1) is None and a.available() == 0
    a.free(slots)
    assert a.available() == 8


def test_paged_alloc_rounds_up_to_pages() -> None:
    a = KVAllocator(16, page_size=4)  # pages 1..3 usable, page 0 reserved
    assert a.size == 12
    s = a.alloc(5)
    assert s is not None and s.tolist() == list(range(4, 12))
    assert a.available() == 4
    assert a.alloc(5) is None and a.available() == 4  # failure has no side effects
    a.free([4, 9])  # one slot of each page frees both pages
    assert a.available() == 12
    assert a.alloc(0) is not None and a.alloc(0).numel() == 0  # type: ignore[union-attr]


def test_lifo_reuse() -> None:
    a = KVAllocator(9)
    s = a.alloc(3)
    assert s is not None
    a.free(s[1:2])
    again = a.alloc(1)
    assert again is not None and again.tolist() == [2]


@pytest.mark.parametrize("num_slots,page_size", [(0, 1), (-3, 1), (10, 4), (3, 4), (8, 0)])
def test_bad_construction(num_slots: int, page_size: int) -> None:
    with pytest.raises(ValueError):
        KVAllocator(num_slots, page_size)


def test_free_errors_change_nothing() -> None:
    a = KVAllocator(9)
    s = a.alloc(4)
    assert s is not None
    for bad in ([0], [9], [-1], [5], [1, 1], [1, 2, 0]):
        with pytest.raises(ValueError):
            a.free(bad)
        assert a.available() == 4
    with pytest.raises(ValueError, match="double free"):
        a.free([3, 3])
    a.free(s)
    with pytest.raises(ValueError, match="double free"):
        a.free(s[:1])


def test_free_bad_types() -> None:
    a = KVAllocator(9)
    with pytest.raises(ValueError):
        a.free(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError):
        a.free(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError):
        a.free([1.5])
    with pytest.raises(ValueError):
        a.free("12")
    with pytest.raises(ValueError):
        a.alloc(-1)
    assert a.available() == 8


def test_free_int32_tensor_and_reset() -> None:
    a = KVAllocator(9)
    s = a.alloc(3)
    assert s is not None
    a.free(s.to(torch.int32))
    assert a.available() == 8
    a.alloc(5)
    a.reset()
    assert a.available() == 8
    assert a.alloc(1).tolist() == [1]  # type: ignore[union-attr]
