"""ReqToTokenPool and KVPool bookkeeping."""

from __future__ import annotations

import pytest
import torch

from radixserve.cache.memory_pool import KVPool, ReqToTokenPool


def test_req_to_token_pool_alloc_free() -> None:
    pool = ReqToTokenPool(3, 10)
    assert pool.req_to_token.shape == (3, 10) and pool.req_to_token.dtype == torch.int32
    rows = [pool.alloc() for _ in range(3)]
    assert sorted(rows) == [0, 1, 2]  # type: ignore[type-var]
    assert pool.alloc() is None and pool.available() == 0
    pool.free(1)
    assert pool.available() == 1 and pool.alloc() == 1
    with pytest.raises(ValueError, match="double free"):
        pool.free(1) or pool.free(1)
    with pytest.raises(ValueError, match="outside"):
        pool.free(7)
    pool.clear()
    assert pool.available() == 3
    with pytest.raises(ValueError):
        ReqToTokenPool(0, 4)


def test_kv_pool_layout() -> None:
    pool = KVPool(100, 3, 2, 8, torch.bfloat16)
    k, v = pool.get_kv(2)
    assert k.shape == (101, 2, 8) and v.dtype == torch.bfloat16  # slot 0 = padding sink
    assert torch.count_nonzero(k[0]) == 0
    assert pool.size_bytes == 2 * 3 * 101 * 2 * 8 * 2
    loc = torch.tensor([5, 100])
    new = torch.randn(2, 2, 8)
    pool.set_kv(1, loc, new, new * 2)
    torch.testing.assert_close(pool.get_kv(1)[0][loc], new.bfloat16())
    torch.testing.assert_close(pool.get_kv(1)[1][loc], (new * 2).bfloat16())
    with pytest.raises(ValueError, match="dtype"):
        KVPool(4, 1, 1, 4, torch.float16)
