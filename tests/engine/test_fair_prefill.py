"""The chunked-prefill policy, step by step (deterministic; no timing).

A long prompt arrives first, short ones right behind it, while streams are decoding. fcfs: the
long prompt's chunk takes each step's whole budget, so the short prompts wait until it is in
(head-of-line blocking). fair: the chunk gets half the budget while others wait, the short
prompts go in one after another, and the chunk gets back what they leave. Both: no step
prefills more than the budget, every running stream decodes every step, outputs are exact.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from radixserve.engine.scheduler import Scheduler

from .test_scheduler_logic import all_free, expected, make, prompts, submit

BUDGET = 32


def trace(s: Scheduler) -> tuple[dict[str, int], dict[str, list[int]], list[int]]:
    """Run to idle with streaming updates; (first-token step per request, outputs, prefill
    tokens per step). Also checks that every running stream got a token in every step."""
    first: dict[str, int] = {}
    outs: dict[str, list[int]] = {}
    prefill: list[int] = []
    forward = s.runner.forward

    def counting_forward(fb: Any) -> torch.Tensor:
        decodes = {int(r) for r, n, pre in zip(
            fb.req_pool_indices.tolist(), fb.extend_seq_lens_list, fb.extend_prefix_lens_list,
            strict=True) if n == 1 and pre > 0}  # fmt: skip
        running = {r.req_pool_idx for r in s.running}
        assert running <= decodes, "a running stream was left out of a step"
        prefill.append(sum(fb.extend_seq_lens_list) - len(running))
        return forward(fb)

    s.runner.forward = counting_forward  # type: ignore[method-assign]
    step = 0
    while not s.is_idle():
        step += 1
        for up in s.step():
            if up.new_ids and up.rid not in first:
                first[up.rid] = step
            outs.setdefault(up.rid, []).extend(up.new_ids)
    return first, outs, prefill


def scenario(policy: str) -> tuple[dict[str, int], list[int]]:
    s = make(num_slots=2048, context=512, chunked_prefill_size=BUDGET,
             chunked_prefill_policy=policy)  # fmt: skip
    streams = prompts(2, seed=3)
    for i, p in enumerate(streams):
        submit(s, f"stream{i}", p, max_new=60)
    for r in s.waiting:
        r.stream = True
    s.step()
    s.step()  # the streams are decoding
    long = prompts(1, seed=4, shared=200)[0]
    shorts = [p[:10] + [1] * (10 - len(p[:10])) for p in prompts(4, seed=5)]
    submit(s, "long", long, max_new=4)
    for i, p in enumerate(shorts):
        submit(s, f"short{i}", p, max_new=4)
    for r in s.waiting:
        r.stream = True
    first, outs, prefill = trace(s)
    assert all(n <= BUDGET for n in prefill), prefill
    for rid, p in [("long", long), *((f"short{i}", p) for i, p in enumerate(shorts))]:
        assert outs[rid] == expected(p, 4), rid
    for i, p in enumerate(streams):
        assert outs[f"stream{i}"][-58:] == expected(p, 60)[-58:]
    assert all_free(s)
    return first, prefill


def test_fcfs_blocks_short_prompts_behind_a_long_one() -> None:
    first, _ = scenario("fcfs")
    long_steps = -(-(len(prompts(1, seed=4, shared=200)[0])) // BUDGET)
    assert all(first[f"short{i}"] >= long_steps for i in range(4))


@pytest.mark.parametrize("policy", ["fair"])
def test_fair_interleaves_short_prompts_with_a_long_chunk(policy: str) -> None:
    first, prefill = scenario(policy)
    fcfs_first, fcfs_prefill = scenario("fcfs")
    # One short prompt per step from the first step on (10 tokens fit in half the budget).
    assert [first[f"short{i}"] for i in range(4)] == [1, 2, 3, 4]
    assert max(first[f"short{i}"] for i in range(4)) < min(
        fcfs_first[f"short{i}"] for i in range(4)
    )
    # The long prompt gets the rest of the budget, so it is in no more than a step later, and
    # the steps stay full (no budget left unused while prompts wait).
    assert first["long"] <= fcfs_first["long"] + 1
    busy = [n for n in prefill if n > 0]
    assert all(n == BUDGET for n in busy[:-1])


def test_cold_shared_prefix_is_shared_after_one_prefill() -> None:
    """Requests prefilled together on a prefix nobody cached yet: once their prompts are in,
    their rows hold the same slots for it, so their decodes form one cascade group."""
    from radixserve.engine.cascade import shared_prefix_groups

    s = make(num_slots=2048, context=512, chunked_prefill_size=512)
    system = prompts(1, seed=6, shared=100)[0][:100]
    ps = [system + tail for tail in prompts(4, seed=7)]
    for i, p in enumerate(ps):
        submit(s, f"r{i}", p, max_new=6)
    s.step()  # one step prefills all four (their prompts fit the budget)
    assert len(s.running) == 4 and not s.waiting
    rows = torch.stack([s.kv.req_to_token[r.req_pool_idx, :100] for r in s.running])
    assert bool((rows == rows[0]).all())  # one copy of the prefix's KV
    groups = shared_prefix_groups(s.running, s.kv.req_to_token, 64)
    assert groups is not None and groups.group_ids.tolist() == [0, 0, 0, 0]
    assert int(groups.prefix_lens[0]) >= 100
    out = {}
    while not s.is_idle():
        for up in s.step():
            out.setdefault(up.rid, []).extend(up.new_ids)
    for i, p in enumerate(ps):
        assert out[f"r{i}"] == expected(p, 6)
    assert all_free(s)
