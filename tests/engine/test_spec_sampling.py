"""Speculative sampling (temperature > 0) keeps the sampler's distribution, in the PyTorch
definition (verify_ref) and the native kernel (_C.verify_drafts, every ISA build of this CPU).

The exact test: a Markov chain over a small vocabulary stands in for the model (the logits at
a position depend on the previous token), a history-dependent drafter proposes tokens of high
and low probability, and generations run verify round after verify round. The joint law of
the first three tokens must be the chain's, with temperature / top-k / top-p / min-p applied as
the sampler defines them (computed here independently, in plain PyTorch); a chi-square test on
many seeded generations checks it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import torch
from scipy.stats import chisquare

from isa_builds import supported_isas
from radixserve import _C
from radixserve.engine.speculative.rejection import Verified, verify_native, verify_ref
from radixserve.layers.sampler import sample_ref
from radixserve.layers.sampling_info import SamplingBatchInfo

Verify = Callable[[torch.Tensor, SamplingBatchInfo, Sequence[Sequence[int]]], Verified]


# The reference, then the native kernel on each of the sampler's ISA builds this CPU runs.
@pytest.fixture(params=["torch", *(f"native-{isa}" for isa in supported_isas())])
def verify(request: pytest.FixtureRequest) -> Iterator[Verify]:
    """verify_ref, or the native kernel with one ISA build's row primitives."""
    name: str = request.param
    if name == "torch":
        yield verify_ref
        return
    _C.sampling_set_isa(name.removeprefix("native-"))
    yield verify_native
    _C.sampling_set_isa("auto")


V = 6
NUM_DRAFT = 3
LENGTH = 3  # tokens whose joint law is tested


def _info(
    n: int,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    rep: float = 1.0,
    freq: float = 0.0,
) -> SamplingBatchInfo:
    info = SamplingBatchInfo(
        temperatures=torch.full((n,), temperature),
        top_ps=torch.full((n,), top_p),
        top_ks=torch.full((n,), top_k, dtype=torch.int32),
        min_ps=torch.full((n,), min_p),
        seeds=torch.arange(n, dtype=torch.int64) * 7919 + 13,
        steps=torch.zeros(n, dtype=torch.int64),
        is_all_greedy=False,
    )
    if rep != 1.0 or freq != 0.0:
        info.repetition_penalties = torch.full((n,), rep)
        info.frequency_penalties = torch.full((n,), freq)
        info.presence_penalties = torch.zeros(n)
        info.output_token_counts = torch.zeros(n, V, dtype=torch.int32)
    return info


def _target(
    row: torch.Tensor,
    history: Sequence[int],
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    rep: float = 1.0,
    freq: float = 0.0,
) -> torch.Tensor:
    """The sampler's distribution of one logits row after `history`, written out plainly."""
    row = row.clone()
    for t in set(history):
        x = float(row[t])
        x = x / rep if x > 0 else x * rep
        row[t] = x - freq * history.count(t)
    probs = torch.softmax(row.double() / temperature, dim=-1)
    order = sorted(range(V), key=lambda t: (-float(row[t]), t))
    kept: list[int] = []
    mass = 0.0
    for pos, t in enumerate(order):
        rel = float(probs[t] / probs[order[0]])  # exp(z - max z)
        if pos > 0 and (
            pos >= top_k or (top_p < 1 and mass >= top_p) or (min_p > 0 and rel < min_p)
        ):
            break
        kept.append(t)
        mass += float(probs[t])
    out = torch.zeros(V, dtype=torch.float64)
    out[kept] = probs[kept] / probs[kept].sum()
    return out


def _drafts(history: list[int]) -> list[int]:
    """Deterministic in the history; mixes likely and unlikely tokens."""
    h = sum(history) + 3 * len(history)
    return [(h + 2 * j) % V for j in range(NUM_DRAFT)]


def _generate(
    chain: torch.Tensor, start: int, info: SamplingBatchInfo, verify: Verify
) -> tuple[list[tuple[int, ...]], float]:
    """Run every seeded generation to LENGTH tokens by verify rounds; (first tokens, accept rate)."""
    n = info.batch_size
    outs: list[list[int]] = [[] for _ in range(n)]
    drafted = accepted = 0
    while True:
        active = [i for i in range(n) if len(outs[i]) < LENGTH]
        if not active:
            break
        drafts = [_drafts(outs[i]) for i in active]
        # Row j of a request: the chain's logits after its last token, then after each draft.
        logits = torch.stack([
            chain[prev]
            for i, d in zip(active, drafts, strict=True)
            for prev in [outs[i][-1] if outs[i] else start, *d]
        ])  # fmt: skip
        sub = SamplingBatchInfo(
            temperatures=info.temperatures[active],
            top_ps=info.top_ps[active],
            top_ks=info.top_ks[active],
            min_ps=info.min_ps[active],
            seeds=info.seeds[active],
            steps=torch.tensor([len(outs[i]) for i in active], dtype=torch.int64),
            is_all_greedy=False,
        )
        if info.output_token_counts is not None:  # penalties: counts of each one's output
            sub.repetition_penalties = info.repetition_penalties[active]  # type: ignore[index]
            sub.frequency_penalties = info.frequency_penalties[active]  # type: ignore[index]
            sub.presence_penalties = info.presence_penalties[active]  # type: ignore[index]
            sub.output_token_counts = torch.stack(
                [torch.bincount(torch.tensor(outs[i], dtype=torch.int64), minlength=V).int()
                 for i in active]
            )  # fmt: skip
        results = verify(logits, sub, drafts)
        for i, (new, a) in zip(active, results, strict=True):
            assert len(new) == a + 1 and 0 <= a <= NUM_DRAFT
            outs[i].extend(new)
            drafted += NUM_DRAFT
            accepted += a
    return [tuple(o[:LENGTH]) for o in outs], accepted / drafted


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 1.0, "top_k": V, "top_p": 1.0, "min_p": 0.0},
        {"temperature": 0.7, "top_k": 4, "top_p": 1.0, "min_p": 0.0},
        {"temperature": 1.3, "top_k": V, "top_p": 0.8, "min_p": 0.05},
        # Penalties: drafts before a position count as generated there.
        {"temperature": 0.9, "top_k": V, "top_p": 0.9, "min_p": 0.0, "rep": 1.6, "freq": 0.7},
    ],
)
def test_rejection_sampling_keeps_the_distribution(params: dict[str, Any], verify: Verify) -> None:
    gen = torch.Generator().manual_seed(5)
    chain = torch.randn(V, V, generator=gen) * 1.5
    start = 2
    n = 8000
    seqs, accept_rate = _generate(chain, start, _info(n, **params), verify)
    assert 0.05 < accept_rate < 0.95  # both branches (accept, reject) are exercised
    expected: dict[tuple[int, ...], float] = {}
    for seq in itertools.product(range(V), repeat=LENGTH):
        p, prev = 1.0, start
        for j, t in enumerate(seq):
            p *= float(_target(chain[prev], seq[:j], **params)[t])
            prev = t
        if p > 0:
            expected[seq] = p * n
    counts: dict[tuple[int, ...], int] = {}
    for s in seqs:
        assert s in expected, f"{s} has probability 0 under the target"
        counts[s] = counts.get(s, 0) + 1
    # Cells expected < 5 times are pooled into one.
    big = [s for s in expected if expected[s] >= 5]
    obs = [counts.get(s, 0) for s in big]
    exp = [expected[s] for s in big]
    rest_obs, rest_exp = n - sum(obs), n - sum(exp)
    if rest_exp > 0:
        obs.append(rest_obs)
        exp.append(rest_exp)
    stat = chisquare(obs, exp)
    assert stat.pvalue > 1e-3, (stat, params)


def test_bonus_token_is_the_samplers_draw(verify: Verify) -> None:
    """When every draft is accepted (certain drafts), the token after them is exactly the
    sampler's own draw at that step (same seed and step), and the drafts come first."""
    gen = torch.Generator().manual_seed(1)
    n, k = 64, 2
    logits = torch.randn(n * (k + 1), 50, generator=gen)
    drafts = []
    for i in range(n):  # drafts of probability 1 (every other logit far below)
        rows = logits[i * (k + 1) : i * (k + 1) + k]
        drafts.append(rows.argmax(dim=-1).tolist())
        logits[i * (k + 1) : i * (k + 1) + k] = -1e4
        for j, t in enumerate(drafts[-1]):
            logits[i * (k + 1) + j, t] = 10.0  # p(draft) = 1 in float64 after exp
    base = _info(n, 0.9, 50, 0.95, 0.0)
    base.steps = torch.arange(n, dtype=torch.int64) + 4
    results = verify(logits, base, drafts)
    assert all(a == k for _, a in results)
    last_rows = logits[[i * (k + 1) + k for i in range(n)]]
    plain = _info(n, 0.9, 50, 0.95, 0.0)
    plain.steps = base.steps + k
    want = sample_ref(last_rows, plain).next_token_ids.tolist()
    assert [new[-1] for new, _ in results] == want
    assert [new[:-1] for new, _ in results] == drafts
