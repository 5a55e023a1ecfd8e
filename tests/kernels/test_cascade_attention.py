"""Cascade (shared-prefix) decode attention against the plain decode kernel and PyTorch."""

from __future__ import annotations

import math

import pytest
import torch

from isa_builds import isa_fixture
from radixserve import _C

# Cascade vs plain decode: the same math in a different order (fp32 rounding), bf16 outputs
# may differ by one bf16 step.
TOL = {torch.float32: dict(atol=2e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


isa = isa_fixture(_C.set_isa)


class SharedPaged:
    """Requests in groups: a group's members hold the same slots for their first P positions
    (random slots), then their own. Unused table entries hold valid but wrong slots."""

    def __init__(
        self,
        groups: list[tuple[int, list[int]]],
        hkv: int,
        d: int,
        dtype: torch.dtype,
        g: torch.Generator,
    ) -> None:
        """groups: (prefix_len, suffix lengths of the members); prefix_len -1 = not grouped."""
        total = sum(max(p, 0) + sum(sfx) for p, sfx in groups)
        self.num_slots = total + 5
        lens = [max(p, 0) + s for p, sfx in groups for s in sfx]
        self.max_ctx = max(lens) + 2
        self.k_cache = torch.randn(self.num_slots, hkv, d, generator=g).to(dtype)
        self.v_cache = torch.randn(self.num_slots, hkv, d, generator=g).to(dtype)
        max_reqs = len(lens) + 3
        self.req_to_token = torch.randint(
            0, self.num_slots, (max_reqs, self.max_ctx), generator=g, dtype=torch.int32
        )
        perm = (torch.randperm(self.num_slots - 1, generator=g)[:total] + 1).to(torch.int32)
        rows = torch.randperm(max_reqs, generator=g)[: len(lens)].tolist()
        plens: list[int] = []
        off, b = 0, 0
        members: list[tuple[int, int, int]] = []  # (batch index, group id, suffix)
        for p, sfx in groups:
            gid = -1
            if p >= 0:
                gid = len(plens)
                plens.append(p)
            shared = perm[off : off + max(p, 0)]
            off += max(p, 0)
            for s in sfx:
                r = rows[b]
                self.req_to_token[r, : max(p, 0)] = shared
                self.req_to_token[r, max(p, 0) : max(p, 0) + s] = perm[off : off + s]
                off += s
                members.append((b, gid, s))
                b += 1
        # Shuffle the batch order so group members are not adjacent.
        order = torch.randperm(len(lens), generator=g).tolist()
        self.req_pool_indices = torch.tensor([rows[i] for i in order], dtype=torch.int64)
        self.seq_lens = torch.tensor([lens[i] for i in order], dtype=torch.int64)
        self.group_ids = torch.tensor([members[i][1] for i in order], dtype=torch.int64)
        self.group_prefix_lens = torch.tensor(plens, dtype=torch.int64)

    def args(self) -> tuple[torch.Tensor, ...]:
        return (self.k_cache, self.v_cache, self.req_to_token, self.req_pool_indices, self.seq_lens)


def ref_decode(p: SharedPaged, q: torch.Tensor, scale: float) -> torch.Tensor:
    out = torch.empty(q.shape, dtype=torch.float32)
    hkv = p.k_cache.shape[1]
    for b in range(q.shape[0]):
        slots = p.req_to_token[p.req_pool_indices[b], : p.seq_lens[b]].long()
        k = p.k_cache[slots].float().repeat_interleave(q.shape[1] // hkv, dim=1)
        v = p.v_cache[slots].float().repeat_interleave(q.shape[1] // hkv, dim=1)
        s = torch.einsum("hd,lhd->hl", q[b].float(), k) * scale
        out[b] = torch.einsum("hl,lhd->hd", torch.softmax(s, dim=-1), v)
    return out


CASES = [
    # (groups [(prefix, [suffix lens])], hq, hkv, d)
    ([(1024, [32, 100, 256, 1])], 9, 3, 64),
    ([(300, [1, 1, 1]), (-1, [40, 7]), (77, [13, 200])], 8, 2, 128),
    ([(33, [5]), (513, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17])], 4, 4, 64),
    ([(257, [31, 0, 64]), (0, [9, 9])], 12, 3, 256),  # empty suffix, zero-length prefix
    ([(95, [3, 44])], 6, 2, 80),  # head_dim 80: avx512 falls back to the portable kernels
    ([(-1, [50, 1])], 2, 1, 64),  # nothing shared: plain decode
    ([(1100, [2] * 30)], 16, 2, 64),  # many rows per kv head
    # Prefix tiles of 48 query rows: 17 members x 3 heads = 51 rows (a full tile and a partial
    # one), a one-row group, prefixes shorter than / not a multiple of the 32-key block, and a
    # suffix block of 16 keys with a tail.
    ([(97, [1, 17, 33] + [3] * 14), (31, [40])], 9, 3, 64),
    ([(65, [16, 15]), (1, [2])], 3, 1, 128),
    ([(40, [1] * 16)], 6, 3, 64),  # 32 rows: a 3-vector and a 1-vector sub-tile (AVX2)
]


# (q dtype, KV cache dtype): fp32 queries over a bfloat16 cache (--kv-cache-dtype bfloat16).
@pytest.mark.parametrize(
    "dtype, kv_dtype",
    [
        (torch.float32, torch.float32),
        (torch.bfloat16, torch.bfloat16),
        (torch.float32, torch.bfloat16),
    ],
)
@pytest.mark.parametrize("case", CASES)
def test_cascade_matches_plain_decode(
    isa: str, dtype: torch.dtype, kv_dtype: torch.dtype, case: tuple
) -> None:
    groups, hq, hkv, d = case
    g = torch.Generator().manual_seed(hash((str(groups), hq, d)) % 2**31)
    p = SharedPaged(groups, hkv, d, kv_dtype, g)
    bs = p.seq_lens.shape[0]
    q = torch.randn(bs, hq, d, generator=g).to(dtype)
    scale = 1.0 / math.sqrt(d)
    out = torch.full_like(q, float("nan"))
    _C.cascade_decode_attention(out, q, *p.args(), p.group_ids, p.group_prefix_lens, scale)
    plain = torch.full_like(q, float("nan"))
    _C.decode_attention(plain, q, *p.args(), scale)
    torch.testing.assert_close(out.float(), plain.float(), **TOL[dtype])
    torch.testing.assert_close(out.float(), ref_decode(p, q, scale), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cascade_matches_plain_when_scores_span_beyond_exp_range(
    isa: str, dtype: torch.dtype
) -> None:
    """Scores hundreds apart: most softmax terms fall below e^-87, which the vectorised cascade
    kernels give as ~1e-38 instead of 0 (a cheaper exponential); outputs still match the plain
    kernel and PyTorch, in the prefix tiles (with a partial tile) and the suffix blocks."""
    g = torch.Generator().manual_seed(7)
    p = SharedPaged([(700, [1, 45, 130] + [5] * 14), (33, [64])], 3, 64, dtype, g)
    bs = p.seq_lens.shape[0]
    q = (torch.randn(bs, 9, 64, generator=g) * 40).to(dtype)
    scale = 1.0 / 8.0
    out = torch.full_like(q, float("nan"))
    _C.cascade_decode_attention(out, q, *p.args(), p.group_ids, p.group_prefix_lens, scale)
    plain = torch.full_like(q, float("nan"))
    _C.decode_attention(plain, q, *p.args(), scale)
    # Scores of magnitude ~100 carry ~1e-5 of fp32 rounding into every weight (score - max is
    # rounded at that magnitude), differently in each summation order: the same outputs as the
    # plain kernel and PyTorch, to a looser bound than the other cases (the base build's cascade
    # kernels, with the full exponential, differ from the plain kernel by the same 4.8e-5 here).
    tol = TOL[dtype] if dtype == torch.bfloat16 else dict(atol=2e-4, rtol=2e-2)
    torch.testing.assert_close(out.float(), plain.float(), **tol)
    torch.testing.assert_close(out.float(), ref_decode(p, q, scale), **tol)


def test_sliding_window_falls_back_to_plain(isa: str) -> None:
    g = torch.Generator().manual_seed(5)
    p = SharedPaged([(200, [10, 30])], 2, 64, torch.float32, g)
    q = torch.randn(2, 4, 64, generator=g)
    out, plain = torch.empty_like(q), torch.empty_like(q)
    _C.cascade_decode_attention(out, q, *p.args(), p.group_ids, p.group_prefix_lens, 0.1, 50)
    _C.decode_attention(plain, q, *p.args(), 0.1, 50)
    assert torch.equal(out, plain)


def test_wrong_grouping_raises() -> None:
    g = torch.Generator().manual_seed(6)
    p = SharedPaged([(64, [3]), (64, [4])], 1, 64, torch.float32, g)
    q = torch.randn(2, 2, 64, generator=g)
    out = torch.empty_like(q)
    # Two requests with different prefixes put in one group.
    with pytest.raises(ValueError, match="does not share"):
        _C.cascade_decode_attention(
            out, q, *p.args(), torch.tensor([0, 0]), torch.tensor([64]), 0.1
        )
    with pytest.raises(ValueError, match="out of range"):
        _C.cascade_decode_attention(
            out, q, *p.args(), torch.tensor([0, 2]), torch.tensor([64, 64]), 0.1
        )
    with pytest.raises(ValueError, match="must be in"):
        _C.cascade_decode_attention(
            out, q, *p.args(), torch.tensor([0, -1]), torch.tensor([100]), 0.1
        )
