"""Incremental penalty counts and cached bias rows match a from-scratch rebuild."""

from __future__ import annotations

import random

import torch

from radixserve.engine import ipc
from radixserve.engine.penalty_state import logit_bias, output_token_counts
from radixserve.engine.request import Req
from radixserve.engine.sampling_params import SamplingParams

V = 50


def make(rid: str, **params: object) -> Req:
    msg = ipc.TokenizedGenerateReq(rid=rid, input_ids=[1, 2, 3], max_new_tokens=64, seed=0,
                                   sampling_params=SamplingParams(**params))  # type: ignore[arg-type]
    return Req(msg, eos_token_ids=[7], context_len=128)


def reference_counts(reqs: list[Req]) -> torch.Tensor:
    out = torch.zeros(len(reqs), V, dtype=torch.int32)
    for i, r in enumerate(reqs):
        for t in r.output_ids:
            out[i, t] += 1
    return out


def test_counts_follow_appended_tokens() -> None:
    rng = random.Random(0)
    pen = make("a", frequency_penalty=0.5)
    rep = make("b", repetition_penalty=1.3)
    plain = make("c")
    reqs = [pen, rep, plain]
    for step in range(40):
        for r in reqs:
            r.output_ids.extend(rng.randrange(V) for _ in range(1 if step % 7 else 3))
        if step == 20:
            pen.reset_for_retract()  # recomputed later: output_ids (and counts) are kept
        got = output_token_counts(reqs, V)
        want = reference_counts(reqs)
        assert torch.equal(got[:2], want[:2]) and not got[2].any()


def test_bias_rows_switch_at_min_new_tokens() -> None:
    r = make("a", logit_bias={"3": 2.5, "7": 1.0}, min_new_tokens=2)
    other = make("b")
    b = logit_bias([r, other], V)
    assert b is not None and b[0, 3] == 2.5 and b[0, 7] == float("-inf") and not b[1].any()
    r.output_ids += [1, 2]
    b = logit_bias([r, other], V)
    assert b is not None and b[0, 7] == 1.0 and b[0, 3] == 2.5
    assert logit_bias([other], V) is None
