"""Adaptive n-gram drafting (engine/speculative/policy.py): the draft length its acceptance
rate pays for, the rates per match length and their updates (verify steps and shadow trials),
and, on the real scheduler, fewer drafts where they fail with greedy outputs still token for
token plain decoding's."""

from __future__ import annotations

import random
from typing import Any

import pytest

from radixserve.args import ServerArgs
from radixserve.engine import ipc
from radixserve.engine.sampling_params import SamplingParams
from radixserve.engine.scheduler import build_scheduler
from radixserve.engine.speculative.ngram import longest_match
from radixserve.engine.speculative.policy import (
    DECAY,
    PRIOR_RATE,
    AcceptanceEstimate,
    best_draft_len,
    match_class,
    matched_prefix,
)


def test_matched_prefix() -> None:
    assert matched_prefix([1, 2, 3], [1, 2, 3]) == (3, 3)
    assert matched_prefix([1, 2, 3], [1, 9, 3]) == (1, 2)  # the mismatch is a trial too
    assert matched_prefix([1, 2, 3], [7]) == (0, 1)
    assert matched_prefix([1, 2, 3], [1]) == (1, 1)  # later drafts not yet decided
    assert matched_prefix([1, 2], []) == (0, 0)


def expected_value(rate: float, k: int, row_cost: float) -> float:
    return sum(rate**i for i in range(k + 1)) / (1 + row_cost * k)


@pytest.mark.parametrize("row_cost", [0.25, 0.5, 0.8])
def test_best_draft_len_maximises_tokens_per_cost(row_cost: float) -> None:
    last = 0
    for step in range(101):
        rate = step / 100
        k = best_draft_len(rate, 6, row_cost)
        values = [expected_value(rate, j, row_cost) for j in range(7)]
        assert values[k] == pytest.approx(max(values))
        assert k >= last  # a higher rate never drafts less
        last = k
    assert best_draft_len(0.0, 6, row_cost) == 0 and best_draft_len(1.0, 6, row_cost) == 6
    # A draft pays only above rate = row_cost (one draft: (1 + a) / (1 + c) > 1).
    assert best_draft_len(row_cost - 0.01, 6, row_cost) == 0
    assert best_draft_len(0.0, 0, row_cost) == 0


def test_longest_match_and_classes() -> None:
    assert longest_match([1, 2, 3, 9, 9, 1, 2, 3, 7, 1, 2, 3], 3) == (3, [7, 1, 2])
    assert longest_match([5, 6, 7, 5, 6], 4) == (2, [7, 5, 6])
    assert longest_match([8, 1, 9, 1], 2) == (1, [9, 1])
    assert longest_match([1, 2, 3], 4) == (0, [])
    assert [match_class(n) for n in (1, 2, 3, 4, 9)] == [0, 1, 2, 2, 2]


def test_acceptance_estimate_updates() -> None:
    est = AcceptanceEstimate()
    assert est.rate(0) == pytest.approx(PRIOR_RATE) == est.rate(2)
    for _ in range(20):
        est.record(0, 0, 1)  # every first draft of a one-token match rejected
    assert est.rate(0) < 0.01 and est.rate(2) == pytest.approx(PRIOR_RATE)
    hits, trials = est.hits[2], est.trials[2]
    est.record(2, 4, 4)  # one verify step accepting all four drafts of a long match
    assert est.hits[2] == pytest.approx(DECAY * hits + 4)
    assert est.trials[2] == pytest.approx(DECAY * trials + 4)
    # A one-token match is not worth a draft now: the proposal becomes the shadow, scored
    # once, after a token was decoded, on the tokens since; a long match is drafted.
    assert est.choose(1, [5, 6], 3) == [] and (est.shadow, est.shadow_at) == ([5, 6], 3)
    before = est.trials[0]
    est.check_shadow([1, 2, 3])  # nothing decoded yet: kept
    assert est.shadow == [5, 6] and est.trials[0] == before
    est.check_shadow([1, 2, 3, 5])
    assert est.shadow == [] and est.trials[0] == pytest.approx(DECAY * before + 1)
    rate = est.rate(0)
    est.check_shadow([1, 2, 3, 5, 6])  # already scored
    assert est.rate(0) == rate
    assert est.choose(4, [7, 8, 9], 4) == [7, 8, 9] and est.cls == 2 and est.shadow == []


def generate(sched: Any, prompt: list[int], new: int, **params: Any) -> list[int]:
    sched.add_request(
        ipc.TokenizedGenerateReq(
            rid=str(random.random()),
            input_ids=prompt,
            sampling_params=SamplingParams(max_new_tokens=new, ignore_eos=True, **params),
            max_new_tokens=new,
            seed=5,
        )
    )
    got: list[int] = []
    while not sched.is_idle():
        for up in sched.step():
            got.extend(up.new_ids)
    return got


def test_adaptive_drafts_less_where_drafts_fail() -> None:
    """The default model, greedy. Free text: n-gram matches (a common word seen before) offer
    drafts most steps and most fail; the adaptive policy soon stops sending them (its shadow
    trials keep scoring the proposals) while the fixed one keeps drafting. Copying a passage:
    the adaptive policy drafts and accepts. Tokens equal plain decoding's in every mode, and
    rejected drafts' KV slots go back to the pool."""
    from radixserve.models.default_model import default_model_path

    try:
        default_model_path()
    except FileNotFoundError:
        pytest.skip("the default model is not installed")
    scheds = {}
    for mode in ("plain", "adaptive", "fixed"):
        extra: dict[str, Any] = {} if mode == "plain" else {"speculative_algorithm": "NGRAM"}
        scheds[mode] = build_scheduler(
            ServerArgs(
                num_threads=1, max_total_tokens=4096, speculative_num_draft_tokens=4, **extra
            )
        )
        if scheds[mode].speculator is not None:
            scheds[mode].speculator.adaptive = mode == "adaptive"
    tok = scheds["plain"].tokenizer
    passage = (
        "The Great Barrier Reef is the world's largest coral reef system, composed of over "
        "2,900 individual reefs and 900 islands stretching for over 2,300 kilometres."
    )
    texts = {
        "free": "Write a short story about a dragon who learns to bake bread.",
        "copying": "Repeat the following text exactly, word for word:\n\n" + passage,
    }
    stats: dict[str, dict[str, tuple[int, int]]] = {}
    for name, text in texts.items():
        prompt = list(
            tok.encode(
                tok.apply_chat_template(
                    [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
                ),
                add_special_tokens=False,
            )
        )
        outs = {}
        for mode, sched in scheds.items():
            drafts = sched.stats["num_spec_draft_tokens"]
            accepted = sched.stats["num_spec_accepted_tokens"]
            outs[mode] = generate(sched, prompt, 40, temperature=0.0)
            stats.setdefault(name, {})[mode] = (
                sched.stats["num_spec_draft_tokens"] - drafts,
                sched.stats["num_spec_accepted_tokens"] - accepted,
            )
        assert outs["adaptive"] == outs["plain"] and outs["fixed"] == outs["plain"], name
    free, copying = stats["free"], stats["copying"]
    assert free["fixed"][1] < free["fixed"][0] / 2, free  # the drafts do mostly fail
    assert free["adaptive"][0] < free["fixed"][0] / 3, free
    assert copying["adaptive"][1] >= 20, copying  # drafts still sent (and taken) when they pay
    for sched in scheds.values():
        assert sched.load()["num_used_tokens"] == 0
