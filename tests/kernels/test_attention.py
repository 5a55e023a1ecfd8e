"""Native paged attention (store_kv, decode, extend) against plain-PyTorch references."""

from __future__ import annotations

import math

import pytest
import torch

from isa_builds import isa_fixture
from radixserve import _C

TOL = {torch.float32: dict(atol=2e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}
# (q dtype, KV cache dtype): a bfloat16 cache under fp32 queries (--kv-cache-dtype bfloat16) is
# read as fp32, so it meets the fp32 tolerance against the upcast cache.
DTYPE_PAIRS = [
    (torch.float32, torch.float32),
    (torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.bfloat16),
]


isa = isa_fixture(_C.set_isa)


class Paged:
    """A KV pool with requests scattered over random slots and random req_to_token rows."""

    def __init__(
        self, seq_lens: list[int], hkv: int, d: int, dtype: torch.dtype, g: torch.Generator
    ) -> None:
        total = sum(seq_lens)
        self.num_slots = total + 7
        self.max_ctx = max(seq_lens) + 3
        self.k_cache = torch.randn(self.num_slots, hkv, d, generator=g).to(dtype)
        self.v_cache = torch.randn(self.num_slots, hkv, d, generator=g).to(dtype)
        max_reqs = len(seq_lens) + 2
        # Unused table entries hold valid but wrong slots: reading them would change results.
        self.req_to_token = torch.randint(
            0, self.num_slots, (max_reqs, self.max_ctx), generator=g, dtype=torch.int32
        )
        rows = torch.randperm(max_reqs, generator=g)[: len(seq_lens)]
        perm = torch.randperm(self.num_slots - 1, generator=g)[:total].to(torch.int32) + 1
        off = 0
        for r, n in zip(rows.tolist(), seq_lens, strict=True):
            self.req_to_token[r, :n] = perm[off : off + n]
            off += n
        self.req_pool_indices = rows.to(torch.int64)
        self.seq_lens = torch.tensor(seq_lens, dtype=torch.int64)

    def kv(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        slots = self.req_to_token[self.req_pool_indices[b], : self.seq_lens[b]].long()
        return self.k_cache[slots].float(), self.v_cache[slots].float()


def ref_attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, scale: float, window: int
) -> torch.Tensor:
    """q [n, Hq, D] at positions pos [n]; k, v [L, Hkv, D] at positions 0..L-1."""
    g = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(g, dim=1)
    v = v.repeat_interleave(g, dim=1)
    s = torch.einsum("nhd,lhd->hnl", q.float(), k) * scale
    kpos = torch.arange(k.shape[0])
    mask = kpos[None, :] <= pos[:, None]
    if window > 0:
        mask &= kpos[None, :] > pos[:, None] - window
    s = s.masked_fill(~mask[None], float("-inf"))
    return torch.einsum("hnl,lhd->nhd", torch.softmax(s, dim=-1), v)


DECODE_CASES = [
    # (seq_lens, hq, hkv, d, window)
    ([1], 4, 4, 64, -1),
    ([5, 1, 17], 9, 3, 64, -1),
    ([33, 64, 7, 2, 100, 31, 1, 9, 40], 8, 2, 128, -1),
    ([300, 77], 12, 3, 256, -1),
    ([1100], 9, 3, 64, -1),  # long single request: split into flash-decoding chunks
    ([700, 3], 4, 1, 64, 100),
    ([50, 9, 1], 6, 2, 80, 8),  # odd head_dim: the portable kernel
    ([129], 2, 2, 128, 1),
]


@pytest.mark.parametrize("dtype, kv_dtype", DTYPE_PAIRS)
@pytest.mark.parametrize("case", DECODE_CASES)
def test_decode_attention(isa: str, dtype: torch.dtype, kv_dtype: torch.dtype, case: tuple) -> None:
    seq_lens, hq, hkv, d, window = case
    g = torch.Generator().manual_seed(hash((tuple(seq_lens), hq, d)) % 2**31)
    p = Paged(seq_lens, hkv, d, kv_dtype, g)
    q = torch.randn(len(seq_lens), hq, d, generator=g).to(dtype)
    out = torch.full_like(q, float("nan"))
    scale = 1.0 / math.sqrt(d)
    _C.decode_attention(
        out, q, p.k_cache, p.v_cache, p.req_to_token, p.req_pool_indices, p.seq_lens, scale, window
    )
    for b, n in enumerate(seq_lens):
        k, v = p.kv(b)
        ref = ref_attend(q[b : b + 1], k, v, torch.tensor([n - 1]), scale, window)[0]
        torch.testing.assert_close(out[b].float(), ref, **TOL[dtype])


EXTEND_CASES = [
    # (seq_lens, extend_lens, hq, hkv, d, window)
    ([1], [1], 2, 2, 64, -1),
    ([7, 20, 3], [7, 5, 1], 9, 3, 64, -1),
    ([100, 33, 65, 1, 9], [31, 33, 2, 1, 0], 8, 2, 128, -1),
    ([64, 41], [64, 13], 12, 3, 256, -1),
    ([150, 70, 5], [80, 1, 5], 4, 1, 64, 16),
    ([37, 12], [30, 12], 6, 6, 80, -1),
    ([60], [45], 8, 2, 64, 1),
    # The blocked kernels' tiles (72 rows = 8 queries of 9 heads on AVX2, 144 on AVX-512) and
    # key blocks (32): lengths one off a tile or block, one-token extends behind long prefixes,
    # a window reaching back across several tiles, head_dim not a multiple of the vector.
    ([71, 17, 9, 1200], [71, 17, 9, 1], 9, 3, 64, -1),
    ([1100, 300, 33], [37, 256, 32], 9, 3, 64, -1),
    ([145, 1057], [145, 33], 9, 3, 64, 50),
    ([73, 40], [73, 40], 1, 1, 64, -1),
    ([90, 200], [61, 129], 32, 1, 64, 33),
    ([66, 35], [66, 3], 4, 2, 36, -1),
]


@pytest.mark.parametrize("dtype, kv_dtype", DTYPE_PAIRS)
@pytest.mark.parametrize("case", EXTEND_CASES)
def test_extend_attention(isa: str, dtype: torch.dtype, kv_dtype: torch.dtype, case: tuple) -> None:
    seq_lens, ext, hq, hkv, d, window = case
    g = torch.Generator().manual_seed(hash((tuple(seq_lens), tuple(ext), d)) % 2**31)
    p = Paged(seq_lens, hkv, d, kv_dtype, g)
    t = sum(ext)
    # Requests' tokens packed in a shuffled order, to exercise extend_start_loc.
    order = torch.randperm(len(ext), generator=g).tolist()
    start = [0] * len(ext)
    off = 0
    for b in order:
        start[b] = off
        off += ext[b]
    q = torch.randn(t, hq, d, generator=g).to(dtype)
    out = torch.full_like(q, float("nan"))
    scale = 0.7 / math.sqrt(d)
    _C.extend_attention(
        out,
        q,
        p.k_cache,
        p.v_cache,
        p.req_to_token,
        p.req_pool_indices,
        p.seq_lens,
        torch.tensor(ext),
        torch.tensor(start),
        scale,
        window,
    )
    for b, (n, e) in enumerate(zip(seq_lens, ext, strict=True)):
        if e == 0:
            continue
        k, v = p.kv(b)
        rows = slice(start[b], start[b] + e)
        ref = ref_attend(q[rows], k, v, torch.arange(n - e, n), scale, window)
        torch.testing.assert_close(out[rows].float(), ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_store_kv(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    k_cache = torch.randn(50, 3, 64, generator=g).to(dtype)
    v_cache = torch.randn(50, 3, 64, generator=g).to(dtype)
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    for loc_dtype in (torch.int64, torch.int32):
        loc = torch.randperm(49, generator=g)[:13].to(loc_dtype) + 1
        k = torch.randn(13, 3, 64, generator=g).to(dtype)
        v = torch.randn(13, 3, 64, generator=g).to(dtype)
        _C.store_kv(k_cache, v_cache, loc, k, v)
        k_ref[loc.long()] = k
        v_ref[loc.long()] = v
        assert torch.equal(k_cache, k_ref) and torch.equal(v_cache, v_ref)


def test_store_kv_rounds_fp32_into_bf16_like_torch() -> None:
    """fp32 K/V into a bfloat16 cache: round to nearest even, exactly as Tensor.to(bfloat16)."""
    g = torch.Generator().manual_seed(1)
    n, hkv, d = 70, 2, 32  # over 64 rows: the threaded path
    k_cache = torch.zeros(n + 5, hkv, d, dtype=torch.bfloat16)
    v_cache = torch.zeros(n + 5, hkv, d, dtype=torch.bfloat16)
    k = torch.randn(n, hkv, d, generator=g) * 10.0 ** torch.randint(-8, 8, (n, hkv, d), generator=g)
    v = torch.randn(n, hkv, d, generator=g)
    # Halfway cases (both tie directions), a subnormal, signed zero, inf and NaN.
    ties = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1e-40, -0.0, float("inf")])
    k.view(-1)[: ties.numel()] = ties
    v.view(-1)[0] = float("nan")
    loc = torch.randperm(n + 4, generator=g)[:n] + 1
    _C.store_kv(k_cache, v_cache, loc, k, v)
    assert torch.equal(k_cache[loc].view(torch.int16), k.to(torch.bfloat16).view(torch.int16))
    assert torch.isnan(v_cache[loc].view(-1)[0])
    torch.testing.assert_close(v_cache[loc][1:], v.to(torch.bfloat16)[1:], atol=0, rtol=0)


def test_store_then_extend_then_decode_matches_full_attention() -> None:
    """The engine's sequence: store a prompt's KV, prefill it, then decode one more token."""
    g = torch.Generator().manual_seed(3)
    hq, hkv, d, n = 9, 3, 64, 19
    k_cache = torch.zeros(64, hkv, d)
    v_cache = torch.zeros(64, hkv, d)
    table = torch.zeros(2, 32, dtype=torch.int32)
    slots = torch.randperm(63, generator=g)[: n + 1].to(torch.int32) + 1
    table[1, : n + 1] = slots
    k = torch.randn(n + 1, hkv, d, generator=g)
    v = torch.randn(n + 1, hkv, d, generator=g)
    q = torch.randn(n + 1, hq, d, generator=g)
    _C.store_kv(k_cache, v_cache, slots[:n].long(), k[:n], v[:n])
    out = torch.empty(n, hq, d)
    idx, scale = torch.tensor([1]), 0.125
    _C.extend_attention(
        out,
        q[:n],
        k_cache,
        v_cache,
        table,
        idx,
        torch.tensor([n]),
        torch.tensor([n]),
        torch.tensor([0]),
        scale,
    )
    _C.store_kv(k_cache, v_cache, slots[n:].long(), k[n:], v[n:])
    out1 = torch.empty(1, hq, d)
    _C.decode_attention(out1, q[n:], k_cache, v_cache, table, idx, torch.tensor([n + 1]), scale)
    ref = ref_attend(q, k, v, torch.arange(n + 1), scale, -1)
    torch.testing.assert_close(out, ref[:n], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out1, ref[n:], atol=2e-5, rtol=1e-5)


def _decode_args(**over: object) -> dict:
    args: dict = dict(
        out=torch.empty(2, 4, 64),
        q=torch.randn(2, 4, 64),
        k_cache=torch.randn(10, 2, 64),
        v_cache=torch.randn(10, 2, 64),
        req_to_token=torch.ones(3, 8, dtype=torch.int32),
        req_pool_indices=torch.tensor([0, 2]),
        seq_lens=torch.tensor([3, 8]),
        scale=0.1,
    )
    args.update(over)
    return args


@pytest.mark.parametrize(
    "over, match",
    [
        (dict(q=torch.randn(2, 4, 64).double()), "float32 or bfloat16"),
        (dict(q=torch.randn(2, 4, 64).bfloat16(), out=torch.empty(2, 4, 64).bfloat16()), "dtype"),
        (dict(k_cache=torch.randn(10, 2, 64).bfloat16()), "v_cache"),
        (dict(q=torch.randn(2, 4, 32), out=torch.empty(2, 4, 32)), "size"),
        (dict(out=torch.empty(2, 4, 64), q=torch.randn(2, 3, 64)), "shape"),
        (dict(q=torch.randn(2, 3, 64), out=torch.empty(2, 3, 64)), "multiple"),
        (dict(q=torch.randn(2, 64, 4).transpose(1, 2)), "contiguous"),
        (dict(req_to_token=torch.ones(3, 8, dtype=torch.int64)), "Int"),
        (dict(seq_lens=torch.tensor([3, 9])), "out of range"),
        (dict(seq_lens=torch.tensor([0, 2])), "at least"),
        (dict(req_pool_indices=torch.tensor([0, 3])), "out of range"),
        (dict(req_to_token=torch.full((3, 8), 10, dtype=torch.int32)), "outside the cache"),
        (dict(req_to_token=torch.full((3, 8), -1, dtype=torch.int32)), "outside the cache"),
        (dict(seq_lens=torch.tensor([3])), "size"),
        (dict(scale=float("nan")), "finite"),
        (dict(k_cache=torch.randn(10, 2, 64, device="meta")), "CPU"),
    ],
)
def test_decode_rejects_bad_input(over: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _C.decode_attention(**_decode_args(**over))


def test_extend_and_store_reject_bad_input() -> None:
    a = _decode_args()
    common = (
        a["q"],
        a["k_cache"],
        a["v_cache"],
        a["req_to_token"],
        a["req_pool_indices"],
        a["seq_lens"],
    )
    with pytest.raises(ValueError, match="extend_seq_lens"):
        _C.extend_attention(a["out"], *common, torch.tensor([4, 1]), torch.tensor([0, 1]), 0.1)
    with pytest.raises(ValueError, match="outside q"):
        _C.extend_attention(a["out"], *common, torch.tensor([1, 2]), torch.tensor([0, 1]), 0.1)
    kc, vc = a["k_cache"], a["v_cache"]
    with pytest.raises(ValueError, match="out of range"):
        _C.store_kv(kc, vc, torch.tensor([10]), torch.randn(1, 2, 64), torch.randn(1, 2, 64))
    with pytest.raises(ValueError, match="size"):
        _C.store_kv(kc, vc, torch.tensor([1, 2]), torch.randn(1, 2, 64), torch.randn(1, 2, 64))
    with pytest.raises(ValueError, match="dtype"):
        _C.store_kv(
            kc, vc, torch.tensor([1]), torch.randn(1, 2, 64).bfloat16(), torch.randn(1, 2, 64)
        )
