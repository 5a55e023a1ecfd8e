"""The native sampler (radixserve._C.sample) against the plain-PyTorch definition sample_ref."""

from __future__ import annotations

from typing import Optional

import pytest
import torch

from isa_builds import isa_fixture
from radixserve import _C
from radixserve.layers.backend import set_kernel_backend
from radixserve.layers.sampler import (
    Sampler,
    sample_native,
    sample_ref,
    uniform,
    uniforms,
    unpack_bitmask,
)
from radixserve.layers.sampling_info import SampleOutput, SamplingBatchInfo

isa = isa_fixture(_C.sampling_set_isa)


def make_info(
    bs: int,
    vocab: int,
    gen: torch.Generator,
    *,
    greedy_frac: float = 0.2,
    penalties: bool = False,
    bias: bool = False,
    logprobs: Optional[list[int]] = None,
) -> SamplingBatchInfo:
    def pick(frac: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(torch.rand(bs, generator=gen) < frac, a, b)

    temps = pick(greedy_frac, torch.zeros(bs), torch.rand(bs, generator=gen) * 1.5 + 0.05)
    top_ps = pick(0.5, torch.rand(bs, generator=gen) * 0.98 + 0.02, torch.ones(bs))
    top_ks = pick(0.5, torch.randint(1, 64, (bs,), generator=gen), torch.full((bs,), 1 << 30))
    min_ps = pick(0.3, torch.rand(bs, generator=gen) * 0.4, torch.zeros(bs))
    info = SamplingBatchInfo(
        temperatures=temps.float(),
        top_ps=top_ps.float(),
        top_ks=top_ks.clamp(max=(1 << 30)).int(),
        min_ps=min_ps.float(),
        seeds=torch.randint(-(2**62), 2**62, (bs,), generator=gen),
        steps=torch.randint(0, 10_000, (bs,), generator=gen),
        is_all_greedy=bool((temps == 0).all()),
    )
    if penalties:
        counts = torch.randint(0, 4, (bs, vocab), generator=gen, dtype=torch.int32)
        counts[torch.rand(bs, vocab, generator=gen) < 0.9] = 0
        info.output_token_counts = counts
        info.frequency_penalties = (torch.rand(bs, generator=gen) * 4 - 2).float()
        info.presence_penalties = (torch.rand(bs, generator=gen) * 4 - 2).float()
        info.repetition_penalties = (torch.rand(bs, generator=gen) * 1.9 + 0.1).float()
    if bias:
        b = torch.zeros(bs, vocab)
        b[torch.rand(bs, vocab, generator=gen) < 0.05] = float("-inf")
        b += (torch.rand(bs, vocab, generator=gen) < 0.05) * torch.randn(bs, vocab, generator=gen)
        info.logit_bias = b
    if logprobs is not None:
        info.return_logprob = True
        info.top_logprobs_nums = logprobs
    return info


def random_bitmask(bs: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """Packed int32 [bs, ceil(vocab / 32)] masks: per row one of all ones (a free request),
    random bits, or a grammar-like few allowed tokens (bits past vocab set at random too)."""
    words = (vocab + 31) // 32
    bits = torch.randint(-(2**31), 2**31, (bs, words), generator=gen, dtype=torch.int64)
    mask = bits.to(torch.int32)
    for r in range(bs):
        kind = r % 3
        if kind == 0:
            mask[r] = -1
        elif kind == 2:
            mask[r] &= torch.randint(-(2**31), 2**31, (words,), generator=gen).to(torch.int32)
            mask[r] &= torch.randint(-(2**31), 2**31, (words,), generator=gen).to(torch.int32)
            mask[r, torch.rand(words, generator=gen) < 0.8] = 0
    return mask


def assert_same(a: SampleOutput, b: SampleOutput) -> None:
    assert torch.equal(a.next_token_ids, b.next_token_ids)
    if a.logprobs is None:
        assert b.logprobs is None
        return
    assert b.logprobs is not None and b.top_logprobs_vals is not None
    assert a.top_logprobs_vals is not None
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=2e-5, rtol=1e-5)
    assert torch.equal(a.top_logprobs_ids, b.top_logprobs_ids)
    torch.testing.assert_close(a.top_logprobs_vals, b.top_logprobs_vals, atol=2e-5, rtol=1e-5)


def test_rng_matches_python() -> None:
    gen = torch.Generator().manual_seed(1)
    seeds = torch.cat(
        [
            torch.tensor([0, -1, 2**63 - 1, -(2**63)]),
            torch.randint(-(2**62), 2**62, (60,), generator=gen),
        ]
    )
    steps = torch.cat(
        [torch.tensor([0, 0, 5, 2**40]), torch.randint(0, 2**31, (60,), generator=gen)]
    )
    native = _C.sampling_uniforms(seeds, steps)
    assert torch.equal(native, uniforms(seeds, steps))
    assert bool(((native >= 0) & (native < 1)).all())
    assert uniform(7, 3) != uniform(7, 4) != uniform(8, 3)


@pytest.mark.parametrize(
    "bs,vocab,scale,penalties,bias",
    [
        (1, 1, 1.0, False, False),
        (5, 7, 1.0, True, True),
        (16, 100, 3.0, False, True),
        (16, 1000, 1.0, True, False),
        (12, 4099, 5.0, True, True),
        (8, 3000, 0.3, False, False),
        (3, 49152, 4.0, True, True),
    ],
)
def test_native_matches_reference(
    isa: str, bs: int, vocab: int, scale: float, penalties: bool, bias: bool
) -> None:
    for trial in range(3):
        gen = torch.Generator().manual_seed(1000 * vocab + trial)
        logits = torch.randn(bs, vocab, generator=gen) * scale
        if trial == 2:  # exact ties in the logits: the (z desc, id asc) order decides
            logits = torch.round(logits)
        info = make_info(bs, vocab, gen, penalties=penalties, bias=bias, logprobs=[0, 3][:bs])
        assert_same(sample_ref(logits, info), sample_native(logits, info))


@pytest.mark.parametrize("vocab", [1, 5, 31, 32, 33, 63, 100, 1001, 4099, 49157])
def test_apply_token_bitmask_matches_reference(isa: str, vocab: int) -> None:
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(7, vocab, generator=gen)
    mask = random_bitmask(7, vocab, gen)
    want = logits.masked_fill(~unpack_bitmask(mask, vocab), float("-inf"))
    got = logits.clone()
    _C.apply_token_bitmask_(got, mask)
    assert torch.equal(got, want)
    assert torch.equal(got[0], logits[0])  # an all-ones row is left alone


def test_apply_token_bitmask_rejects_bad_input() -> None:
    logits = torch.randn(2, 40)
    with pytest.raises(ValueError, match="token_bitmask must have shape"):
        _C.apply_token_bitmask_(logits, torch.zeros(2, 1, dtype=torch.int32))
    with pytest.raises(ValueError, match="int32"):
        _C.apply_token_bitmask_(logits, torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="logits"):
        _C.apply_token_bitmask_(logits.double(), torch.zeros(2, 2, dtype=torch.int32))


def test_unpack_bitmask_bit_order() -> None:
    mask = torch.tensor([[1 - 2**31, 2], [0, -1]], dtype=torch.int32)  # bits 0 and 31; bit 33
    allowed = unpack_bitmask(mask, 40)
    assert allowed[0].nonzero().flatten().tolist() == [0, 31, 33]
    assert allowed[1].nonzero().flatten().tolist() == list(range(32, 40))


@pytest.mark.parametrize(
    "bs,vocab,penalties,bias",
    [(1, 1, False, False), (6, 33, True, True), (9, 95, False, True), (12, 4099, True, False),
     (6, 3001, False, False), (4, 49157, True, True)],
)  # fmt: skip
def test_token_bitmask_matches_reference(
    isa: str, bs: int, vocab: int, penalties: bool, bias: bool
) -> None:
    """The grammar mask inside the sampler: after penalties and bias, before temperature and
    truncation; masked tokens are never drawn."""
    for trial in range(3):
        gen = torch.Generator().manual_seed(7000 + 10 * vocab + trial)
        logits = torch.randn(bs, vocab, generator=gen) * 3
        info = make_info(bs, vocab, gen, penalties=penalties, bias=bias, logprobs=[0, 2][:bs])
        info.token_bitmask = random_bitmask(bs, vocab, gen)
        out = sample_native(logits, info)
        assert_same(sample_ref(logits, info), out)
        allowed = unpack_bitmask(info.token_bitmask, vocab)
        picked = allowed.gather(1, out.next_token_ids[:, None])[:, 0]
        assert bool((picked | ~allowed.any(dim=1)).all())


def test_greedy_fast_path(isa: str) -> None:
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(9, 5000, generator=gen)
    info = make_info(9, 5000, gen, greedy_frac=1.0, penalties=True, bias=True, logprobs=[2])
    assert info.is_all_greedy
    out = sample_native(logits, info)
    assert_same(sample_ref(logits, info), out)
    assert torch.equal(out.next_token_ids, sample_ref(logits, info).next_token_ids)


def _draws(logits: torch.Tensor, n: int, **params: float) -> torch.Tensor:
    """n draws from one row: the row repeated with steps 0..n-1."""
    vocab = logits.shape[0]
    info = SamplingBatchInfo(
        temperatures=torch.full((n,), params.get("temperature", 1.0)),
        top_ps=torch.full((n,), params.get("top_p", 1.0)),
        top_ks=torch.full((n,), int(params.get("top_k", vocab)), dtype=torch.int32),
        min_ps=torch.full((n,), params.get("min_p", 0.0)),
        seeds=torch.full((n,), 1234, dtype=torch.int64),
        steps=torch.arange(n),
        is_all_greedy=False,
    )
    return sample_native(logits.expand(n, vocab).contiguous(), info).next_token_ids


def test_truncation_masks(isa: str) -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2000, generator=gen) * 2
    order = torch.sort(logits, descending=True, stable=True).indices
    assert set(_draws(logits, 3000, top_k=3).tolist()) == set(order[:3].tolist())
    probs = torch.softmax(logits.double(), 0)[order]
    nucleus = int((torch.cumsum(probs, 0) - probs < 0.5).sum())
    got = set(_draws(logits, 3000, top_p=0.5).tolist())
    assert got <= set(order[:nucleus].tolist()) and len(got) > nucleus // 2
    allowed = set(torch.nonzero(probs >= 0.2 * probs[0]).flatten().tolist())
    assert set(_draws(logits, 3000, min_p=0.2).tolist()) <= {int(order[i]) for i in allowed}
    assert set(_draws(logits, 200, top_k=1).tolist()) == {int(order[0])}


def test_distribution_matches_probabilities(isa: str) -> None:
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, 3.0, -4.0])
    t, top_p, n = 0.8, 0.9, 40_000
    probs = torch.softmax(logits.double() / t, 0)
    order = torch.sort(logits, descending=True, stable=True).indices
    ps = probs[order]
    keep = (torch.cumsum(ps, 0) - ps) < top_p
    expected = torch.zeros(8, dtype=torch.float64)
    expected[order[keep]] = ps[keep] / ps[keep].sum()
    counts = torch.bincount(_draws(logits, n, temperature=t, top_p=top_p), minlength=8).double()
    assert counts[expected == 0].sum() == 0
    nz = expected > 0
    chi2 = float((((counts - n * expected) ** 2)[nz] / (n * expected[nz])).sum())
    assert chi2 < 25.0, (chi2, counts / n, expected)  # df <= 7: p ~ 0.001


def test_seeded_rows_ignore_batch_composition(isa: str) -> None:
    gen = torch.Generator().manual_seed(11)
    big = make_info(24, 3000, gen, greedy_frac=0.0, penalties=True, bias=True)
    logits = torch.randn(24, 3000, generator=gen)
    full = sample_native(logits, big).next_token_ids
    for rows in ([5], [7, 2, 19], list(range(23, -1, -2))):
        idx = torch.tensor(rows)
        sub = SamplingBatchInfo(
            temperatures=big.temperatures[idx],
            top_ps=big.top_ps[idx],
            top_ks=big.top_ks[idx],
            min_ps=big.min_ps[idx],
            seeds=big.seeds[idx],
            steps=big.steps[idx],
            is_all_greedy=False,
            frequency_penalties=big.frequency_penalties[idx],  # type: ignore[index]
            presence_penalties=big.presence_penalties[idx],  # type: ignore[index]
            repetition_penalties=big.repetition_penalties[idx],  # type: ignore[index]
            output_token_counts=big.output_token_counts[idx],  # type: ignore[index]
            logit_bias=big.logit_bias[idx],  # type: ignore[index]
        )
        assert torch.equal(sample_native(logits[idx], sub).next_token_ids, full[idx])
    # A different step gives a fresh draw for most rows.
    big.steps = big.steps + 1
    assert (sample_native(logits, big).next_token_ids != full).any()


def test_logprobs_and_masked_tokens(isa: str) -> None:
    gen = torch.Generator().manual_seed(21)
    logits = torch.randn(6, 700, generator=gen) * 3
    info = make_info(6, 700, gen, greedy_frac=0.5, logprobs=[1, 5, 0])
    info.logit_bias = torch.zeros(6, 700)
    banned = torch.sort(logits, dim=-1, descending=True).indices[:, :4]
    info.logit_bias.scatter_(1, banned, float("-inf"))
    out = sample_native(logits, info)
    ref = torch.log_softmax(logits, -1)
    assert out.logprobs is not None and out.top_logprobs_ids is not None
    assert out.top_logprobs_vals is not None and out.top_logprobs_ids.shape == (6, 5)
    torch.testing.assert_close(out.logprobs, ref.gather(1, out.next_token_ids[:, None])[:, 0])
    torch.testing.assert_close(out.top_logprobs_ids, torch.topk(logits, 5, -1).indices)
    torch.testing.assert_close(out.top_logprobs_vals, torch.topk(ref, 5, -1).values)
    assert not (out.next_token_ids[:, None] == banned).any()
    # Every token masked: a defined answer (token 0) rather than a crash or NaN draw.
    info.logit_bias = torch.full((6, 700), float("-inf"))
    assert torch.equal(sample_native(logits, info).next_token_ids, torch.zeros(6, dtype=torch.long))
    assert_same(sample_ref(logits, info), sample_native(logits, info))


def _bad_cases() -> list[tuple[str, dict[str, object]]]:
    return [
        ("temperatures", {"temperatures": torch.tensor([-1.0, 1.0])}),
        ("top_ps", {"top_ps": torch.tensor([0.0, 1.0])}),
        ("top_ps", {"top_ps": torch.tensor([1.5, 1.0])}),
        ("min_ps", {"min_ps": torch.tensor([0.0, 1.5])}),
        ("top_ks", {"top_ks": torch.tensor([0, 3], dtype=torch.int32)}),
        ("top_ks", {"top_ks": torch.tensor([1, 3])}),  # int64, not int32
        ("seeds", {"seeds": torch.tensor([1, 2, 3])}),
        ("penalties need", {"frequency_penalties": torch.tensor([0.5, 0.5])}),
        (
            "repetition",
            {
                "repetition_penalties": torch.tensor([0.0, 1.0]),
                "output_token_counts": torch.zeros(2, 10, dtype=torch.int32),
            },
        ),
        ("logit_bias", {"logit_bias": torch.zeros(2, 9)}),
        ("output_token_counts", {"output_token_counts": torch.zeros(2, 10)}),
        ("token_bitmask", {"token_bitmask": torch.zeros(2, 2, dtype=torch.int32)}),
        ("token_bitmask", {"token_bitmask": torch.zeros(2, 1, dtype=torch.int64)}),
        ("exceeds", {"return_logprob": True, "top_logprobs_nums": [11]}),
        ("is_all_greedy", {"is_all_greedy": True}),
    ]


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_bad_input_raises(backend: str) -> None:
    def base(**kw: object) -> SamplingBatchInfo:
        fields: dict[str, object] = dict(
            temperatures=torch.tensor([0.0, 1.0]),
            top_ps=torch.ones(2),
            top_ks=torch.full((2,), 10, dtype=torch.int32),
            min_ps=torch.zeros(2),
            seeds=torch.tensor([1, 2]),
            steps=torch.tensor([0, 0]),
            is_all_greedy=False,
        )
        fields.update(kw)
        return SamplingBatchInfo(**fields)  # type: ignore[arg-type]

    sampler = Sampler()
    set_kernel_backend(backend)
    try:
        logits = torch.randn(2, 10)
        sampler.forward(logits, base())  # the base case is valid
        for match, kw in _bad_cases():
            with pytest.raises(ValueError, match=match):
                sampler.forward(logits, base(**kw))
        with pytest.raises(ValueError, match="logits"):
            sampler.forward(logits.double(), base())
        with pytest.raises(ValueError, match="logits"):
            sampler.forward(torch.randn(2, 10, 1), base())
    finally:
        set_kernel_backend("native")


def test_sampler_backends_agree() -> None:
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(10, 2048, generator=gen) * 2
    info = make_info(10, 2048, gen, penalties=True, bias=True, logprobs=[2])
    sampler = Sampler()
    try:
        set_kernel_backend("torch")
        ref = sampler.forward(logits, info)
    finally:
        set_kernel_backend("native")
    assert_same(ref, sampler.forward(logits, info))
