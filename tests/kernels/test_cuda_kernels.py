"""The CUDA kernels (`radixserve._C.*_cuda`) against the PyTorch references of the CPU tests.

They skip unless torch sees a CUDA device and `_C` was built with CUDA (`_C.has_cuda`): CI has no
GPU (tools/compile_cuda.sh compile-checks the kernels there); tools/gpu_check.sh runs them on a lent
GPU machine (benchmarks/results/gpu.md). References are imported from the CPU test modules inside
the tests, so that a machine without a GPU only skips.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from radixserve import _C

CUDA_OK = bool(getattr(_C, "has_cuda", False)) and torch.cuda.is_available()
SKIP_REASON = (
    f"needs an NVIDIA GPU and radixserve._C built with CUDA "
    f"(torch.cuda.is_available()={torch.cuda.is_available()}, "
    f"_C.has_cuda={getattr(_C, 'has_cuda', None)}); tools/compile_cuda.sh compile-checks them"
)
needs_cuda = pytest.mark.skipif(not CUDA_OK, reason=SKIP_REASON)
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
TOL = {
    torch.float32: dict(atol=2e-5, rtol=1e-5),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
}
HEAD_DIMS = (32, 64, 96, 128, 256)  # the head dims the CUDA attention is instantiated for


def cpu_tests(name: str) -> ModuleType:
    """A CPU test module of this folder (its references are shared with these tests)."""
    here = str(Path(__file__).parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return __import__(name)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.cpu().float(), expected.cpu().float(), **TOL[actual.dtype])


def test_cuda_bindings_match_the_build() -> None:
    """has_cuda is a bool, the `_cuda` ops exist exactly when it is true, and need a CUDA torch."""
    names = {n for n in dir(_C) if n.endswith("_cuda") and n != "has_cuda"}
    assert isinstance(_C.has_cuda, bool)
    if _C.has_cuda:
        assert torch.version.cuda is not None
        assert {
            "store_kv_cuda",
            "decode_attention_cuda",
            "cascade_decode_attention_cuda",
            "sample_cuda",
        } <= names
    else:
        assert names == set()


def _cuda_paged(ta: ModuleType, seq_lens: list[int], hkv: int, d: int, dtype: torch.dtype):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(hash((tuple(seq_lens), hkv, d)) % 2**31)
    p = ta.Paged(seq_lens, hkv, d, dtype, g)
    dev = {
        n: getattr(p, n).cuda()
        for n in ("k_cache", "v_cache", "req_to_token", "req_pool_indices", "seq_lens")
    }
    return p, dev, g


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_attention_cuda(dtype: torch.dtype) -> None:
    ta = cpu_tests("test_attention")
    for seq_lens, hq, hkv, d, window in ta.DECODE_CASES:
        if d not in HEAD_DIMS:
            continue
        p, dev, g = _cuda_paged(ta, seq_lens, hkv, d, dtype)
        q = torch.randn(len(seq_lens), hq, d, generator=g).to(dtype)
        out = torch.full_like(q, float("nan")).cuda()
        scale = 1.0 / math.sqrt(d)
        _C.decode_attention_cuda(out, q.cuda(), scale=scale, sliding_window=window, **dev)
        for b, n in enumerate(seq_lens):
            k, v = p.kv(b)
            ref = ta.ref_attend(q[b : b + 1], k, v, torch.tensor([n - 1]), scale, window)[0]
            close(out[b], ref)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cascade_decode_attention_cuda(dtype: torch.dtype) -> None:
    """Shared-prefix groups (shuffled members, ungrouped rows, empty suffixes) against the
    PyTorch reference and the CUDA plain decode kernel."""
    tc = cpu_tests("test_cascade_attention")
    for groups, hq, hkv, d in tc.CASES:
        if d not in HEAD_DIMS:
            continue
        g = torch.Generator().manual_seed(hash((str(groups), hq, d)) % 2**31)
        p = tc.SharedPaged(groups, hkv, d, dtype, g)
        q = torch.randn(p.seq_lens.shape[0], hq, d, generator=g).to(dtype)
        scale = 1.0 / math.sqrt(d)
        dev = [t.cuda() for t in p.args()]
        out = torch.full_like(q, float("nan")).cuda()
        _C.cascade_decode_attention_cuda(
            out, q.cuda(), *dev, p.group_ids.cuda(), p.group_prefix_lens.cuda(), scale
        )
        plain = torch.full_like(q, float("nan")).cuda()
        _C.decode_attention_cuda(plain, q.cuda(), *dev, scale)
        close(out, tc.ref_decode(p, q, scale))
        close(out, plain.cpu())


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_extend_attention_cuda(dtype: torch.dtype) -> None:
    ta = cpu_tests("test_attention")
    for seq_lens, ext, hq, hkv, d, window in ta.EXTEND_CASES:
        if d not in HEAD_DIMS:
            continue
        p, dev, g = _cuda_paged(ta, seq_lens, hkv, d, dtype)
        order = torch.randperm(len(ext), generator=g).tolist()
        start, off = [0] * len(ext), 0
        for b in order:
            start[b], off = off, off + ext[b]
        q = torch.randn(sum(ext), hq, d, generator=g).to(dtype)
        out = torch.full_like(q, float("nan")).cuda()
        scale = 0.7 / math.sqrt(d)
        _C.extend_attention_cuda(
            out,
            q.cuda(),
            extend_seq_lens=torch.tensor(ext).cuda(),
            extend_start_loc=torch.tensor(start).cuda(),
            scale=scale,
            sliding_window=window,
            **dev,
        )
        for b, (n, e) in enumerate(zip(seq_lens, ext, strict=True)):
            if e:
                k, v = p.kv(b)
                rows = slice(start[b], start[b] + e)
                close(
                    out[rows], ta.ref_attend(q[rows], k, v, torch.arange(n - e, n), scale, window)
                )


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_store_kv_cuda(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    k_cache = torch.randn(50, 3, 64, generator=g).to(dtype).cuda()
    v_cache = torch.randn(50, 3, 64, generator=g).to(dtype).cuda()
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    for loc_dtype in (torch.int64, torch.int32):
        loc = (torch.randperm(49, generator=g)[:13] + 1).to(loc_dtype).cuda()
        k = torch.randn(13, 3, 64, generator=g).to(dtype).cuda()
        v = torch.randn(13, 3, 64, generator=g).to(dtype).cuda()
        _C.store_kv_cuda(k_cache, v_cache, loc, k, v)
        k_ref[loc.long()], v_ref[loc.long()] = k, v
        assert torch.equal(k_cache, k_ref) and torch.equal(v_cache, v_ref)


@needs_cuda
def test_attention_cuda_rejects_bad_input() -> None:
    ta = cpu_tests("test_attention")
    p, dev, _ = _cuda_paged(ta, [5, 3], 2, 80, torch.float32)
    q = torch.randn(2, 4, 80).cuda()
    with pytest.raises(ValueError, match="head_dim"):
        _C.decode_attention_cuda(torch.empty_like(q), q, scale=0.1, **dev)
    p, dev, _ = _cuda_paged(ta, [5, 3], 2, 64, torch.float32)
    q = torch.randn(2, 4, 64)
    with pytest.raises(ValueError, match="CUDA tensor"):
        _C.decode_attention_cuda(torch.empty_like(q), q, scale=0.1, **dev)
    with pytest.raises(ValueError, match="dtype|must be"):
        _C.decode_attention_cuda(torch.empty(2, 4, 64).cuda(), q.cuda().half(), scale=0.1, **dev)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_norms_cuda(dtype: torch.dtype) -> None:
    tn = cpu_tests("test_norm_rope_act")
    g = torch.Generator().manual_seed(1)
    for n, h in [(1, 576), (7, 576), (3, 1), (5, 17), (2, 333), (9, 1024), (4, 4097)]:
        x = (torch.randn(n, h, generator=g) * 3).to(dtype)
        for w in (torch.randn(h, generator=g), torch.randn(h, generator=g).to(dtype)):
            out = torch.full_like(x, float("nan")).cuda()
            _C.rms_norm_cuda(out, x.cuda(), w.cuda(), 1e-6)
            close(out, tn.rms_ref(x, w, 1e-6))
        res = torch.randn(n, h, generator=g).to(dtype)
        w = torch.randn(h, generator=g)
        summed = (x.float() + res.float()).to(dtype)
        x2, res2 = x.cuda(), res.cuda()
        _C.fused_add_rms_norm_cuda(x2, res2, w.cuda(), 1e-5)
        assert torch.equal(res2.cpu(), summed)
        close(x2, tn.rms_ref(summed, w, 1e-5))


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neox", [True, False])
def test_rotary_embedding_cuda(dtype: torch.dtype, neox: bool) -> None:
    tn = cpu_tests("test_norm_rope_act")
    g = torch.Generator().manual_seed(2)
    for t, hq, hkv, d, rot in [
        (1, 9, 3, 64, 64),
        (5, 8, 2, 128, 128),
        (3, 4, 4, 80, 80),
        (4, 3, 1, 64, 32),
        (6, 2, 2, 6, 6),
    ]:
        cache = tn.cos_sin_cache(300, rot)
        pos = torch.randint(0, 300, (t,), generator=g)
        # q and k as views of one fused qkv tensor: strided token rows, k as [T, H, D].
        qkv = torch.randn(t, (hq + 2 * hkv) * d, generator=g).to(dtype)
        q, k, _ = qkv.split([hq * d, hkv * d, hkv * d], dim=-1)
        expected = qkv.clone()
        expected[:, : hq * d] = tn.rope_ref(pos, q, d, cache, neox)
        expected[:, hq * d : (hq + hkv) * d] = tn.rope_ref(pos, k, d, cache, neox)
        qkv_d = qkv.cuda()
        q_d, k_d, _ = qkv_d.split([hq * d, hkv * d, hkv * d], dim=-1)
        _C.rotary_embedding_cuda(pos.cuda(), q_d, k_d.view(t, hkv, d), d, cache.cuda(), neox)
        close(qkv_d, expected)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_and_mul_cuda(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    for n, i in [(1, 1536), (5, 1536), (3, 1), (4, 13), (9, 4096)]:
        x = (torch.randn(n, 2 * i, generator=g) * 4).to(dtype)
        x[0, 0] = -100.0  # silu -> -0 without NaN
        out = torch.full((n, i), float("nan"), dtype=dtype).cuda()
        _C.silu_and_mul_cuda(out, x.cuda())
        close(out, (F.silu(x[:, :i].float()) * x[:, i:].float()).to(dtype))


@needs_cuda
def test_greedy_sample_cuda_takes_the_first_maximum() -> None:
    g = torch.Generator().manual_seed(4)
    logits = torch.round(torch.randn(33, 5000, generator=g) * 2)  # many ties
    logits[3, 17] = float("nan")
    got = _C.greedy_sample_cuda(logits.cuda()).cpu()
    m = torch.nan_to_num(logits, nan=-math.inf).max(dim=1, keepdim=True).values
    first = (logits == m).int().argmax(dim=1)
    assert torch.equal(got, first)


def _sample_cuda(logits: torch.Tensor, info, top_n: int = -1) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    def dev(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.cuda()

    res = _C.sample_cuda(
        logits.cuda(),
        *(
            dev(getattr(info, n))
            for n in (
                "temperatures",
                "top_ps",
                "top_ks",
                "min_ps",
                "seeds",
                "steps",
                "frequency_penalties",
                "presence_penalties",
                "repetition_penalties",
                "output_token_counts",
                "logit_bias",
            )
        ),
        top_n,
        token_bitmask=dev(getattr(info, "token_bitmask", None)),
    )
    return [r.cpu() for r in res]


@needs_cuda
@pytest.mark.parametrize(
    "bs,vocab,scale,penalties,bias",
    [
        (5, 7, 1.0, True, True),
        (16, 1000, 1.0, True, False),
        (12, 4099, 5.0, True, True),
        (8, 3000, 0.3, False, False),
        (3, 49152, 4.0, True, True),
    ],
)
def test_sample_cuda_matches_reference(
    bs: int, vocab: int, scale: float, penalties: bool, bias: bool
) -> None:
    """Same definition as the CPU sampler; sums run in another order, so a row may differ only
    where a cut or the draw lies within rounding of a boundary (rare on random logits)."""
    from radixserve.layers.sampler import sample_ref

    ts = cpu_tests("test_sampling")
    rows = mismatches = 0
    for trial in range(4):
        gen = torch.Generator().manual_seed(1000 * vocab + trial)
        logits = torch.randn(bs, vocab, generator=gen) * scale
        if trial == 2:
            logits = torch.round(logits)  # exact ties: the (z desc, id asc) order decides
        info = ts.make_info(bs, vocab, gen, penalties=penalties, bias=bias, logprobs=[3] * bs)
        ref = sample_ref(logits, info)
        next_ids, lp, top_vals, top_ids = _sample_cuda(logits, info, 3)
        rows += bs
        mismatches += int((next_ids != ref.next_token_ids).sum())
        torch.testing.assert_close(lp, ref.logprobs, atol=1e-4, rtol=1e-4)
        assert torch.equal(top_ids, ref.top_logprobs_ids)
        torch.testing.assert_close(top_vals, ref.top_logprobs_vals, atol=1e-4, rtol=1e-4)
    assert mismatches <= max(1, rows // 50)


@needs_cuda
@pytest.mark.parametrize("vocab", [1, 33, 1001, 49157])
def test_token_bitmask_cuda(vocab: int) -> None:
    """The packed grammar mask on CUDA: in place, and inside the sampler (masked tokens are
    never drawn; greedy rows pick the CPU reference's token)."""
    from radixserve.layers.sampler import sample_ref, unpack_bitmask

    ts = cpu_tests("test_sampling")
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(9, vocab, generator=gen) * 3
    mask = ts.random_bitmask(9, vocab, gen)
    allowed = unpack_bitmask(mask, vocab)
    got = logits.cuda()
    _C.apply_token_bitmask_cuda(got, mask.cuda())
    assert torch.equal(got.cpu(), logits.masked_fill(~allowed, float("-inf")))
    info = ts.make_info(9, vocab, gen, greedy_frac=0.5, penalties=True, bias=True)
    info.token_bitmask = mask
    next_ids = _sample_cuda(logits, info)[0]
    assert bool((allowed.gather(1, next_ids[:, None])[:, 0] | ~allowed.any(dim=1)).all())
    greedy = info.temperatures == 0
    assert torch.equal(next_ids[greedy], sample_ref(logits, info).next_token_ids[greedy])
    with pytest.raises(ValueError, match="token_bitmask"):
        _C.apply_token_bitmask_cuda(got, mask[:, :1].contiguous().cuda() if vocab > 32 else
                                    mask.long().cuda())  # fmt: skip


@needs_cuda
def test_sample_cuda_truncation_and_seeds() -> None:
    from radixserve.layers.sampling_info import SamplingBatchInfo

    g = torch.Generator().manual_seed(5)
    vocab, n = 2000, 512
    row = torch.randn(vocab, generator=g) * 2
    logits = row.repeat(n, 1)
    info = SamplingBatchInfo(
        temperatures=torch.full((n,), 1.3),
        top_ps=torch.full((n,), 0.9),
        top_ks=torch.full((n,), 20, dtype=torch.int32),
        min_ps=torch.full((n,), 0.05),
        seeds=torch.full((n,), 1234, dtype=torch.int64),
        steps=torch.arange(n),
        is_all_greedy=False,
    )
    draws = _sample_cuda(logits, info)[0]
    assert set(draws.tolist()) <= set(row.topk(20).indices.tolist())
    assert len(set(draws.tolist())) > 3
    # The draw of a row depends only on its (seed, step), not on its neighbours.
    again = _sample_cuda(
        logits[:7].flip(0),
        SamplingBatchInfo(
            temperatures=info.temperatures[:7],
            top_ps=info.top_ps[:7],
            top_ks=info.top_ks[:7],
            min_ps=info.min_ps[:7],
            seeds=info.seeds[:7],
            steps=info.steps[:7].flip(0),
            is_all_greedy=False,
        ),
    )[0]
    assert torch.equal(again.flip(0), draws[:7])


@needs_cuda
def test_sample_cuda_rejects_bad_input() -> None:
    logits = torch.randn(2, 10).cuda()
    ones, ints = torch.ones(2).cuda(), torch.ones(2, dtype=torch.int32).cuda()
    longs = torch.zeros(2, dtype=torch.int64).cuda()
    with pytest.raises(ValueError, match="out of range"):
        _C.sample_cuda(logits, ones, torch.zeros(2).cuda(), ints, ones * 0, longs, longs)
    with pytest.raises(ValueError, match="CUDA tensor"):
        _C.sample_cuda(logits.cpu(), ones, ones, ints, ones * 0, longs, longs)
    with pytest.raises(ValueError, match="top_ks"):
        _C.sample_cuda(logits, ones, ones, ones, ones * 0, longs, longs)


def _forward_batch(seq_lens: list[int], ext: list[int], rows: list[int]):  # type: ignore[no-untyped-def]
    from radixserve.forward_batch import ForwardBatch

    t = sum(ext)
    start = [sum(ext[:i]) for i in range(len(ext))]
    return ForwardBatch(
        input_ids=torch.zeros(t, dtype=torch.int64),
        positions=torch.zeros(t, dtype=torch.int64),
        out_cache_loc=torch.zeros(t, dtype=torch.int64),
        req_pool_indices=torch.tensor(rows),
        seq_lens=torch.tensor(seq_lens),
        extend_prefix_lens=torch.tensor([n - e for n, e in zip(seq_lens, ext, strict=True)]),
        extend_seq_lens=torch.tensor(ext),
        extend_start_loc=torch.tensor(start),
        is_decode=all(e == 1 for e in ext),
        seq_lens_list=seq_lens,
    )


@pytest.mark.parametrize("with_host_lens", [True, False])
def test_flashinfer_page_table(with_host_lens: bool) -> None:
    """The CSR page table handed to FlashInfer lists each request's slots in position order."""
    from radixserve.layers.attention.flashinfer_backend import page_table

    g = torch.Generator().manual_seed(6)
    table = torch.randint(1, 1000, (6, 40), generator=g, dtype=torch.int32)
    seq_lens, ext, rows = [5, 1, 40, 17], [5, 1, 3, 0], [4, 0, 2, 5]
    batch = _forward_batch(seq_lens, ext, rows)
    if not with_host_lens:
        batch.seq_lens_list = None
    qo_indptr, kv_indptr, kv_indices = page_table(table, batch)
    assert qo_indptr.tolist() == [0, 5, 6, 9, 9]
    assert kv_indptr.tolist() == [0, 5, 6, 46, 63]
    expected = torch.cat([table[r, :n] for r, n in zip(rows, seq_lens, strict=True)])
    assert kv_indices.dtype == torch.int32 and torch.equal(kv_indices, expected)


def test_flashinfer_backend_needs_a_gpu_path() -> None:
    from radixserve.cache.memory_pool import KVPool
    from radixserve.layers.attention.flashinfer_backend import (
        FlashInferBackend,
        cuda_ops,
        load_flashinfer,
    )

    pool = KVPool(16, 2, 2, 64, torch.bfloat16)
    table = torch.zeros(2, 8, dtype=torch.int32)
    if load_flashinfer() is None and cuda_ops() is None:
        with pytest.raises(RuntimeError, match="FlashInfer"):
            FlashInferBackend(table, pool)
        return
    backend = FlashInferBackend(table, pool)  # a CPU pool is refused at forward time
    batch = _forward_batch([1], [1], [1])
    q, kv = torch.zeros(1, 4, 64), torch.zeros(1, 2, 64)
    with pytest.raises(ValueError, match="CUDA device"):
        backend.forward(q, kv, kv, 0, batch)
