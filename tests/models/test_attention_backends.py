"""Attention backends against a naive per-query softmax reference, on random shapes."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from radixserve.cache.memory_pool import KVPool, ReqToTokenPool
from radixserve.forward_batch import ForwardBatch
from radixserve.layers.attention import create_attention_backend, native_attention_available

BACKENDS = ["torch"] + (["native"] if native_attention_available() else [])


def naive(q: torch.Tensor, keys: torch.Tensor, vals: torch.Tensor, q_pos: int, window: int) -> Any:
    """One query [Hq, D] over keys/vals [S, Hkv, D] (positions 0..S-1), explicit softmax."""
    group = q.shape[0] // keys.shape[1]
    out = torch.empty_like(q, dtype=torch.float64)
    for h in range(q.shape[0]):
        k, v = keys[:, h // group].double(), vals[:, h // group].double()
        s = (k @ q[h].double()) / math.sqrt(q.shape[1])
        pos = torch.arange(keys.shape[0])
        ok = pos <= q_pos
        if window > 0:
            ok &= pos > q_pos - window
        s[~ok] = -math.inf
        out[h] = torch.softmax(s, 0) @ v
    return out


def make_batch(
    prefix: list[int], ext: list[int], req_pool: ReqToTokenPool, num_slots: int, seed: int
) -> tuple[ForwardBatch, list[int]]:
    g = torch.Generator().manual_seed(seed)
    perm = (torch.randperm(num_slots, generator=g) + 1).tolist()
    rows, locs, pos, starts, used = [], [], [], [], 0
    for p, e in zip(prefix, ext, strict=True):
        row = req_pool.alloc()
        assert row is not None
        slots = perm[used : used + p + e]
        used += p + e
        req_pool.req_to_token[row, : p + e] = torch.tensor(slots, dtype=torch.int32)
        starts.append(len(locs))
        locs += slots[p:]
        pos += list(range(p, p + e))
        rows.append(row)
    t = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
    seq = [p + e for p, e in zip(prefix, ext, strict=True)]
    batch = ForwardBatch(
        input_ids=torch.zeros(len(locs), dtype=torch.int64),
        positions=t(pos),
        out_cache_loc=t(locs),
        req_pool_indices=t(rows),
        seq_lens=t(seq),
        extend_prefix_lens=t(prefix),
        extend_seq_lens=t(ext),
        extend_start_loc=t(starts),
        is_decode=all(e == 1 for e in ext),
    )
    return batch, rows


CASES = [
    # (prefix lens, extend lens, Hq, Hkv, D, window)
    ([0], [7], 4, 2, 16, -1),
    ([5, 0, 9], [3, 6, 1], 8, 2, 32, -1),
    ([3, 10, 1, 0], [1, 1, 1, 1], 4, 4, 64, -1),  # decode, MHA
    ([12, 2], [1, 1], 6, 2, 16, 4),  # decode, window
    ([6, 0], [5, 9], 4, 1, 8, 3),  # extend, window, MQA
    ([40], [1], 2, 1, 128, 17),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", CASES)
def test_backend_matches_naive(backend: str, dtype: torch.dtype, case: Any) -> None:
    prefix, ext, hq, hkv, d, window = case
    num_slots, layers = 256, 2
    pool = KVPool(num_slots, layers, hkv, d, dtype)
    req_pool = ReqToTokenPool(6, 128)
    batch, rows = make_batch(prefix, ext, req_pool, num_slots, seed=sum(prefix) + hq)
    g = torch.Generator().manual_seed(7)
    # Prefix KV already in the pool (written as an earlier step would have).
    layer = 1
    for row, p in zip(rows, prefix, strict=True):
        slots = req_pool.req_to_token[row, :p].long()
        pool.k_buffers[layer][slots] = torch.randn(p, hkv, d, generator=g).to(dtype)
        pool.v_buffers[layer][slots] = torch.randn(p, hkv, d, generator=g).to(dtype)
    t = batch.num_tokens
    q = torch.randn(t, hq, d, generator=g).to(dtype)
    k = torch.randn(t, hkv, d, generator=g).to(dtype)
    v = torch.randn(t, hkv, d, generator=g).to(dtype)
    windows = [-1, window]
    attn = create_attention_backend(backend, req_pool.req_to_token, pool, windows)
    out = attn.forward(q, k, v, layer, batch)
    assert out.shape == q.shape and out.dtype == dtype
    # The new K/V landed at out_cache_loc.
    torch.testing.assert_close(pool.k_buffers[layer][batch.out_cache_loc], k, atol=0, rtol=0)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    start = 0
    for row, p, e in zip(rows, prefix, ext, strict=True):
        slots = req_pool.req_to_token[row, : p + e].long()
        keys, vals = pool.k_buffers[layer][slots], pool.v_buffers[layer][slots]
        for j in range(e):
            want = naive(q[start + j], keys, vals, p + j, window)
            torch.testing.assert_close(out[start + j].double(), want, atol=tol, rtol=tol)
        start += e


def test_bad_shapes_raise() -> None:
    pool = KVPool(32, 1, 2, 16, torch.float32)
    req_pool = ReqToTokenPool(2, 16)
    batch, _ = make_batch([0], [3], req_pool, 32, seed=0)
    attn = create_attention_backend("torch", req_pool.req_to_token, pool, [-1])
    with pytest.raises(ValueError, match="q must be"):
        attn.forward(torch.randn(3, 3, 16), torch.randn(3, 2, 16), torch.randn(3, 2, 16), 0, batch)
    with pytest.raises(ValueError, match="k and v"):
        attn.forward(torch.randn(3, 4, 16), torch.randn(3, 1, 16), torch.randn(3, 2, 16), 0, batch)
    with pytest.raises(ValueError, match="attention backend"):
        create_attention_backend("flash", req_pool.req_to_token, pool, [-1])


def test_native_backend_unavailable_is_clear() -> None:
    if native_attention_available():
        pytest.skip("native attention kernels are built")
    pool = KVPool(8, 1, 1, 8, torch.float32)
    with pytest.raises(RuntimeError, match="native attention backend"):
        create_attention_backend("native", ReqToTokenPool(1, 8).req_to_token, pool, [-1])
