"""The native draft verifier (radixserve._C.verify_drafts) against its PyTorch definition
(engine/speculative/rejection.py verify_ref): the same accepted drafts and next token for the
same inputs, on random batches of many shapes, every ISA build of this CPU."""

from __future__ import annotations

import pytest
import torch

# The sampler tests' random batches (this folder is on sys.path under pytest).
from test_sampling import make_info

from isa_builds import isa_fixture
from radixserve import _C
from radixserve.engine.speculative.rejection import verify_native, verify_ref
from radixserve.layers.sampler import sample_ref
from radixserve.layers.sampling_info import SamplingBatchInfo

isa = isa_fixture(_C.sampling_set_isa)


def _batch(
    n: int, vocab: int, max_draft: int, gen: torch.Generator, *, penalties: bool, bias: bool
) -> tuple[torch.Tensor, SamplingBatchInfo, list[list[int]]]:
    """Random requests (a fifth greedy) with 0..max_draft drafts; a draft is the row's argmax
    or a high logit often, so accepts, rejects and bonus draws all happen."""
    info = make_info(n, vocab, gen, penalties=penalties, bias=bias)
    drafts = [
        torch.randint(0, vocab, (int(k),), generator=gen).tolist()
        for k in torch.randint(0, max_draft + 1, (n,), generator=gen)
    ]
    rows = sum(1 + len(d) for d in drafts)
    logits = torch.randn(rows, vocab, generator=gen) * 3
    row = 0
    for d in drafts:
        for j, t in enumerate(d):
            r = float(torch.rand(1, generator=gen))
            if r < 0.5:
                logits[row + j, t] = logits[row + j].max() + 2 * r
            elif r < 0.6:
                logits[row + j, t] = float("-inf")  # never acceptable
        row += len(d) + 1
    return logits, info, drafts


@pytest.mark.parametrize(
    "n,vocab,max_draft,penalties,bias",
    [
        (1, 1, 3, False, False),
        (4, 7, 4, True, True),
        (9, 100, 5, False, False),
        (16, 513, 4, True, False),
        (12, 1500, 3, False, True),
        (6, 5000, 6, True, True),
        (3, 49152, 4, False, False),
    ],
)
def test_native_equals_reference(
    isa: str, n: int, vocab: int, max_draft: int, penalties: bool, bias: bool
) -> None:
    gen = torch.Generator().manual_seed(n * 1000 + vocab)
    accepted = rejected = 0
    for _ in range(3):
        logits, info, drafts = _batch(n, vocab, max_draft, gen, penalties=penalties, bias=bias)
        want = verify_ref(logits, info, drafts)
        got = verify_native(logits, info, drafts)
        assert got == want
        for d, (new, a) in zip(drafts, got, strict=True):
            assert new[:a] == d[:a] and len(new) == a + 1
            accepted += a
            rejected += a < len(d)
    if vocab > 1:
        assert accepted > 0 and rejected > 0  # both branches ran


def test_no_drafts_is_the_sampler(isa: str) -> None:
    """A request without drafts gets exactly the sampler's token for its step."""
    gen = torch.Generator().manual_seed(3)
    logits, info, _ = _batch(20, 700, 0, gen, penalties=True, bias=True)
    got = verify_native(logits, info, [[] for _ in range(20)])
    want = sample_ref(logits, info).next_token_ids.tolist()
    assert [new for new, _ in got] == [[t] for t in want]


def test_penalties_count_earlier_drafts(isa: str) -> None:
    """A huge repetition penalty on a generated token: draft 0 (a token not yet generated, the
    argmax) is accepted by a greedy row, and the same token as draft 1 is then penalised below
    another, so it is rejected there; without counting draft 0 it would be accepted."""
    vocab = 8
    logits = torch.zeros(3, vocab)
    logits[:, 5] = 4.0
    logits[:, 2] = 3.0
    info = SamplingBatchInfo(
        temperatures=torch.zeros(1),
        top_ps=torch.ones(1),
        top_ks=torch.ones(1, dtype=torch.int32),
        min_ps=torch.zeros(1),
        seeds=torch.zeros(1, dtype=torch.int64),
        steps=torch.zeros(1, dtype=torch.int64),
        is_all_greedy=True,
        frequency_penalties=torch.zeros(1),
        presence_penalties=torch.zeros(1),
        repetition_penalties=torch.full((1,), 10.0),
        output_token_counts=torch.zeros(1, vocab, dtype=torch.int32),
    )
    assert verify_ref(logits, info, [[5, 5]]) == [([5, 2], 1)]
    assert verify_native(logits, info, [[5, 5]]) == [([5, 2], 1)]


def test_bad_inputs_are_value_errors() -> None:
    gen = torch.Generator().manual_seed(0)
    logits, info, drafts = _batch(3, 50, 2, gen, penalties=False, bias=False)
    flat = torch.tensor([t for d in drafts for t in d], dtype=torch.int64)
    nums = torch.tensor([len(d) for d in drafts], dtype=torch.int64)
    args = (info.temperatures, info.top_ps, info.top_ks, info.min_ps, info.seeds, info.steps)
    with pytest.raises(ValueError, match="rows"):
        _C.verify_drafts(logits[1:], *args, flat, nums)
    with pytest.raises(ValueError, match="draft_ids must be in"):
        _C.verify_drafts(logits, *args, torch.full_like(flat, 50), nums)
    with pytest.raises(ValueError, match="num_drafts must be >= 0"):
        _C.verify_drafts(logits, *args, flat, nums - 5)
    with pytest.raises(ValueError, match="verify: 3 requests"):
        verify_native(logits[1:], info, drafts)
